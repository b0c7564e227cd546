package bench

// The bare DBOS program: the profile workload (W5) written as a user of DBOS
// would write it, with none of durlab's runtime (package lab) and none of
// its workflows (package workflows). A main workflow runs the batch child
// workflows one after the other, awaiting each; a batch runs one generate
// step per page (fake.Page, pages numbered from 1 across batches) and
// inserts each page from the workflow body with store.Table.InsertPage; the
// main workflow ends with a count step. Same store, same table, same DBOS
// configuration (application name and pinned version, 20 ms handle polling,
// the SQLite system database by the same driver), the same step names and as
// many checkpoints (bare_check_test.go counts them), so that what durlab
// adds is the only difference from BenchmarkProfileDurable: per run, the
// reads that empty the previous run's rows and look for a pending workflow,
// one durlab_stats write per batch, the status and stats reads of the
// report, and a generate step output that also records the page and attempt.
// Both delete one run's rows per run (durlab at the start of the next one).

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	_ "github.com/dbos-inc/dbos-transact-golang/dbos/driver/sqlite" // SQLite system database

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

const (
	bareAppName    = "durlab-bare"
	bareAppVersion = "bare-1" // pinned, as durlab pins its own
	// barePollInterval is durlab's handle polling interval (DBOS's default
	// is 1 s). A handle from RunWorkflow in this process waits on a channel
	// and never polls; the option is passed so that both programs ask DBOS
	// the same thing.
	barePollInterval = 20 * time.Millisecond
)

// bareInput is the main workflow's input.
type bareInput struct {
	Batches  int `json:"batches"`
	Pages    int `json:"pages"`
	PageSize int `json:"page_size"`
}

func (in bareInput) users() int64 { return int64(in.Batches) * int64(in.Pages) * int64(in.PageSize) }

// bareBatchInput is a batch workflow's input.
type bareBatchInput struct {
	Root     string `json:"root"` // the main workflow's ID: every row carries it
	Batch    int    `json:"batch"`
	Pages    int    `json:"pages"`
	PageSize int    `json:"page_size"`
}

// bareStoreKey finds the store in a workflow's context: the parent of the
// DBOS context carries it.
type bareStoreKey struct{}

func bareUsers(ctx context.Context) store.Table {
	return ctx.Value(bareStoreKey{}).(store.Store).Table(store.Strict)
}

func bareUsersWorkflow(ctx dbos.Context, in bareInput) (store.Counts, error) {
	root, err := dbos.GetWorkflowID(ctx)
	if err != nil {
		return store.Counts{}, err
	}
	for b := 1; b <= in.Batches; b++ {
		h, err := dbos.RunWorkflow(ctx, bareBatchWorkflow,
			bareBatchInput{Root: root, Batch: b, Pages: in.Pages, PageSize: in.PageSize})
		if err != nil {
			return store.Counts{}, err
		}
		if _, err := h.GetResult(dbos.WithHandlePollingInterval(barePollInterval)); err != nil {
			return store.Counts{}, fmt.Errorf("batch %d: %w", b, err)
		}
	}
	users := bareUsers(ctx)
	return dbos.RunAsStep(ctx, func(ctx context.Context) (store.Counts, error) {
		return users.Counts(ctx, root)
	}, dbos.WithStepName("count_users"))
}

func bareBatchWorkflow(ctx dbos.Context, in bareBatchInput) (int64, error) {
	users := bareUsers(ctx)
	analyzedAt := time.Now().UTC()
	var rows int64
	for p := 1; p <= in.Pages; p++ {
		page := p + (in.Batch-1)*in.Pages
		got, err := dbos.RunAsStep(ctx, func(context.Context) ([]fake.User, error) {
			return fake.Page(page, in.PageSize), nil
		}, dbos.WithStepName(fmt.Sprintf("generate_page_%d", page)))
		if err != nil {
			return 0, err
		}
		if err := users.InsertPage(ctx, got, in.Root, analyzedAt); err != nil {
			return 0, err
		}
		rows += int64(len(got))
	}
	return rows, nil
}

// bareApp is a launched DBOS with the bare workflows registered and the
// store open.
type bareApp struct {
	dbos  dbos.Context
	store store.Store
}

func openBare(ctx context.Context, systemDB, storeDSN string) (*bareApp, error) {
	st, err := store.Open(ctx, storeDSN)
	if err != nil {
		return nil, err
	}
	dc, err := dbos.NewContext(context.WithValue(context.Background(), bareStoreKey{}, st), dbos.Config{
		AppName:            bareAppName,
		DatabaseURL:        systemDB,
		ApplicationVersion: bareAppVersion,
		ExecutorID:         "bare-bench",
		Logger:             slog.New(slog.DiscardHandler),
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	dbos.RegisterWorkflow(dc, bareUsersWorkflow)
	dbos.RegisterWorkflow(dc, bareBatchWorkflow)
	if err := dbos.Launch(dc); err != nil {
		dbos.Shutdown(dc, time.Second)
		st.Close()
		return nil, err
	}
	return &bareApp{dbos: dc, store: st}, nil
}

// run runs the main workflow to its end and returns its ID and its counts.
func (a *bareApp) run(in bareInput) (string, store.Counts, error) {
	h, err := dbos.RunWorkflow(a.dbos, bareUsersWorkflow, in)
	if err != nil {
		return "", store.Counts{}, err
	}
	c, err := h.GetResult(dbos.WithHandlePollingInterval(barePollInterval))
	return h.GetWorkflowID(), c, err
}

func (a *bareApp) close() error {
	dbos.Shutdown(a.dbos, 10*time.Second)
	return a.store.Close()
}

func BenchmarkBareDBOS(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for _, size := range sizes {
				b.Run(name(size), func(b *testing.B) {
					ctx := context.Background()
					systemDB, storeDSN := be.open(b)
					app, err := openBare(ctx, systemDB, storeDSN)
					if err != nil {
						b.Fatal(err)
					}
					defer app.close()
					in := bareInput{Batches: size.Batches, Pages: size.Pages, PageSize: size.PageSize}
					tb := app.store.Table(store.Strict)
					b.ReportAllocs()
					for b.Loop() {
						id, c, err := app.run(in)
						if err != nil || c.Rows != in.users() || c.UniqueUsers != in.users() {
							b.Fatalf("run: %v (%+v)", err, c)
						}
						// Emptied as the durable run's next run empties its
						// rows, so every run starts on an empty table.
						if _, err := tb.Delete(ctx, []string{id}); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(in.users())*float64(b.N)/b.Elapsed().Seconds(), "users/s")
				})
			}
		})
	}
}
