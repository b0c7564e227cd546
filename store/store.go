// Package store keeps the experiments' users tables, on SQLite or Postgres.
//
// Both tables have the same columns on both backends:
//
//	users(id, external_id, name, workflow_id, analyzed_at, created_at)
//
// and differ in their primary key, the two variants durlab's experiments
// need. Strict, the
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
//
// One implementation serves both backends: database/sql over mattn/go-sqlite3
// or over pgx, with what differs between them (placeholders, types, the
// schema catalogue, error codes) in a dialect value. Writes take the caller's
// transaction (Tx), which is either one the store began (Update) or the one
// dbos.RunAsTransaction hands over, so that no SQL is written outside this
// package: the attempt ledger's events (ledger.go) and the advisory locks
// durlab takes on a Postgres system database (locks.go) live here too.
//
// Errors: ErrForeignSchema and ErrUnavailable when a store cannot be
// opened, ErrDuplicateUser for the strict key; any other failure is the
// database's own error, wrapped.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/dburl"
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
	// Root is the workflow whose rows were counted, when a step recorded
	// the count: a fork may have copied the step from another workflow.
	Root string `json:"root,omitempty"`
}

// Records are what the store holds for one run, or what Forget deleted.
type Records struct {
	Rows   int64 `json:"rows"`   // users rows, both tables
	Events int64 `json:"events"` // attempt-ledger events
}

// Tx is the transaction a write joins: the dbos.Tx that
// dbos.RunAsTransaction hands its function, or one begun by Store.Update.
type Tx interface {
	Exec(ctx context.Context, query string, args ...any) (dbos.Result, error)
}

// Table is one users table.
type Table interface {
	// Variant is the table's primary-key variant.
	Variant() Variant
	// Insert writes users in tx, which the caller commits. A conflict on
	// the strict key gives an error wrapping ErrDuplicateUser; tx must then
	// be rolled back.
	Insert(ctx context.Context, tx Tx, users []fake.User, workflowID string, analyzedAt time.Time) error
	// InsertPage writes one page of users in one transaction of its own,
	// with Insert's errors.
	InsertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error
	// Counts counts what workflowID wrote; zero counts when it wrote
	// nothing. It fails only with the database's error.
	Counts(ctx context.Context, workflowID string) (Counts, error)
	// UserIDs are the distinct user IDs workflowID wrote. It fails only
	// with the database's error.
	UserIDs(ctx context.Context, workflowID string) (map[string]bool, error)
	// TotalRows counts every row of the table, all workflows': what the
	// Python ex5 and ex6 log as "Total users in database". It fails only
	// with the database's error.
	TotalRows(ctx context.Context) (int64, error)
	// WorkflowIDs lists the workflows that have rows in the table. It fails
	// only with the database's error.
	WorkflowIDs(ctx context.Context) ([]string, error)
	// Delete removes the rows of the given workflows, in one transaction,
	// and returns how many; on the database's error it removes none.
	Delete(ctx context.Context, workflowIDs []string) (int64, error)
}

