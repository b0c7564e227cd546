// Package bench measures the price of durability: the profile experiment's
// workload (a main workflow, batch child workflows, one generate step per
// page) run durably on DBOS with embedded SQLite, and the identical work
// with no DBOS at all (workflows.PlainWork).
//
//	go test -bench . -benchtime 20x ./bench/
//
// Compare the two ns/op figures: their quotient is the durable/plain ratio
// that `durlab profile --compare` reports. bench/run.sh measures the built
// binary, peak RSS included, at 1,000 and 1,000,000 users.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
	"github.com/durlab/durlab/workflows"
)

// sizes are the benchmarked shapes: batches x pages x page size.
var sizes = []lab.Input{{Batches: 10, Pages: 10, PageSize: 10}}

func name(in lab.Input) string { return fmt.Sprintf("users=%d", in.Users()) }

func BenchmarkProfileDurable(b *testing.B) {
	for _, in := range sizes {
		b.Run(name(in), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			rt, err := lab.Open(ctx, lab.Config{
				SystemDB:    "sqlite:" + filepath.Join(dir, "dbos.sqlite"),
				Store:       filepath.Join(dir, "users.db"),
				ExecutorID:  "durlab-bench",
				Logger:      slog.New(slog.DiscardHandler),
				Experiments: workflows.Experiments(),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Close()
			p := lab.Params{Input: in}
			b.ReportAllocs()
			for b.Loop() {
				rep, err := rt.Run(ctx, workflows.Profile, p)
				if err != nil || !rep.AsExpected {
					b.Fatalf("run: %v (%+v)", err, rep)
				}
			}
			b.ReportMetric(float64(in.Users())*float64(b.N)/b.Elapsed().Seconds(), "users/s")
		})
	}
}

func BenchmarkProfilePlain(b *testing.B) {
	for _, in := range sizes {
		b.Run(name(in), func(b *testing.B) {
			ctx := context.Background()
			st, err := store.Open(ctx, filepath.Join(b.TempDir(), "users.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			var t lab.Timings
			tb := st.Table(store.Strict)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				runID := fmt.Sprintf("plain-%d", i)
				got, err := workflows.PlainWork(ctx, tb, in, runID, &t, nil)
				if err != nil || got.Latest != in.Users() {
					b.Fatalf("run: %d users, %v", got.Latest, err)
				}
				// Emptied as the durable run's next run empties its rows.
				if _, err := tb.Delete(ctx, []string{runID}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(in.Users())*float64(b.N)/b.Elapsed().Seconds(), "users/s")
		})
	}
}
