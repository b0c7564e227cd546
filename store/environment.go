package store

// Faults of a database's environment, told apart from bad configuration.
//
// A malformed URL or an in-memory SQLite name is the user's to fix, and
// retrying cannot help: ErrUnavailable, exit 2. A server that refuses
// connections, shuts down or drops them, a corrupt file, a full disk or a
// file that may not be written are the environment's: nothing is wrong
// with the command or the workflow, and the same command succeeds once
// the database is back or repaired. A workflow must never be failed for
// good by one of those (the lab ends the process and leaves it PENDING),
// and the supervisor waits out the ones that may pass on their own
// (Unreachable).

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"

	"github.com/durlab/durlab/dburl"
)

var (
	// ErrEnvironment matches every EnvironmentError.
	ErrEnvironment = errors.New("the database's environment failed")
	// ErrUnreachable matches the EnvironmentErrors that may pass on their
	// own: the server could not be reached, or is busy.
	ErrUnreachable = errors.New("the database is unreachable")
)

// Fault is the kind of an environment fault.
type Fault string

const (
	FaultNone        Fault = ""
	FaultUnreachable Fault = "unreachable" // refused, shut down, connection lost, too many connections
	FaultBusy        Fault = "busy"        // SQLite's lock held past the busy timeout
	FaultCorrupt     Fault = "corrupt"     // SQLITE_CORRUPT, SQLITE_NOTADB, Postgres XX001/XX002, a failed integrity check
	FaultFull        Fault = "full"        // SQLITE_FULL, ENOSPC, Postgres 53100
	FaultIO          Fault = "io"          // SQLITE_IOERR, EIO, Postgres 58030
	FaultReadOnly    Fault = "read-only"   // SQLITE_READONLY, SQLITE_PERM, SQLITE_CANTOPEN, EACCES, EROFS
)

// Passes tells whether the fault may end on its own, so that waiting and
// trying again is worth it.
func (f Fault) Passes() bool { return f == FaultUnreachable || f == FaultBusy }

// MaybeCommitted tells whether a write that failed with err may have
// committed all the same: its statement, or its commit, reached a server
// whose answer was lost. Trying it again would write it twice. SQLite's
// busy lock is taken before anything is written.
func MaybeCommitted(err error) bool {
	if Classify(err) != FaultUnreachable {
		return false
	}
	var ce *pgconn.ConnectError
	return !errors.As(err, &ce) && !pgconn.SafeToRetry(err)
}

// Classify tells which environment fault err is, FaultNone when it is not
// one. It reads the drivers' typed errors; only pgx's "conn closed", an
// error without a type, and SQLite's messages in the errors DBOS flattens
// into text are matched by their text.
func Classify(err error) Fault {
	if err == nil {
		return FaultNone
	}
	var env *EnvironmentError
	if errors.As(err, &env) {
		return env.Fault
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrCorrupt, sqlite3.ErrNotADB:
			return FaultCorrupt
		case sqlite3.ErrFull:
			return FaultFull
		case sqlite3.ErrIoErr:
			return FaultIO
		case sqlite3.ErrReadonly, sqlite3.ErrPerm, sqlite3.ErrCantOpen:
			return FaultReadOnly
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return FaultBusy
		}
		return FaultNone
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection_exception and its subclasses
			pe.Code == "57P01", // admin_shutdown
			pe.Code == "57P02", // crash_shutdown
			pe.Code == "57P03", // cannot_connect_now: starting up or shutting down
			pe.Code == "53300": // too_many_connections
			return FaultUnreachable
		case pe.Code == "53100": // disk_full
			return FaultFull
		case pe.Code == "58030": // io_error
			return FaultIO
		case pe.Code == "XX001", pe.Code == "XX002": // data_corrupted, index_corrupted
			return FaultCorrupt
		}
		return FaultNone
	}
	// A connection that could not be made is an outage whatever its
	// cause, a connect timeout included, so this comes before the
	// context errors below.
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return FaultUnreachable
	}
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return FaultFull
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES):
		return FaultReadOnly
	case errors.Is(err, syscall.EIO):
		return FaultIO
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, driver.ErrBadConn):
		return FaultUnreachable
	}
	var ne net.Error
	if errors.As(err, &ne) && !isContextError(err) {
		return FaultUnreachable
	}
	// pgconn reports a query on a connection it closed after a network
	// error as errors.New("conn closed"), with no type to match.
	msg := err.Error()
	if strings.Contains(msg, "conn closed") {
		return FaultUnreachable
	}
	// DBOS's system database on SQLite runs on modernc.org/sqlite, and
	// DBOS hands its errors on flattened into text: SQLite's own messages
	// are all that is left of them.
	for _, m := range sqliteMessages {
		if strings.Contains(msg, m.text) {
			return m.fault
		}
	}
	return FaultNone
}

// sqliteMessages are SQLite's messages (sqlite3_errstr) for the faults of
// its environment.
var sqliteMessages = []struct {
	text  string
	fault Fault
}{
	{"database disk image is malformed", FaultCorrupt},
	{"file is not a database", FaultCorrupt},
	{"database or disk is full", FaultFull},
	{"disk I/O error", FaultIO},
	{"attempt to write a readonly database", FaultReadOnly},
}

// isContextError: a deadline or cancellation is the caller's, not the
// database's, even where it satisfies net.Error.
func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// EnvironmentError is an environment fault of the database DB names (a
// redacted URL or a file path). It matches ErrEnvironment, and
// ErrUnreachable when the fault may pass.
type EnvironmentError struct {
	DB    string
	Role  string // "store" or "system database"
	Fault Fault
	Err   error
	raw   string // the URL as given, whose password the message must not echo
}

// Environment wraps err as an environment fault of the database raw names
// (a URL or a path), in role, when it is one; otherwise it returns err.
func Environment(role, raw string, err error) error {
	f := Classify(err)
	if f == FaultNone {
		return err
	}
	var env *EnvironmentError
	if errors.As(err, &env) {
		return err
	}
	return &EnvironmentError{DB: dburl.Redacted(raw), Role: role, Fault: f, Err: err, raw: raw}
}

// faultWords say each fault in an EnvironmentError's line.
var faultWords = map[Fault]string{
	FaultUnreachable: "is unreachable",
	FaultBusy:        "is locked by another process",
	FaultCorrupt:     "is corrupt",
	FaultFull:        "cannot be written: the disk is full",
	FaultIO:          "cannot be read or written (I/O error)",
	FaultReadOnly:    "cannot be written (read-only or permission denied)",
}

// FaultSaid reads the fault back from an EnvironmentError's line, as a
// supervisor reads it from its child's stderr; FaultNone if it says none.
func FaultSaid(line string) Fault {
	for f, words := range faultWords {
		if strings.Contains(line, " "+words) {
			return f
		}
	}
	return FaultNone
}

func (e *EnvironmentError) Error() string {
	what := faultWords[e.Fault]
	role := e.Role
	if role == "" {
		role = "store"
	}
	return fmt.Sprintf("the %s %s %s (%s)", role, e.DB, what, oneLine(dburl.Redact(e.Err.Error(), e.raw)))
}

func (e *EnvironmentError) Unwrap() error { return e.Err }

func (e *EnvironmentError) Is(target error) bool {
	return target == ErrEnvironment || target == ErrUnreachable && e.Fault.Passes()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