// Store is one database: its two users tables and the attempt ledger, all
// created when it opens, so a recovered workflow or a worker's batch finds
// them.
type Store interface {
	// Table is the users table of variant v.
	Table(v Variant) Table
	// Update runs f in a transaction, committed when f returns nil and
	// rolled back otherwise; f's error is returned as it is.
	Update(ctx context.Context, f func(tx Tx) error) error
	// WritePage writes a page of users to table v under workflowID together
	// with the ledger events that go with it, atomically: in tx, which the
	// caller commits, or, with tx nil, on its own. Its errors are Insert's.
	WritePage(ctx context.Context, tx Tx, v Variant, users []fake.User, workflowID string, analyzedAt time.Time, events []Event) error
	// AppendEvents adds events to the attempt ledger (ledger.go): in tx,
	// committing or rolling back with it, or, with tx nil, at once and
	// atomically.
	AppendEvents(ctx context.Context, tx Tx, events []Event) error
	// Events returns the events of the run whose main workflow is root,
	// earliest first; none when the ledger holds none.
	Events(ctx context.Context, root string) ([]Event, error)
	// EachWorkflow calls fn with the events of each workflow of the run
	// but except, one workflow at a time, earliest first: memory holds one
	// workflow's. WorkflowEvents returns one workflow's, with lean the
	// plain successes left out and counted.
	EachWorkflow(ctx context.Context, root, except string, fn func(events []Event) error) error
	WorkflowEvents(ctx context.Context, root, workflow string, lean bool) ([]Event, int, error)
	// Noticed tells which of ids a run has reported as workflows the
	// system database does not know; MarkNoticed records that it did.
	Noticed(ctx context.Context, ids []string) (map[string]bool, error)
	MarkNoticed(ctx context.Context, ids []string) error
	// Crashes lists the run's injected crashes, with their processes.
	Crashes(ctx context.Context, root string) ([]Crash, error)
	// FaultDetails lists what decided each fault of the run (the Detail
	// of its FaultInjected events), earliest first.
	FaultDetails(ctx context.Context, root string) ([]string, error)
	// HasEvent tells whether the ledger holds event e, by its key.
	HasEvent(ctx context.Context, e Event) (bool, error)
	// OpenExecutions lists the run's executions that began and have no
	// end in the ledger: running, or killed.
	OpenExecutions(ctx context.Context, root string) ([]OpenExecution, error)
	// Holdings counts what the store holds for each run, by the ID of the
	// run's main workflow: its rows in both users tables (every row of a
	// run carries that ID) and its attempt-ledger events. It fails only
	// with the database's error.
	Holdings(ctx context.Context) (map[string]Records, error)
	// Forget deletes what the store holds for the runs whose main
	// workflows are roots (their rows in both users tables and their
	// ledger events) and the transaction records DBOS's data source keeps
	// for workflows (exactly-once's batches), in one transaction, and
	// returns what it deleted; on the database's error it deletes nothing.
	Forget(ctx context.Context, roots, workflows []string) (Records, error)
	// Compact gives the space of deleted rows back to the file system: a
	// SQLite file shrinks (VACUUM), a Postgres database is left to its
	// autovacuum. It fails with the database's error, SQLITE_BUSY when
	// another process is reading, and changes nothing then.
	Compact(ctx context.Context) error
	// NewDataSource makes the store a DBOS data source of c, for
	// dbos.RunAsTransaction: DBOS creates its transaction_completion table
	// in the store. It must be called before c is launched; it fails with
	// DBOS's error when the table cannot be created.
	NewDataSource(c dbos.Client) (*dbos.DataSource, error)
	// Close releases the database; it returns the driver's error, if any.
	Close() error
}

// Open opens the store named by dsn (see package dburl): a Postgres URL, or
// a SQLite file given as a path or a sqlite: URL. It creates what is
// missing, a missing Postgres database included (as DBOS creates its system
// database), and fails with ErrForeignSchema when a users table is not
// durlab's, or with ErrUnavailable when the database cannot be used (a role
// that may not create the missing database among them).
func Open(ctx context.Context, dsn string) (Store, error) {
	return open(ctx, dsn, false)
}

// ErrNoStore: the store does not exist yet, so it holds nothing.
var ErrNoStore = errors.New("the store does not exist yet")

// OpenForReading opens the store for commands that only read: it creates
// nothing, not even a missing SQLite file (ErrNoStore), and a store with no
// ledger reads as one with no events. Writes fail.
func OpenForReading(ctx context.Context, dsn string) (Store, error) {
	return open(ctx, dsn, true)
}

func open(ctx context.Context, dsn string, readOnly bool) (Store, error) {
	u, err := dburl.Parse(dsn, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	switch u.Kind {
	case dburl.Postgres:
		return openPostgres(ctx, u, readOnly)
	case dburl.SQLiteMemory:
		return nil, fmt.Errorf("%w: %s is a database in memory, which neither DBOS's data source, another process nor a later run can see: give a file path or a postgres:// URL", ErrUnavailable, u.Raw)
	}
	return openSQLite(ctx, u.Path, readOnly)
}
