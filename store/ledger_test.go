package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/durlab/durlab/fake"
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
