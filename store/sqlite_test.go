package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The SQLite tuning holds on every connection the store opens, and the
// counts need no temporary b-tree, so memory does not grow with the table.
func TestSQLiteTuning(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := st.(*sqlStore)
	s.db.SetMaxIdleConns(0) // every query below opens a new connection
	var tempStore, checkpoint int
	if err := s.db.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&tempStore); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&checkpoint); err != nil {
		t.Fatal(err)
	}
	if tempStore != 2 || checkpoint != sqliteWALCheckpointPages {
		t.Errorf("temp_store %d, wal_autocheckpoint %d; want 2 (MEMORY) and %d", tempStore, checkpoint, sqliteWALCheckpointPages)
	}
	rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+sqliteDialect.countsSQL(Ledger), "wf")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("counting builds a temporary b-tree: %s", p)
	}
}
