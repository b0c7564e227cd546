// Package shell quotes the words of the commands durlab prints for a user
// to paste: names a user gave (queues, executor and workflow IDs) may hold
// anything printable, and a hint must run as printed.
package shell

import "strings"

// safe are the bytes a POSIX shell reads as themselves in a word.
const safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,:@#/+%"

// Quote is s as one word for a POSIX shell: unchanged when it needs no
// quotes, in single quotes otherwise.
func Quote(s string) string {
	if s != "" && strings.Trim(s, safe) == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each word and joins them with spaces.
func Join(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
