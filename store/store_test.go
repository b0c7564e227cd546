package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/durlab/durlab/fake"
)

// openers lists every backend the contract tests run against; postgres_test.go
// adds Postgres, which skips loudly without a server (and fails under CI).
var openers = map[string]func(t *testing.T) Store{
	"sqlite": func(t *testing.T) Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "users.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	},
}

func forEachBackend(t *testing.T, test func(t *testing.T, s Store)) {
	for name, open := range openers {
		t.Run(name, func(t *testing.T) { test(t, open(t)) })
	}
}

func TestStrictRejectsSameUserTwiceInOneExecution(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		tb := s.Table(Strict)
		at := time.Now()
		page := fake.Page(0, 10)
		if err := tb.InsertPage(ctx, page, "wf", at); err != nil {
			t.Fatal(err)
		}
		err := tb.InsertPage(ctx, page, "wf", at)
		if !errors.Is(err, ErrDuplicateUser) {
			t.Fatalf("second insert: got %v, want ErrDuplicateUser", err)
		}
		// The failed page left nothing behind: one transaction per page.
		mixed := append(fake.Page(1, 5), page[0])
		if err := tb.InsertPage(ctx, mixed, "wf", at); !errors.Is(err, ErrDuplicateUser) {
			t.Fatalf("mixed page: got %v", err)
		}
		c, err := tb.Counts(ctx, "wf")
		if err != nil {
			t.Fatal(err)
		}
		if c != (Counts{Rows: 10, UniqueUsers: 10, Latest: 10}) {
			t.Fatalf("counts = %+v, want 10 of each", c)
		}
		// A new execution (another analyzed_at) may write the same users again.
		if err := tb.InsertPage(ctx, page, "wf", at.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if c, _ := tb.Counts(ctx, "wf"); c.Rows != 20 || c.UniqueUsers != 10 {
			t.Fatalf("after a second execution: %+v", c)
		}
	})
}

func TestLedgerKeepsDuplicatesAndWindowCountsThemOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		tb := s.Table(Ledger)
		at := time.Now()
		for i := range 3 {
			if err := tb.InsertPage(ctx, fake.Page(0, 10), "wf", at); err != nil {
				t.Fatalf("insert %d: %v", i, err)
			}
			time.Sleep(2 * time.Millisecond) // created_at is part of the key, at millisecond precision
		}
		if err := tb.InsertPage(ctx, fake.Page(1, 10), "other", at); err != nil {
			t.Fatal(err)
		}
		c, err := tb.Counts(ctx, "wf")
		if err != nil {
			t.Fatal(err)
		}
		if c != (Counts{Rows: 30, UniqueUsers: 10, Latest: 10}) {
			t.Fatalf("counts = %+v, want rows 30, unique 10, latest 10", c)
		}
	})
}

func TestTablesAreSeparateAndEmptiedWorkflowByWorkflow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		strict, ledger := s.Table(Strict), s.Table(Ledger)
		for _, wf := range []string{"a", "b"} {
			if err := strict.InsertPage(ctx, fake.Page(0, 3), wf, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if err := ledger.InsertPage(ctx, fake.Page(0, 4), "a", time.Now()); err != nil {
			t.Fatal(err)
		}
		ids, err := strict.WorkflowIDs(ctx)
		if err != nil || len(ids) != 2 {
			t.Fatalf("strict workflow IDs = %v, %v", ids, err)
		}
		if n, err := strict.Delete(ctx, []string{"a"}); err != nil || n != 3 {
			t.Fatalf("Delete = %d, %v; want 3", n, err)
		}
		if c, _ := strict.Counts(ctx, "b"); c.Rows != 3 {
			t.Fatalf("deleting a removed b's rows: %+v", c)
		}
		if c, _ := ledger.Counts(ctx, "a"); c.Rows != 4 {
			t.Fatalf("deleting from the strict table touched the ledger: %+v", c)
		}
	})
}

func TestForeignTableIsRefusedAndUntouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// durlab's columns, the other variant's key: not a table durlab made.
	if _, err := db.Exec(`CREATE TABLE users (id TEXT, external_id TEXT, name TEXT, workflow_id TEXT,
		analyzed_at TEXT, created_at TEXT, PRIMARY KEY (id, workflow_id, analyzed_at, created_at));
		INSERT INTO users VALUES ('1', 'e', 'n', 'w', 'a', 'c')`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), path); !errors.Is(err, ErrForeignSchema) {
		t.Fatalf("Open: got %v, want ErrForeignSchema", err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM users`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("foreign table changed: %d rows, %v", n, err)
	}
}

func TestOpenRefusesForeignTableWithoutWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE users (email TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(context.Background(), path); !errors.Is(err, ErrForeignSchema) {
		t.Fatalf("Open: got %v, want ErrForeignSchema", err)
	}
	db, _ = sql.Open("sqlite3", path)
	defer db.Close()
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'durlab_events'`).Scan(&n)
	if n != 0 {
		t.Fatal("Open wrote durlab_events into a foreign database")
	}
}
