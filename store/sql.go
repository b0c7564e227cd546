package store

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durlab/durlab/fake"
)

// sqlStore is the store on either backend: its SQL differs by dialect only.
type sqlStore struct {
	db *sql.DB
	d  dialect
	// pool is the Postgres pool behind db, which DBOS needs for a Postgres
	// data source (it takes a *sql.DB for SQLite); nil on SQLite.
	pool *pgxpool.Pool
	// ledger appends the events that are not part of a write; nil: db.
	// On Postgres its sessions commit asynchronously (see ledger.go).
	ledger     *sql.DB
	ledgerPool *pgxpool.Pool
	// insertEvent appends one event: prepared once, because a page's
	// transaction carries a few events and preparing a 22-column INSERT
	// costs more than running it.
	insertEvent *sql.Stmt
	// prepared are the INSERTs of users, by SQL text: the same few, one per
	// page size, run once per page; preparing one costs about as much as
	// running it. A statement first met inside a transaction runs
	// unprepared and is prepared when the transaction ends: preparing it
	// inside would wait forever for SQLite's only connection, which the
	// transaction holds.
	prepared sync.Map // SQL text -> *sql.Stmt
	wanted   sync.Map // SQL text -> true: to prepare after the transaction

	// readOnly: opened by OpenForReading; noLedger: and it has no ledger.
	readOnly, noLedger bool
}

// checkLedger looks for the ledger, which a store written by an older
// durlab lacks.
func (s *sqlStore) checkLedger(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, s.d.columnsSQL, "durlab_events")
	if err != nil {
		return err
	}
	defer rows.Close()
	s.noLedger = !rows.Next()
	return rows.Err()
}

// prepareWanted prepares the statements transactions met unprepared.
func (s *sqlStore) prepareWanted(ctx context.Context) {
	s.wanted.Range(func(k, _ any) bool {
		query := k.(string)
		s.wanted.Delete(query)
		if _, ok := s.prepared.Load(query); ok {
			return true
		}
		if st, err := s.db.PrepareContext(ctx, query); err == nil {
			if _, loaded := s.prepared.LoadOrStore(query, st); loaded {
				st.Close()
			}
		}
		return true
	})
}

func (s *sqlStore) ledgerDB() *sql.DB {
	if s.ledger != nil {
		return s.ledger
	}
	return s.db
}

// sqlTx is a transaction of the store's own, as a Tx.
type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) Exec(ctx context.Context, query string, args ...any) (dbos.Result, error) {
	return t.tx.ExecContext(ctx, query, args...)
}

// prepare refuses a foreign users table, or a database it cannot use, before
// writing anything, then creates what is missing, in one transaction.
func (s *sqlStore) prepare(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.d.schemaLock != "" {
		if _, err := tx.ExecContext(ctx, s.d.schemaLock); err != nil {
			return err
		}
	}
	for _, v := range []Variant{Strict, Ledger} {
		if err := s.checkTable(ctx, tx, v); err != nil {
			return err
		}
	}
	if err := s.migrateEvents(ctx, tx); err != nil {
		return err
	}
	for _, ddl := range s.d.createAll() {
		if _, err := tx.ExecContext(ctx, ddl); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// checkTable returns ErrForeignSchema when the variant's table exists with
// other columns or another primary key.
func (s *sqlStore) checkTable(ctx context.Context, tx *sql.Tx, v Variant) error {
	rows, err := tx.QueryContext(ctx, s.d.columnsSQL, v.Table())
	if err != nil {
		return err
	}
	defer rows.Close()
	var names, key []string
	for rows.Next() {
		var name string
		var inKey bool
		if err := rows.Scan(&name, &inKey); err != nil {
			return err
		}
		names = append(names, name)
		if inKey {
			key = append(key, name)
		}
	}
	if err := rows.Err(); err != nil || len(names) == 0 {
		return err
	}
	return checkSchema(v, names, key)
}

func (s *sqlStore) Table(v Variant) Table { return sqlTable{s: s, v: v} }

func (s *sqlStore) Update(ctx context.Context, f func(tx Tx) error) error {
	err := s.update(ctx, f)
	s.prepareWanted(ctx)
	return err
}

func (s *sqlStore) update(ctx context.Context, f func(tx Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(sqlTx{tx}); err != nil {
		return err
	}
	return s.d.classify(tx.Commit())
}

func (s *sqlStore) NewDataSource(c dbos.Client) (*dbos.DataSource, error) {
	if s.pool != nil {
		return dbos.NewDataSource(c, s.pool)
	}
	return dbos.NewDataSource(c, s.db)
}

func (s *sqlStore) Close() error {
	if s.insertEvent != nil {
		s.insertEvent.Close()
	}
	s.prepared.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	err := s.db.Close()
	if s.ledger != nil {
		s.ledger.Close()
		s.ledgerPool.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
	return err
}

// sqlTable is one of the store's two users tables.
type sqlTable struct {
	s *sqlStore
	v Variant
}

func (t sqlTable) Variant() Variant { return t.v }

func (t sqlTable) Insert(ctx context.Context, tx Tx, users []fake.User, workflowID string, analyzedAt time.Time) error {
	own, isOwn := tx.(sqlTx)
	for _, st := range t.s.d.insertStatements(t.v, users, workflowID, analyzedAt) {
		var err error
		if prepared, ok := t.s.prepared.Load(st.sql); ok && isOwn {
			_, err = own.tx.StmtContext(ctx, prepared.(*sql.Stmt)).ExecContext(ctx, st.args...)
		} else {
			if isOwn && t.s.d.prepare {
				t.s.wanted.Store(st.sql, true)
			}
			_, err = tx.Exec(ctx, st.sql, st.args...)
		}
		if err != nil {
			return t.s.d.classify(err)
		}
	}
	return nil
}

func (t sqlTable) InsertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error {
	return t.s.Update(ctx, func(tx Tx) error { return t.Insert(ctx, tx, users, workflowID, analyzedAt) })
}

func (t sqlTable) Counts(ctx context.Context, workflowID string) (Counts, error) {
	var c Counts
	err := t.s.db.QueryRowContext(ctx, t.s.d.countsSQL(t.v), workflowID).Scan(&c.Rows, &c.UniqueUsers)
	if err != nil {
		return c, err
	}
	err = t.s.db.QueryRowContext(ctx, t.s.d.latestCount(t.v), workflowID).Scan(&c.Latest)
	return c, err
}

func (t sqlTable) UserIDs(ctx context.Context, workflowID string) (map[string]bool, error) {
	rows, err := t.s.db.QueryContext(ctx, `SELECT DISTINCT id FROM `+t.v.Table()+` WHERE workflow_id = `+t.s.d.placeholder(1), workflowID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

func (t sqlTable) TotalRows(ctx context.Context) (int64, error) {
	var n int64
	err := t.s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.v.Table()).Scan(&n)
	return n, err
}

func (t sqlTable) WorkflowIDs(ctx context.Context) ([]string, error) {
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

func (t sqlTable) Delete(ctx context.Context, workflowIDs []string) (int64, error) {
	if len(workflowIDs) == 0 {
		return 0, nil
	}
	var n int64
	err := t.s.Update(ctx, func(tx Tx) error {
		var err error
		n, err = t.s.deleteIn(ctx, tx, t.v.Table(), "workflow_id", workflowIDs)
		return err
	})
	return n, err
}
