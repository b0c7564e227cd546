package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/durlab/durlab/fake"
)

type sqliteStore struct {
	db *sql.DB
}

// Tuning, measured with `durlab profile` at 1,000,000 users (see
// bench/run.sh). Random UUID keys spread each page's rows over about as
// many leaf pages of the primary-key index, so each commit writes a few
// hundred KB whatever is done: the cost is in the bytes written, not in the
// page cache (a larger cache_size did not help and costs memory), nor in
// preparing the statements (a statement cache did not help either).
const (
	// sqliteWALCheckpointPages replaces SQLite's default of 1000 pages
	// (4 MB): a checkpoint then copies each index page once for many
	// commits instead of once every few commits. The WAL grows to about
	// 400 MB on disk during a million-user run; SQLite removes it when the
	// store is closed.
	sqliteWALCheckpointPages = 100000
)

// sqliteConnectPragmas run on every new connection. temp_store=MEMORY
// keeps the statement journals of the INSERTs in memory: the created_at
// default calls a function, so SQLite journals every INSERT statement of a
// transaction, and on disk those journals doubled the bytes written. They
// hold the pages one statement changes, at most a few MB. Counts is written
// to need no temporary b-tree, so the setting does not make memory grow
// with the table.
var sqliteConnectPragmas = []string{
	"PRAGMA temp_store = MEMORY",
	fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", sqliteWALCheckpointPages),
}

// sqliteConnector opens mattn connections, each set up with
// sqliteConnectPragmas, which the DSN cannot express.
type sqliteConnector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

func newSQLiteConnector(dsn string) sqliteConnector {
	return sqliteConnector{dsn: dsn, driver: &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			for _, p := range sqliteConnectPragmas {
				if _, err := c.Exec(p, nil); err != nil {
					return err
				}
			}
			return nil
		},
	}}
}

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c sqliteConnector) Driver() driver.Driver                        { return c.driver }

// openSQLite opens (creating, mode 0600) the file at path. WAL and a busy
// timeout let several processes share the file. The store uses a single
// connection with immediate transactions: DBOS's RunAsTransaction does not
// recognise mattn's SQLITE_BUSY, so writers must queue on the file lock
// instead of failing on a lock upgrade.
func openSQLite(ctx context.Context, path string) (Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty SQLite path", ErrUnavailable)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	f.Close()
	// Two processes opening a new file at once race to switch it to WAL,
	// and SQLite answers the loser "database is locked" without waiting
	// for its busy timeout: opening is serialised on a lock file.
	lock, err := os.OpenFile(path+".open-lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("%w: lock %s: %v", ErrUnavailable, lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", "10000")
	q.Set("_txlock", "immediate")
	q.Set("_synchronous", "NORMAL")
	db := sql.OpenDB(newSQLiteConnector("file:" + path + "?" + q.Encode()))
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	s := &sqliteStore{db: db}
	// Refuse a foreign users table, or a file that is not a database,
	// before writing anything.
	for _, v := range []Variant{Strict, Ledger} {
		if err := s.checkTable(ctx, v); err != nil {
			db.Close()
			if errors.Is(err, ErrForeignSchema) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, path, err)
		}
	}
	for _, ddl := range sqliteSQL.createAll() {
		if _, err := db.ExecContext(ctx, ddl); err != nil {
			db.Close()
			return nil, fmt.Errorf("%w: %s: %v", ErrUnavailable, path, err)
		}
	}
	return s, nil
}

// sqliteSQL is the SQLite dialect: created_at as text with milliseconds.
var sqliteSQL = dialect{
	placeholder:  func(int) string { return "?" },
	timeType:     "TEXT",
	intType:      "INTEGER",
	createdAtNow: "(strftime('%Y-%m-%d %H:%M:%f', 'now'))",
}

