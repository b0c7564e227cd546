// Package store keeps the experiments' users table, on SQLite or Postgres.
//
// The table has the same columns on both backends:
//
//	users(id, external_id, name, workflow_id, analyzed_at, created_at)
//
// in one of two variants. Strict makes (id, workflow_id, analyzed_at) the
// primary key, so writing the same user twice in one execution fails: that is
// the lesson of retry-bad. Ledger adds created_at to the key, so duplicates
// are stored and counted: that is what dedup measures.
//
// Every count is scoped to one workflow ID, so rows left by earlier runs
// never change the result of the current one.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/durlab/durlab/fake"
)

// Variant selects the users table's primary key.
type Variant int

const (
	// Strict: PRIMARY KEY (id, workflow_id, analyzed_at).
	Strict Variant = iota
	// Ledger: PRIMARY KEY (id, workflow_id, analyzed_at, created_at).
	Ledger
)

func (v Variant) String() string {
	if v == Ledger {
		return "ledger"
	}
	return "strict"
}

var (
	// ErrForeignSchema: a users table exists that durlab did not create. It is
	// never altered or dropped.
	ErrForeignSchema = errors.New("store has a users table that durlab did not create")
	// ErrOtherVariant: the users table is durlab's, in the other variant,
	// and Prepare was not allowed to recreate it.
	ErrOtherVariant = errors.New("store holds the other variant of the users table")
	// ErrDuplicateUser: an insert hit the strict variant's primary key.
	ErrDuplicateUser = errors.New("UNIQUE constraint violated")
	// ErrUnavailable: the database could not be opened or reached.
	ErrUnavailable = errors.New("store unavailable")
)

// Counts describe what one workflow wrote.
type Counts struct {
	Rows        int64 // every row, duplicates included
	UniqueUsers int64 // distinct user IDs
	Latest      int64 // the window-function count: the latest row per (id, workflow_id)
}

// Stats are what the experiments observed while running a workflow, kept in
// the store so that a report after a crash still counts what the dead
// process did.
type Stats struct {
	StepAttempts     int64
	InjectedFailures int64
	UniqueViolations int64
	Crashes          int64
	CommitCrashes    int64 // the crashes right after an insert committed
}

// Add returns the field-wise sum.
func (s Stats) Add(o Stats) Stats {
	return Stats{s.StepAttempts + o.StepAttempts, s.InjectedFailures + o.InjectedFailures,
		s.UniqueViolations + o.UniqueViolations, s.Crashes + o.Crashes, s.CommitCrashes + o.CommitCrashes}
}

// Statement is one SQL statement with its arguments, in the store's dialect.
type Statement struct {
	SQL  string
	Args []any
}

// Store is the users table of one database.
type Store interface {
	// Prepare creates the users table in the variant if it is missing. With
	// reset, an existing durlab table is dropped and recreated empty;
	// without, a table of the other variant gives ErrOtherVariant. A table
	// durlab did not create gives ErrForeignSchema and is left untouched.
	Prepare(ctx context.Context, v Variant, reset bool) error
	// InsertPage writes one page of users in one transaction. A conflict on
	// the strict key gives an error wrapping ErrDuplicateUser.
	InsertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error
	// InsertStatements returns the statements InsertPage runs, for callers
	// that run them inside a transaction of their own (dbos.RunAsTransaction).
	InsertStatements(users []fake.User, workflowID string, analyzedAt time.Time) []Statement
	// Counts counts what workflowID wrote.
	Counts(ctx context.Context, workflowID string) (Counts, error)
	// AddStats adds delta to the stats kept for workflowID.
	AddStats(ctx context.Context, workflowID string, delta Stats) error
	// Stats returns the stats kept for workflowID (zero if none).
	Stats(ctx context.Context, workflowID string) (Stats, error)
	// Engine is the database handle, *sql.DB for SQLite and *pgxpool.Pool
	// for Postgres, for dbos.NewDataSource.
	Engine() any
	// Close releases the database.
	Close() error
}

// Open opens the store named by dsn: a postgres:// or postgresql:// URL
// selects Postgres, anything else is a SQLite file path (an optional
// "sqlite:" prefix is accepted).
func Open(ctx context.Context, dsn string) (Store, error) {
	if IsPostgres(dsn) {
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"))
}

// IsPostgres tells whether dsn names a Postgres database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

var columns = []string{"id", "external_id", "name", "workflow_id", "analyzed_at", "created_at"}

// checkColumns returns ErrForeignSchema unless got holds exactly durlab's columns.
func checkColumns(got []string) error {
	if len(got) != len(columns) {
		return fmt.Errorf("%w (columns %s)", ErrForeignSchema, strings.Join(got, ", "))
	}
	want := map[string]bool{}
	for _, c := range columns {
		want[c] = true
	}
	for _, c := range got {
		if !want[c] {
			return fmt.Errorf("%w (columns %s)", ErrForeignSchema, strings.Join(got, ", "))
		}
	}
	return nil
}

// insertChunk bounds the rows of one INSERT, below both backends' limits on
// bound parameters.
const insertChunk = 500

func insertStatements(users []fake.User, workflowID string, analyzedAt any, placeholder func(n int) string) []Statement {
	var stmts []Statement
	for start := 0; start < len(users); start += insertChunk {
		chunk := users[start:min(start+insertChunk, len(users))]
		var sb strings.Builder
		sb.WriteString("INSERT INTO users (id, external_id, name, workflow_id, analyzed_at) VALUES ")
		args := make([]any, 0, 5*len(chunk))
		for i, u := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for j := range 5 {
				if j > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString(placeholder(len(args) + j + 1))
			}
			sb.WriteByte(')')
			args = append(args, u.ID, u.ExternalID, u.Name, workflowID, analyzedAt)
		}
		stmts = append(stmts, Statement{SQL: sb.String(), Args: args})
	}
	return stmts
}

// The window-function count from the Python original: the latest row of each
// (id, workflow_id) partition, so duplicates from retries and recoveries
// count once.
const latestCountSQL = `SELECT COUNT(*) FROM (
	SELECT ROW_NUMBER() OVER (PARTITION BY id, workflow_id ORDER BY created_at DESC) AS rn
	FROM users WHERE workflow_id = %s) ranked WHERE rn = 1`

// duplicateError keeps the database's own message, which names the
// constraint, and matches ErrDuplicateUser.
type duplicateError struct{ err error }

func (e duplicateError) Error() string        { return e.err.Error() }
func (e duplicateError) Unwrap() error        { return e.err }
func (e duplicateError) Is(target error) bool { return target == ErrDuplicateUser }
