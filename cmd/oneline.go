package cmd

import "strings"

// oneLine folds a multi-line message (DBOS joins every retry's error with
// newlines) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
