package lab

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// ErrBadName: a workflow ID, executor ID or queue name that durlab would
// have to print, quote in a hint or store, and cannot do safely.
var ErrBadName = errors.New("bad name")

// maxNameLen bounds the names a user gives: they are printed in tables and
// hints, and stored in DBOS's text columns.
const maxNameLen = 100

// checkName refuses an empty name, one longer than maxNameLen, and one with
// spaces, control characters or anything unprintable: such a name breaks
// the one-line output and the commands durlab prints to paste back.
func checkName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("the %s is empty", kind)
	case !utf8.ValidString(name):
		return fmt.Errorf("the %s is not valid UTF-8", kind)
	case utf8.RuneCountInString(name) > maxNameLen:
		return fmt.Errorf("the %s is %d characters long; at most %d", kind, utf8.RuneCountInString(name), maxNameLen)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("the %s %q has a space or an unprintable character", kind, name)
		}
	}
	return nil
}

func badName(err error) error {
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadName, err)
	}
	return nil
}

// CheckWorkflowID tells whether id can name a main workflow (--workflow-id).
func CheckWorkflowID(id string) error { return badName(checkName("workflow ID", id)) }

// CheckExecutorID tells whether id can name a DBOS executor: it is printed
// in tables and hints, and names durlab's claim (a lock file on SQLite).
func CheckExecutorID(id string) error { return badName(checkName("executor ID", id)) }
