// Package store keeps the experiments' users tables, on SQLite or Postgres.
//
// Both tables have the same columns on both backends:
//
//	users(id, external_id, name, workflow_id, analyzed_at, created_at)
//
// and differ in their primary key, the two variants of SPEC. Strict, the
// table users, makes (id, workflow_id, analyzed_at) the key, so writing the
// same user twice in one execution fails: the lesson of retry-bad. Ledger,
// the table users_ledger, adds created_at to the key, so duplicates are
// stored and counted: what dedup measures. Two tables rather than one
// recreated in the variant each run needs, so that experiments of both kinds
// can be pending at once without one destroying the other's rows.
//
// Every count is scoped to one workflow ID, so rows left by other runs never
// change the result of the current one; tables are emptied workflow by
// workflow (Delete), never dropped.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// Table is the name of the variant's table.
func (v Variant) Table() string {
	if v == Ledger {
		return "users_ledger"
	}
	return "users"
}

var (
	// ErrForeignSchema: a users table exists that durlab did not create. It is
	// never altered or dropped.
	ErrForeignSchema = errors.New("store has a users table that durlab did not create")
	// ErrDuplicateUser: an insert hit the strict variant's primary key.
	ErrDuplicateUser = errors.New("UNIQUE constraint violated")
	// ErrUnavailable: the database could not be opened or reached.
	ErrUnavailable = errors.New("store unavailable")
)

// Counts describe what one workflow wrote. Workflows return them, so the
// JSON names are part of their checkpointed output.
type Counts struct {
	Rows        int64 `json:"rows"`         // every row, duplicates included
	UniqueUsers int64 `json:"unique_users"` // distinct user IDs
	Latest      int64 `json:"latest"`       // the window-function count: the latest row per (id, workflow_id)
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

// Statement is one SQL statement with its arguments, in the store's dialect.
type Statement struct {
	SQL  string
	Args []any
}

// Table is one users table.
type Table interface {
	// Variant is the table's primary-key variant.
	Variant() Variant
	// InsertPage writes one page of users in one transaction. A conflict on
	// the strict key gives an error wrapping ErrDuplicateUser.
	InsertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error
	// InsertStatements returns the statements InsertPage runs, for callers
	// that run them inside a transaction of their own (dbos.RunAsTransaction).
	InsertStatements(users []fake.User, workflowID string, analyzedAt time.Time) []Statement
	// Counts counts what workflowID wrote.
	Counts(ctx context.Context, workflowID string) (Counts, error)
	// WorkflowIDs lists the workflows that have rows in the table.
	WorkflowIDs(ctx context.Context) ([]string, error)
	// Delete removes the rows of the given workflows and returns how many.
	Delete(ctx context.Context, workflowIDs []string) (int64, error)
}

// Store is one database: its two users tables and the stats, all created
// when it opens, so a recovered workflow or a worker's batch finds them.
type Store interface {
	// Table is the users table of variant v.
	Table(v Variant) Table
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

// checkSchema returns ErrForeignSchema unless a table of variant v has
// exactly durlab's columns and v's primary key.
func checkSchema(v Variant, names, key []string) error {
	if !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(columns))) {
		return fmt.Errorf("%w (table %s has columns %s)", ErrForeignSchema, v.Table(), strings.Join(names, ", "))
	}
	want := []string{"analyzed_at", "id", "workflow_id"}
	if v == Ledger {
		want = []string{"analyzed_at", "created_at", "id", "workflow_id"}
	}
	if !slices.Equal(slices.Sorted(slices.Values(key)), want) {
		return fmt.Errorf("%w (table %s has primary key %s)", ErrForeignSchema, v.Table(), strings.Join(key, ", "))
	}
	return nil
}

// dialect is what differs between the backends' SQL.
type dialect struct {
	placeholder  func(n int) string
	timeType     string // analyzed_at, created_at
	intType      string // the stats
	createdAtNow string // created_at's default: the insert time, sub-second
}

