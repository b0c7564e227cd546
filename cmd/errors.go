package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// Exit codes. A crash is not among them: it is a death by SIGKILL.
const (
	exitOK          = 0
	exitUnexpected  = 1   // the experiment did not behave as expected, or a run failed
	exitUsage       = 2   // bad usage or configuration
	exitFenced      = 3   // a worker's executor claim was taken over (lab.ExitFenced)
	exitEnvironment = 4   // a database is unreachable, corrupt, full or read-only (lab.ExitEnvironment)
	exitHangup      = 129 // SIGHUP
	exitInterrupted = 130 // SIGINT
	exitTerminated  = 143 // SIGTERM
)

// usageError is bad input: a flag, an argument, or the configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitCodeError ends the process with a code after its output was printed.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// errNotAsExpected: the report is printed; the experiment did not behave as expected.
var errNotAsExpected = exitCodeError{exitUnexpected}

// exitCode maps an error to the process's exit code, printing it as one line
// on stderr unless the output already said everything.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ec exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	code := exitUnexpected
	var ue usageError
	var se signalError
	var none errNoSystemDB
	switch {
	case errors.Is(err, store.ErrEnvironment), store.Classify(err) != store.FaultNone:
		// Before the usage errors: an outage is no configuration error,
		// and the supervisor waits it out instead of stopping. The
		// second catches a driver's error that reached here bare.
		code = exitEnvironment
	case errors.As(err, &none):
		code = exitUsage
	case errors.As(err, &se):
		code = 128 + int(se.sig)
	case errors.As(err, &ue),
		errors.Is(err, store.ErrForeignSchema),
		errors.Is(err, store.ErrUnavailable),
		errors.Is(err, lab.ErrSystemDB),
		errors.Is(err, lab.ErrExecutorInUse), errors.Is(err, lab.ErrBadQueue), errors.Is(err, lab.ErrBadName), errors.Is(err, lab.ErrWrongWorkflow):
		code = exitUsage
	case errors.Is(err, lab.ErrInterrupted), errors.Is(err, context.Canceled):
		code = exitInterrupted
	}
	fmt.Fprintf(stderr, "durlab: %s\n", oneLine(dburl.Redact(err.Error())))
	return code
}
