package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/mattn/go-sqlite3"
)

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
func openSQLite(ctx context.Context, path string, readOnly bool) (Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty SQLite path", ErrUnavailable)
	}
	if readOnly {
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNoStore, path)
		}
		db := sql.OpenDB(newSQLiteConnector("file:" + path + "?_busy_timeout=10000"))
		db.SetMaxOpenConns(1)
		s := &sqlStore{db: db, d: sqliteDialect, readOnly: true}
		if err := s.checkLedger(ctx); err != nil {
			db.Close()
			return nil, openFailed(path, path, err)
		}
		return s, nil
	}
	// A store that exists and may not be written is the environment's
	// (a permission changed, a file system remounted read-only, exit 4);
	// one that cannot be created where the user said is configuration.
	_, statErr := os.Stat(path)
	exists := statErr == nil
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if exists {
			return nil, openFailed(path, path, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	f.Close()
	// Two processes opening a new file at once race to switch it to WAL,
	// and SQLite answers the loser "database is locked" without waiting
	// for its busy timeout: opening is serialised on a lock file, which
	// also serialises the schema checks and changes.
	lock, err := os.OpenFile(path+".open-lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if exists {
			return nil, openFailed(path, path, err)
		}
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
	s := &sqlStore{db: db, d: sqliteDialect}
	if err := checkIntegrity(ctx, db, path); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		db.Close()
		if errors.Is(err, ErrForeignSchema) {
			return nil, err
		}
		return nil, openFailed(path, path, err)
	}
	if err := s.prepareEvents(ctx); err != nil {
		s.Close()
		return nil, openFailed(path, path, err)
	}
	return s, nil
}

// integrityCheckMax is the largest store checked when it opens: SQLite's
// quick_check reads every page, about 0.1 s for this size here, while a
// million-user store (hundreds of MB) would pay seconds at every start.
const integrityCheckMax = 64 << 20

// checkIntegrity refuses a corrupt SQLite store before anything runs on it.
// A file with a valid header and damaged pages opens, and its schema may
// read fine: without the check, the first write that touches a damaged page
// fails deep inside a workflow. Larger stores are left to the errors of
// their writes, which end the process the same way (lab's environment
// faults).
func checkIntegrity(ctx context.Context, db *sql.DB, path string) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() == 0 || st.Size() > integrityCheckMax {
		return nil
	}
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(1)")
	if err != nil {
		return openFailed(path, path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return openFailed(path, path, err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return openFailed(path, path, err)
	}
	if len(problems) > 0 {
		return &EnvironmentError{DB: path, Role: "store", Fault: FaultCorrupt, raw: path,
			Err: fmt.Errorf("integrity check: %s", strings.Join(problems, "; "))}
	}
	return nil
}