func (d dialect) createUsers(v Variant) string {
	key := "id, workflow_id, analyzed_at"
	if v == Ledger {
		key += ", created_at"
	}
	return `CREATE TABLE IF NOT EXISTS ` + v.Table() + ` (
		id TEXT NOT NULL,
		external_id TEXT NOT NULL,
		name TEXT NOT NULL,
		workflow_id TEXT NOT NULL,
		analyzed_at ` + d.timeType + ` NOT NULL,
		created_at ` + d.timeType + ` NOT NULL DEFAULT ` + d.createdAtNow + `,
		PRIMARY KEY (` + key + `))`
}

func (d dialect) createStats() string {
	return `CREATE TABLE IF NOT EXISTS durlab_stats (
		workflow_id TEXT PRIMARY KEY,
		step_attempts ` + d.intType + ` NOT NULL DEFAULT 0,
		injected_failures ` + d.intType + ` NOT NULL DEFAULT 0,
		unique_violations ` + d.intType + ` NOT NULL DEFAULT 0,
		crashes ` + d.intType + ` NOT NULL DEFAULT 0,
		commit_crashes ` + d.intType + ` NOT NULL DEFAULT 0)`
}

// createAll is every table a store needs, created at open.
func (d dialect) createAll() []string {
	return []string{d.createStats(), d.createUsers(Strict), d.createUsers(Ledger)}
}

func (d dialect) addStats() string {
	p := d.placeholder
	return `INSERT INTO durlab_stats
		(workflow_id, step_attempts, injected_failures, unique_violations, crashes, commit_crashes)
		VALUES (` + p(1) + `, ` + p(2) + `, ` + p(3) + `, ` + p(4) + `, ` + p(5) + `, ` + p(6) + `)
		ON CONFLICT (workflow_id) DO UPDATE SET
		step_attempts = durlab_stats.step_attempts + excluded.step_attempts,
		injected_failures = durlab_stats.injected_failures + excluded.injected_failures,
		unique_violations = durlab_stats.unique_violations + excluded.unique_violations,
		crashes = durlab_stats.crashes + excluded.crashes,
		commit_crashes = durlab_stats.commit_crashes + excluded.commit_crashes`
}

func addStatsArgs(workflowID string, d Stats) []any {
	return []any{workflowID, d.StepAttempts, d.InjectedFailures, d.UniqueViolations, d.Crashes, d.CommitCrashes}
}

func (d dialect) selectStats() string {
	return `SELECT step_attempts, injected_failures, unique_violations, crashes, commit_crashes
		FROM durlab_stats WHERE workflow_id = ` + d.placeholder(1)
}

func statsDest(st *Stats) []any {
	return []any{&st.StepAttempts, &st.InjectedFailures, &st.UniqueViolations, &st.Crashes, &st.CommitCrashes}
}

// latestCount is the window-function count from the Python original: the
// latest row of each (id, workflow_id) partition, so duplicates from retries
// and recoveries count once.
func (d dialect) latestCount(v Variant) string {
	return `SELECT COUNT(*) FROM (
	SELECT ROW_NUMBER() OVER (PARTITION BY id, workflow_id ORDER BY created_at DESC) AS rn
	FROM ` + v.Table() + ` WHERE workflow_id = ` + d.placeholder(1) + `) ranked WHERE rn = 1`
}

// insertChunk bounds the rows of one INSERT, below both backends' limits on
// bound parameters.
const insertChunk = 500

func (d dialect) insertStatements(table string, users []fake.User, workflowID string, analyzedAt any) []Statement {
	var stmts []Statement
	for start := 0; start < len(users); start += insertChunk {
		chunk := users[start:min(start+insertChunk, len(users))]
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + table + " (id, external_id, name, workflow_id, analyzed_at) VALUES ")
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
				sb.WriteString(d.placeholder(len(args) + j + 1))
			}
			sb.WriteByte(')')
			args = append(args, u.ID, u.ExternalID, u.Name, workflowID, analyzedAt)
		}
		stmts = append(stmts, Statement{SQL: sb.String(), Args: args})
	}
	return stmts
}

// duplicateError keeps the database's own message, which names the
// constraint, and matches ErrDuplicateUser.
type duplicateError struct{ err error }

func (e duplicateError) Error() string        { return e.err.Error() }
func (e duplicateError) Unwrap() error        { return e.err }
func (e duplicateError) Is(target error) bool { return target == ErrDuplicateUser }
