package store

// Forgetting runs: what `durlab clean` deletes from the store. The system
// database's side (DBOS's own records of the workflows) is deleted through
// DBOS's API by the caller, after the store's, so that a failure in between
// leaves rows whose workflow DBOS still knows, which a later clean finds
// again, rather than rows no one can trace back to a workflow.

import (
	"context"
	"database/sql"
	"strings"
)

func (s *sqlStore) Holdings(ctx context.Context) (map[string]Records, error) {
	held := map[string]Records{}
	count := func(query string, add func(r *Records, n int64)) error {
		rows, err := s.db.QueryContext(ctx, query)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			r := held[id]
			add(&r, n)
			held[id] = r
		}
		return rows.Err()
	}
	for _, v := range []Variant{Strict, Ledger} {
		if err := count(`SELECT workflow_id, COUNT(*) FROM `+v.Table()+` GROUP BY workflow_id`,
			func(r *Records, n int64) { r.Rows += n }); err != nil {
			return nil, err
		}
	}
	if s.noLedger {
		return held, nil
	}
	err := count(`SELECT root_id, COUNT(*) FROM durlab_events GROUP BY root_id`, func(r *Records, n int64) { r.Events += n })
	return held, err
}

func (s *sqlStore) Forget(ctx context.Context, roots, workflows []string) (Records, error) {
	hasCompletions, err := s.tableExists(ctx, s.d.completionTable)
	if err != nil {
		return Records{}, err
	}
	var gone Records
	err = s.Update(ctx, func(tx Tx) error {
		gone = Records{}
		for _, v := range []Variant{Strict, Ledger} {
			n, err := s.deleteIn(ctx, tx, v.Table(), "workflow_id", roots)
			if err != nil {
				return err
			}
			gone.Rows += n
		}
		if !s.noLedger {
			n, err := s.deleteIn(ctx, tx, "durlab_events", "root_id", roots)
			if err != nil {
				return err
			}
			gone.Events = n
		}
		if hasCompletions {
			if _, err := s.deleteIn(ctx, tx, s.d.completionTable, "workflow_id", workflows); err != nil {
				return err
			}
		}
		return nil
	})
	return gone, err
}

// deleteIn deletes the rows of table whose column is one of ids, in chunks
// below both backends' limits on bound parameters.
func (s *sqlStore) deleteIn(ctx context.Context, tx Tx, table, column string, ids []string) (int64, error) {
	var n int64
	for start := 0; start < len(ids); start += insertChunk {
		chunk := ids[start:min(start+insertChunk, len(ids))]
		marks := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, id := range chunk {
			marks[i], args[i] = s.d.placeholder(i+1), id
		}
		res, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE `+column+` IN (`+strings.Join(marks, ", ")+`)`, args...)
		if err != nil {
			return n, err
		}
		d, _ := res.RowsAffected()
		n += d
	}
	return n, nil
}

// tableExists tells whether table (schema-qualified on Postgres) exists.
func (s *sqlStore) tableExists(ctx context.Context, table string) (bool, error) {
	rows, err := s.db.QueryContext(ctx, s.d.columnsSQL, table)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	return rows.Next(), rows.Err()
}

func (s *sqlStore) Compact(ctx context.Context) error {
	if s.d.compact == "" {
		return nil
	}
	_, err := s.db.ExecContext(ctx, s.d.compact)
	return err
}

// CompactSQLiteFile shrinks a SQLite file that is no store, DBOS's system
// database once `durlab clean` deleted workflows from it (DBOS has no call
// for that): VACUUM, waiting a few seconds for other processes' locks.
func CompactSQLiteFile(ctx context.Context, path string) error {
	db := sql.OpenDB(newSQLiteConnector("file:" + path + "?_busy_timeout=5000"))
	defer db.Close()
	_, err := db.ExecContext(ctx, "VACUUM")
	return err
}
