package cmd

import (
	"net/url"
	"regexp"
	"strings"
)

// urlPassword finds user:password@ in any URL inside a message, so that no
// error or log line carries a database password.
var urlPassword = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^:/@\s]+):([^@\s]*)@`)

// keywordPassword finds password=... in key=value connection strings.
var keywordPassword = regexp.MustCompile(`(?i)(password=)([^\s&]+)`)

// redactAll hides every password in s.
func redactAll(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}:xxxxx@")
	return keywordPassword.ReplaceAllString(s, "${1}xxxxx")
}

// redactURL is the URL without its password, for display.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return redactAll(raw)
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// oneLine folds a multi-line message (DBOS joins every retry's error with
// newlines) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
