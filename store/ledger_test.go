package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/internal/pgtest"
)

// The ledger keeps what was appended, in order; an event appended in a
// write's transaction lives or dies with the write; the views assemble one
// record per execution and per attempt, with the rows the attempt wrote.
func TestLedgerAppendsAndAssembles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		at := time.Now().UTC().Truncate(time.Microsecond)
		ev := func(seq int64, kind EventKind, f func(e *Event)) Event {
			e := Event{Root: "root", Workflow: "root", Execution: "x1", Seq: seq, Kind: kind, At: at.Add(time.Duration(seq) * time.Millisecond), StepID: -1}
			if f != nil {
				f(&e)
			}
			return e
		}
		begin := ev(1, ExecutionBegan, func(e *Event) {
			e.Number, e.ExecutorID, e.PID, e.Host, e.Name = 1, "exec-a", 42, "h", "dedup.users_workflow"
		})
		attempt := ev(2, AttemptBegan, func(e *Event) { e.Attempt, e.StepID, e.StepName, e.AttemptNo = "a1", 3, "insert_batch_1", 1 })
		if err := s.AppendEvents(ctx, nil, []Event{begin, attempt}); err != nil {
			t.Fatal(err)
		}
		tb := s.Table(Ledger)
		write := func(seq int64, page int) func(tx Tx) error {
			return func(tx Tx) error {
				if err := tb.Insert(ctx, tx, fake.Page(page, 10), "root", at); err != nil {
					return err
				}
				return s.AppendEvents(ctx, tx, []Event{ev(seq, PageWritten, func(e *Event) { e.Attempt, e.Page, e.Rows = "a1", page, 10 })})
			}
		}
		if err := s.Update(ctx, write(3, 1)); err != nil {
			t.Fatal(err)
		}
		lost := errors.New("rolled back")
		if err := s.Update(ctx, func(tx Tx) error { write(4, 2)(tx); return lost }); !errors.Is(err, lost) {
			t.Fatalf("rollback: %v", err)
		}
		end := ev(5, AttemptEnded, func(e *Event) { e.Attempt, e.Outcome, e.Detail = "a1", "injected", "injected failure" })
		if err := s.AppendEvents(ctx, nil, []Event{end}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Events(ctx, "root")
		if err != nil {
			t.Fatal(err)
		}
		var kinds []EventKind
		for _, e := range got {
			kinds = append(kinds, e.Kind)
		}
		want := []EventKind{ExecutionBegan, AttemptBegan, PageWritten, AttemptEnded}
		if len(kinds) != len(want) {
			t.Fatalf("events %v, want %v", kinds, want)
		}
		for i := range want {
			if kinds[i] != want[i] {
				t.Fatalf("events %v, want %v", kinds, want)
			}
		}
		if got[0] != begin || !got[0].At.Equal(begin.At) {
			t.Errorf("read back %+v, want %+v", got[0], begin)
		}
		if other, _ := s.Events(ctx, "other"); len(other) != 0 {
			t.Errorf("another run's events: %v", other)
		}
		q := s.(*sqlStore).db
		var rows int
		var outcome string
		if err := q.QueryRowContext(ctx, `SELECT rows_written, outcome FROM durlab_attempts WHERE attempt_id = 'a1'`).Scan(&rows, &outcome); err != nil {
			t.Fatal(err)
		}
		if rows != 10 || outcome != "injected" {
			t.Errorf("durlab_attempts: %d rows, outcome %q; want 10, injected", rows, outcome)
		}
		var ended any
		if err := q.QueryRowContext(ctx, `SELECT ended_us FROM durlab_executions WHERE execution_id = 'x1'`).Scan(&ended); err != nil || ended != nil {
			t.Errorf("durlab_executions: ended %v, %v; want NULL for an execution still running", ended, err)
		}
	})
}

// More events than one statement takes are appended atomically.
func TestLedgerAppendsManyEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		var events []Event
		for i := range 3*eventsChunk + 7 {
			events = append(events, Event{Root: "r", Execution: "x", Seq: int64(i), Kind: StepReplayed, At: time.Now(), StepID: i})
		}
		if err := s.AppendEvents(ctx, nil, events); err != nil {
			t.Fatal(err)
		}
		got, err := s.Events(ctx, "r")
		if err != nil || len(got) != len(events) {
			t.Fatalf("%d events, %v; want %d", len(got), err, len(events))
		}
	})
}

// A ledger an earlier durlab wrote, keyed by (root_id, execution_id, seq),
// gets today's key when the store opens, its events kept, its views
// working, and it reads one workflow at a time.
func TestOldLedgerGetsTheNewKey(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, driver string
		d            dialect
		url          func(t *testing.T) string
	}{
		{"sqlite", "sqlite3", sqliteDialect, func(t *testing.T) string { return filepath.Join(t.TempDir(), "users.db") }},
		{"postgres", "pgx", postgresDialect, func(t *testing.T) string { return pgtest.Database(t) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			url := c.url(t)
			old, err := sql.Open(c.driver, url)
			if err != nil {
				t.Fatal(err)
			}
			ddl := strings.Replace(c.d.createEventsTable("durlab_events"), "PRIMARY KEY ("+eventsKey+")", "PRIMARY KEY (root_id, execution_id, seq)", 1)
			if _, err := old.Exec(ddl); err != nil {
				t.Fatal(err)
			}
			at := time.Now().UTC().Truncate(time.Microsecond)
			for i, wf := range []string{"root", "child", "root"} {
				if _, err := old.Exec(`INSERT INTO durlab_events (root_id, workflow_id, execution_id, seq, kind, at_us) VALUES (`+
					c.d.placeholder(1)+`, `+c.d.placeholder(2)+`, `+c.d.placeholder(3)+`, `+c.d.placeholder(4)+`, 'exec-begin', `+c.d.placeholder(5)+`)`,
					"root", wf, wf+"-x", i, at.Add(time.Duration(i)*time.Millisecond).UnixMicro()); err != nil {
					t.Fatal(err)
				}
			}
			old.Close()
			s, err := Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var groups [][]string
			if err := s.EachWorkflow(ctx, "root", "", func(events []Event) error {
				var g []string
				for _, e := range events {
					g = append(g, e.Workflow)
				}
				groups = append(groups, g)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(groups) != "[[child] [root root]]" {
				t.Errorf("workflows read one at a time: %v, want [[child] [root root]]", groups)
			}
			db := s.(*sqlStore).db
			var executions int
			if err := db.QueryRow(`SELECT count(*) FROM durlab_executions`).Scan(&executions); err != nil || executions != 3 {
				t.Errorf("durlab_executions: %d rows (%v), want 3", executions, err)
			}
			rows, err := db.Query(c.d.columnsSQL, "durlab_events")
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var key []string
			for rows.Next() {
				var name string
				var inKey bool
				rows.Scan(&name, &inKey)
				if inKey {
					key = append(key, name)
				}
			}
			if !slices.Contains(key, "workflow_id") || len(key) != 4 {
				t.Errorf("the key is %v, want %s", key, eventsKey)
			}
		})
	}
}
