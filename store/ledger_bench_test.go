package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/durlab/durlab/fake"
)

func benchPage(b *testing.B, events int) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "users.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	tb := s.Table(Strict)
	page := fake.Page(1, 10)
	i := int64(0)
	for b.Loop() {
		i++
		at := time.Now()
		err := s.Update(ctx, func(tx Tx) error {
			if err := tb.Insert(ctx, tx, page, "wf", at); err != nil {
				return err
			}
			var evs []Event
			for j := range events {
				evs = append(evs, Event{Root: "wf", Workflow: "wf", Execution: "x", Seq: i*10 + int64(j), Kind: PageWritten, At: at, Attempt: "a", StepName: "insert_page_1"})
			}
			return s.AppendEvents(ctx, tx, evs)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPageWith0Events(b *testing.B) { benchPage(b, 0) }
func BenchmarkPageWith2Events(b *testing.B) { benchPage(b, 2) }
func BenchmarkPageWith5Events(b *testing.B) { benchPage(b, 5) }

func BenchmarkSyncOneEvent(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "users.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	i := int64(0)
	for b.Loop() {
		i++
		if err := s.AppendEvents(context.Background(), nil, []Event{{Root: "wf", Execution: "x", Seq: i, Kind: ExecutionBegan, At: time.Now()}}); err != nil {
			b.Fatal(err)
		}
	}
}
