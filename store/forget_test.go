package store

import (
	"context"
	"testing"
	"time"

	"github.com/durlab/durlab/fake"
)

// Holdings counts every run's rows (both tables) and events; Forget deletes
// those of the runs named, in both tables and the ledger, and nothing else.
func TestForgetDeletesOnlyTheRunsNamed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		at := time.Now()
		for _, w := range []struct {
			id string
			v  Variant
			n  int
		}{{"gone", Strict, 4}, {"gone", Ledger, 3}, {"kept", Ledger, 5}} {
			ev := Event{Root: w.id, Workflow: w.id, Execution: w.id + "-x", Seq: int64(w.n), Kind: PageWritten, At: at, Rows: w.n, StepID: -1}
			if err := s.WritePage(ctx, nil, w.v, fake.Page(w.n, w.n), w.id, at, []Event{ev}); err != nil {
				t.Fatal(err)
			}
		}
		held, err := s.Holdings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if held["gone"] != (Records{Rows: 7, Events: 2}) || held["kept"] != (Records{Rows: 5, Events: 1}) {
			t.Fatalf("holdings %+v", held)
		}
		gone, err := s.Forget(ctx, []string{"gone"}, []string{"gone-0"})
		if err != nil {
			t.Fatal(err)
		}
		if gone != (Records{Rows: 7, Events: 2}) {
			t.Fatalf("Forget deleted %+v, want 7 rows and 2 events", gone)
		}
		held, err = s.Holdings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(held) != 1 || held["kept"] != (Records{Rows: 5, Events: 1}) {
			t.Fatalf("after Forget: %+v", held)
		}
		if err := s.Compact(ctx); err != nil {
			t.Fatalf("Compact: %v", err)
		}
	})
}

// ex6's retries back off to waits well under a millisecond: a retry's rows
// must not collide with the attempt's before it on the ledger key, whose
// created_at SQLite's own clock gives in milliseconds only.
func TestLedgerTakesTheSamePageTwiceWithinAMillisecond(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		at := time.Now()
		page := fake.Page(1, 10)
		for range 5 {
			if err := s.Table(Ledger).InsertPage(ctx, page, "wf", at); err != nil {
				t.Fatal(err)
			}
		}
		c, err := s.Table(Ledger).Counts(ctx, "wf")
		if err != nil {
			t.Fatal(err)
		}
		if c != (Counts{Rows: 50, UniqueUsers: 10, Latest: 10}) {
			t.Fatalf("counts %+v, want 50 rows of 10 users", c)
		}
	})
}
