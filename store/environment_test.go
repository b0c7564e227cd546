package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"
)

// Which driver errors are the environment's, and which may pass: a wrong
// answer either fails a workflow for good on an outage, or waits out an
// error that never passes.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want Fault
	}{
		{"nil", nil, FaultNone},
		{"plain error", errors.New("boom"), FaultNone},
		{"context cancelled", fmt.Errorf("query: %w", context.Canceled), FaultNone},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), FaultNone},
		{"UNIQUE violation", &pgconn.PgError{Code: "23505"}, FaultNone},
		{"SQLite constraint", sqlite3.Error{Code: sqlite3.ErrConstraint}, FaultNone},
		{"admin shutdown", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "57P01"}), FaultUnreachable},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, FaultUnreachable},
		{"shutting down / starting up", &pgconn.PgError{Code: "57P03"}, FaultUnreachable},
		{"connection failure", &pgconn.PgError{Code: "08006"}, FaultUnreachable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, FaultUnreachable},
		{"Postgres disk full", &pgconn.PgError{Code: "53100"}, FaultFull},
		{"Postgres data corrupted", &pgconn.PgError{Code: "XX001"}, FaultCorrupt},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, FaultUnreachable},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), FaultUnreachable},
		{"EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), FaultUnreachable},
		{"pgx conn closed", errors.New("conn closed"), FaultUnreachable},
		{"SQLite corrupt", sqlite3.Error{Code: sqlite3.ErrCorrupt}, FaultCorrupt},
		{"SQLite not a database", sqlite3.Error{Code: sqlite3.ErrNotADB}, FaultCorrupt},
		{"SQLite full", sqlite3.Error{Code: sqlite3.ErrFull}, FaultFull},
		{"SQLite I/O", sqlite3.Error{Code: sqlite3.ErrIoErr}, FaultIO},
		{"SQLite read-only", sqlite3.Error{Code: sqlite3.ErrReadonly}, FaultReadOnly},
		{"SQLite busy", sqlite3.Error{Code: sqlite3.ErrBusy}, FaultBusy},
		{"ENOSPC", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, FaultFull},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if !FaultUnreachable.Passes() || !FaultBusy.Passes() || FaultCorrupt.Passes() || FaultFull.Passes() {
		t.Error("only an outage and a busy file may pass")
	}
}

// Opening: a malformed URL or :memory: is configuration (ErrUnavailable,
// exit 2); a refused connection and a corrupt file are the environment's
// (ErrEnvironment, exit 4), named without the password; only the refusal
// may pass.
func TestOpenTellsConfigurationFromEnvironment(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 20)), 0o600)
	for _, c := range []struct {
		name, dsn                string
		config, env, unreachable bool
		says                     string
	}{
		{"malformed URL", "postgres://u:s3cr3t@[bad/x", true, false, false, "malformed Postgres URL"},
		{"in memory", ":memory:", true, false, false, "is a database in memory"},
		{"refused", "postgres://u:s3cr3t@127.0.0.1:1/x?connect_timeout=2", false, true, true, "the store postgres://u:xxxxx@127.0.0.1:1/x?connect_timeout=2 is unreachable"},
		{"not a database", garbage, false, true, false, "the store " + garbage + " is corrupt"},
	} {
		st, err := Open(ctx, c.dsn)
		if err == nil {
			st.Close()
			t.Errorf("%s: opened", c.name)
			continue
		}
		if errors.Is(err, ErrUnavailable) != c.config || errors.Is(err, ErrEnvironment) != c.env || errors.Is(err, ErrUnreachable) != c.unreachable {
			t.Errorf("%s: %v: configuration %v, environment %v, unreachable %v; want %v, %v, %v", c.name, err,
				errors.Is(err, ErrUnavailable), errors.Is(err, ErrEnvironment), errors.Is(err, ErrUnreachable), c.config, c.env, c.unreachable)
		}
		if !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: %q does not say %q, or shows the password", c.name, err, c.says)
		}
	}
}

// A store with a valid header and damaged pages opens in SQLite, and its
// schema may read fine: the integrity check refuses it, naming the file.
func TestOpenRefusesADamagedStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	st, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 3*4096 {
		t.Fatalf("a new store of %d bytes: too few pages to damage", len(b))
	}
	for i := 4096 + 100; i < len(b); i += 7 {
		b[i] ^= 0x5a
	}
	os.WriteFile(path, b, 0o600)
	_, err = Open(ctx, path)
	if !errors.Is(err, ErrEnvironment) || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), path+" is corrupt") {
		t.Fatalf("a damaged store: %v; want an environment fault naming %s as corrupt", err, path)
	}
}

// sentBefore is a driver error that says its statement never left the
// client, as pgconn's errors do through SafeToRetry.
type sentBefore struct{ error }

func (sentBefore) SafeToRetry() bool { return true }

// A write whose connection was lost after its statement was sent may have
// committed: it must not be written again.
func TestMaybeCommitted(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection lost mid-statement", fmt.Errorf("write page: %w", io.ErrUnexpectedEOF), true},
		{"refused before sending", sentBefore{syscall.ECONNREFUSED}, false},
		{"not an environment fault", errors.New("duplicate key"), false},
		{"a full disk", syscall.ENOSPC, false},
		{"nil", nil, false},
	} {
		if got := MaybeCommitted(c.err); got != c.want {
			t.Errorf("%s: MaybeCommitted = %v, want %v", c.name, got, c.want)
		}
	}
}

// DBOS flattens the errors of its SQLite driver (modernc.org/sqlite) into
// text; SQLite's messages still tell the fault.
func TestClassifyFlattenedSQLite(t *testing.T) {
	for msg, want := range map[string]Fault{
		"system database unavailable: launch: file is not a database (26)":    FaultCorrupt,
		"failed to commit workflow outcome: database or disk is full (13)":    FaultFull,
		"checking operation execution: database disk image is malformed (11)": FaultCorrupt,
		"attempt to write a readonly database (8)":                            FaultReadOnly,
		"workflow 1234 was cancelled":                                         FaultNone,
	} {
		if got := Classify(errors.New(msg)); got != want {
			t.Errorf("Classify(%q) = %q, want %q", msg, got, want)
		}
	}
}