// checkTable returns ErrForeignSchema when the variant's table exists with
// other columns or another primary key.
func (s *sqliteStore) checkTable(ctx context.Context, v Variant) error {
	rows, err := s.db.QueryContext(ctx, `SELECT name, pk FROM pragma_table_info(?)`, v.Table())
	if err != nil {
		return err
	}
	defer rows.Close()
	var names, key []string
	for rows.Next() {
		var name string
		var pk int
		if err := rows.Scan(&name, &pk); err != nil {
			return err
		}
		names = append(names, name)
		if pk > 0 {
			key = append(key, name)
		}
	}
	if err := rows.Err(); err != nil || len(names) == 0 {
		return err
	}
	return checkSchema(v, names, key)
}

func (s *sqliteStore) Table(v Variant) Table { return sqliteTable{s: s, v: v} }

// sqliteTable is one of the store's two users tables.
type sqliteTable struct {
	s *sqliteStore
	v Variant
}

func (t sqliteTable) Variant() Variant { return t.v }

func (t sqliteTable) InsertStatements(users []fake.User, workflowID string, analyzedAt time.Time) []Statement {
	return sqliteSQL.insertStatements(t.v.Table(), users, workflowID, analyzedAt.UTC().Format(time.RFC3339Nano))
}

func (t sqliteTable) InsertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error {
	tx, err := t.s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, st := range t.InsertStatements(users, workflowID, analyzedAt) {
		if _, err := tx.ExecContext(ctx, st.SQL, st.Args...); err != nil {
			return classifySQLite(err)
		}
	}
	return classifySQLite(tx.Commit())
}

// classifySQLite wraps a primary-key conflict in ErrDuplicateUser, keeping
// SQLite's own message.
func classifySQLite(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey || se.ExtendedCode == sqlite3.ErrConstraintUnique) {
		return duplicateError{err}
	}
	return err
}

// sqliteCountsSQL counts rows and distinct users of one workflow.
func sqliteCountsSQL(v Variant) string {
	return `SELECT COALESCE(SUM(n), 0), COUNT(*) FROM
		(SELECT COUNT(*) AS n FROM ` + v.Table() + ` WHERE workflow_id = ? GROUP BY id)`
}

func (t sqliteTable) Counts(ctx context.Context, workflowID string) (Counts, error) {
	var c Counts
	// Grouping by id streams over the primary-key index, which starts with
	// id; COUNT(DISTINCT id) would build a temporary b-tree of every ID,
	// in memory with temp_store=MEMORY.
	err := t.s.db.QueryRowContext(ctx, sqliteCountsSQL(t.v), workflowID).Scan(&c.Rows, &c.UniqueUsers)
	if err != nil {
		return c, err
	}
	err = t.s.db.QueryRowContext(ctx, sqliteSQL.latestCount(t.v), workflowID).Scan(&c.Latest)
	return c, err
}

func (t sqliteTable) WorkflowIDs(ctx context.Context) ([]string, error) {
	rows, err := t.s.db.QueryContext(ctx, `SELECT DISTINCT workflow_id FROM `+t.v.Table())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (t sqliteTable) Delete(ctx context.Context, workflowIDs []string) (int64, error) {
	var n int64
	for _, id := range workflowIDs {
		res, err := t.s.db.ExecContext(ctx, `DELETE FROM `+t.v.Table()+` WHERE workflow_id = ?`, id)
		if err != nil {
			return n, err
		}
		d, _ := res.RowsAffected()
		n += d
	}
	return n, nil
}

func (s *sqliteStore) AddStats(ctx context.Context, workflowID string, d Stats) error {
	_, err := s.db.ExecContext(ctx, sqliteSQL.addStats(), addStatsArgs(workflowID, d)...)
	return err
}

func (s *sqliteStore) Stats(ctx context.Context, workflowID string) (Stats, error) {
	var st Stats
	err := s.db.QueryRowContext(ctx, sqliteSQL.selectStats(), workflowID).Scan(statsDest(&st)...)
	if errors.Is(err, sql.ErrNoRows) {
		return Stats{}, nil
	}
	return st, err
}

func (s *sqliteStore) Engine() any  { return s.db }
func (s *sqliteStore) Close() error { return s.db.Close() }
