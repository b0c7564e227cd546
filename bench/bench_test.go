// Package bench measures the price of durability on the profile
// experiment's workload (W5: a main workflow runs batch child workflows one
// after the other, each with one generate step per page and an insert of
// each page from its body, then a count step), three ways:
//
//   - BenchmarkProfileDurable: durlab's runtime (lab.Open, rt.Run) running
//     workflows.Profile on DBOS;
//   - BenchmarkBareDBOS: the same workload hand-written on plain DBOS, with
//     its own users table and the same DBOS configuration, none of durlab
//     (bare_test.go, checked by TestBareDBOS);
//   - BenchmarkProfilePlain: the identical work with no DBOS at all
//     (workflows.PlainWork), on SQLite.
//
// The first two run on two backends, under parallel names
// BenchmarkX/BACKEND/users=N: sqlite (embedded SQLite system database and
// store) and postgres (each in a fresh database of package internal/pgtest's
// server, dropped at the end; skipped when there is no server, failed under
// CI=true).
//
//	go test -bench . -benchtime 20x ./bench/
//	go test -run xxx -bench 'ProfileDurable|BareDBOS' -benchtime 20x -count 6 ./bench/ | tee /tmp/bare.txt
//	benchstat -col .name /tmp/bare.txt   # go run golang.org/x/perf/cmd/benchstat@latest
//
// Durable over plain (sqlite) is the durable/plain ratio that `durlab
// profile --compare` reports: the price of durability. Durable over bare,
// per backend, is what durlab costs on top of DBOS: its store (tuned), its
// attempt ledger (an execution's begin, and a few events in each page's
// transaction) and the reads behind its report. bench/run.sh measures the built binary, peak
// RSS included, at 1,000 and 1,000,000 users.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/durlab/durlab/internal/pgtest"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
	"github.com/durlab/durlab/workflows"
)

// sizes are the benchmarked shapes: batches x pages x page size.
var sizes = []lab.Input{{Batches: 10, Pages: 10, PageSize: 10}}

func name(in lab.Input) string { return fmt.Sprintf("users=%d", in.Users()) }

// backend is where a DBOS benchmark keeps its system database and store.
type backend struct {
	name string
	open func(tb testing.TB) (systemDB, store string)
}

var backends = []backend{
	{"sqlite", sqliteBackend},
	{"postgres", postgresBackend},
}

// sqliteBackend puts both databases in a fresh folder.
func sqliteBackend(tb testing.TB) (systemDB, store string) {
	tb.Helper()
	dir := tb.TempDir()
	return "sqlite:" + filepath.Join(dir, "dbos.sqlite"), filepath.Join(dir, "users.db")
}

// postgresBackend gives each a fresh database, dropped at the end; it
// skips when there is no server (fails under CI=true).
func postgresBackend(tb testing.TB) (systemDB, store string) {
	tb.Helper()
	return pgtest.Database(tb), pgtest.Database(tb)
}

func BenchmarkProfileDurable(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for _, in := range sizes {
				b.Run(name(in), func(b *testing.B) {
					ctx := context.Background()
					systemDB, storeDSN := be.open(b)
					rt, err := lab.Open(ctx, lab.Config{
						SystemDB:    systemDB,
						Store:       storeDSN,
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
