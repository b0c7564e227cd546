package store

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"

	"github.com/durlab/durlab/fake"
)

// dialect is everything that differs between the backends' SQL.
type dialect struct {
	name         string
	placeholder  func(n int) string
	timeType     string // analyzed_at, created_at
	intType      string // the ledger's numbers
	createdAtNow string // created_at's default: the insert time, sub-second
	// timeArg is how analyzed_at is bound.
	timeArg func(t time.Time) any
	// createdAtArg is how the ledger table's created_at is bound: in the
	// default's own format, with microseconds.
	createdAtArg func(t time.Time) any
	// clusteredTable ends a CREATE TABLE whose rows live in their primary
	// key's b-tree.
	clusteredTable string
	// prepare: statements run often are prepared once. On SQLite, where a
	// statement costs no round trip, preparing a page's INSERT costs about
	// as much as running it. On Postgres a statement is a round trip, so
	// fewer statements matter more; pgx caches its prepared statements.
	prepare bool
	// oneStatement: a page and its events can be written by one statement
	// (a data-modifying CTE), which commits atomically on its own.
	oneStatement bool
	// schemaLock serialises schema changes among processes ("" when opening
	// is serialised otherwise).
	schemaLock string
	// columnsSQL lists a table's columns as (name, in the primary key), with
	// no row when the table does not exist.
	columnsSQL string
	// countsSQL counts the rows and distinct users of one workflow.
	countsSQL func(v Variant) string
	// isDuplicate tells whether err is a primary-key conflict.
	isDuplicate func(err error) bool
	// completionTable is where DBOS's data source keeps its transaction
	// records (in the schema DBOS gives it by default on Postgres).
	completionTable string
	// compact shrinks the database file ("" where nothing does).
	compact string
}

// sqliteDialect: times as text with milliseconds. Counts group by id, which
// streams over the primary-key index (it starts with id): COUNT(DISTINCT
// id) would build a temporary b-tree of every ID, in memory with
// temp_store=MEMORY.
var sqliteDialect = dialect{
	name:            "sqlite",
	placeholder:     func(int) string { return "?" },
	timeType:        "TEXT",
	intType:         "INTEGER",
	createdAtNow:    "(strftime('%Y-%m-%d %H:%M:%f', 'now'))",
	timeArg:         func(t time.Time) any { return t.UTC().Format(time.RFC3339Nano) },
	createdAtArg:    func(t time.Time) any { return t.UTC().Format("2006-01-02 15:04:05.000000") },
	clusteredTable:  " WITHOUT ROWID",
	prepare:         true,
	completionTable: "transaction_completion",
	compact:         "VACUUM",
	columnsSQL:      `SELECT name, pk > 0 FROM pragma_table_info(?)`,
	countsSQL: func(v Variant) string {
		return `SELECT COALESCE(SUM(n), 0), COUNT(*) FROM
		(SELECT COUNT(*) AS n FROM ` + v.Table() + ` WHERE workflow_id = ? GROUP BY id)`
	},
	isDuplicate: func(err error) bool {
		var se sqlite3.Error
		return errors.As(err, &se) && (se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey || se.ExtendedCode == sqlite3.ErrConstraintUnique)
	},
}

// pgSchemaLock is the advisory lock key ("durlab" in ASCII) that serialises
// schema changes: concurrent CREATE TABLE IF NOT EXISTS can still fail on
// Postgres's catalog unique indexes, and several processes may share the
// database.
const pgSchemaLock int64 = 0x6475726c6162

// postgresDialect: created_at from clock_timestamp(), the time of the insert
// itself rather than of its transaction.
var postgresDialect = dialect{
	name:            "postgres",
	placeholder:     func(n int) string { return "$" + strconv.Itoa(n) },
	timeType:        "TIMESTAMPTZ",
	intType:         "BIGINT",
	createdAtNow:    "clock_timestamp()",
	timeArg:         func(t time.Time) any { return t },
	createdAtArg:    func(t time.Time) any { return t },
	oneStatement:    true,
	completionTable: "dbos.transaction_completion",
	schemaLock:      fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, pgSchemaLock),
	// The table as the search_path resolves it.
	columnsSQL: `SELECT a.attname::text, COALESCE(a.attnum = ANY(i.indkey::int2[]), false)
		FROM pg_attribute a
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`,
	countsSQL: func(v Variant) string {
		return `SELECT COUNT(*), COUNT(DISTINCT id) FROM ` + v.Table() + ` WHERE workflow_id = $1`
	},
	isDuplicate: func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == "23505"
	},
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

// createAll is every table a store needs, created at open.
func (d dialect) createAll() []string {
	return append([]string{d.createUsers(Strict), d.createUsers(Ledger)}, d.createEvents()...)
}

// createView creates a view unless it exists (SQLite) or replaces it
// (Postgres, which has no IF NOT EXISTS for views).
func (d dialect) createView(name, query string) string {
	if d.name == "postgres" {
		return "CREATE OR REPLACE VIEW " + name + " AS " + query
	}
	return "CREATE VIEW IF NOT EXISTS " + name + " AS " + query
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

// statement is one SQL statement with its arguments.
type statement struct {
	sql  string
	args []any
}

// insertStatements insert a page. The ledger table's created_at, part of
// its key, is bound from the process's clock at microsecond precision
// rather than left to the default: SQLite's clock has milliseconds, and
// ex6's retries back off to waits of 0.1 ms and less, so a retry's rows would
// collide with the attempt's before it on the key. The strict table keeps
// the database's default.
func (d dialect) insertStatements(v Variant, users []fake.User, workflowID string, analyzedAt time.Time) []statement {
	at := d.timeArg(analyzedAt)
	cols, n := "id, external_id, name, workflow_id, analyzed_at", 5
	var created any
	if v == Ledger {
		cols, n, created = cols+", created_at", 6, d.createdAtArg(time.Now())
	}
	var stmts []statement
	for start := 0; start < len(users); start += insertChunk {
		chunk := users[start:min(start+insertChunk, len(users))]
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + v.Table() + " (" + cols + ") VALUES ")
		args := make([]any, 0, n*len(chunk))
		for i, u := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for j := range n {
				if j > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString(d.placeholder(len(args) + j + 1))
			}
			sb.WriteByte(')')
			args = append(args, u.ID, u.ExternalID, u.Name, workflowID, at)
			if v == Ledger {
				args = append(args, created)
			}
		}
		stmts = append(stmts, statement{sb.String(), args})
	}
	return stmts
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

// duplicateError keeps the database's own message, which names the
// constraint, and matches ErrDuplicateUser.
type duplicateError struct{ err error }

func (e duplicateError) Error() string        { return e.err.Error() }
func (e duplicateError) Unwrap() error        { return e.err }
func (e duplicateError) Is(target error) bool { return target == ErrDuplicateUser }

// classify wraps a primary-key conflict in ErrDuplicateUser.
func (d dialect) classify(err error) error {
	if err != nil && d.isDuplicate(err) {
		return duplicateError{err}
	}
	return err
}
