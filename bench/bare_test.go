package bench

// The bare DBOS program: the profile workload (W5) hand-written on plain
// DBOS, as a user of DBOS would write it, with none of durlab: not its
// runtime (package lab), its workflows, nor its store. A main workflow runs
// the batch child workflows one after the other, awaiting each; a batch
// runs one generate step per page (fake.Page, pages numbered from 1 across
// batches) and inserts each page from the workflow body, in one
// transaction; the main workflow ends with a count step. Its users table
// has the strict variant's columns and key, written with database/sql: on
// SQLite in WAL mode with synchronous=NORMAL, the settings SQLite's own
// documentation gives for WAL, and none of durlab's tuning (statement
// journals in memory, a rarer WAL checkpoint). Same DBOS configuration
// (application name and pinned version, 20 ms handle polling, the SQLite
// system database by the same driver), the same step names and as many
// checkpoints (bare_check_test.go counts them). So what differs from
// BenchmarkProfileDurable is all of durlab: its store, its attempt ledger,
// and the reads behind its report. Both delete one run's rows per run
// (durlab at the start of the next one).

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	_ "github.com/dbos-inc/dbos-transact-golang/dbos/driver/sqlite" // SQLite system database
	_ "github.com/jackc/pgx/v5/stdlib"                              // Postgres through database/sql
	_ "github.com/mattn/go-sqlite3"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

// bareStore is the bare program's users table.
type bareStore struct {
	db       *sql.DB
	postgres bool
}

func openBareStore(ctx context.Context, dsn string) (*bareStore, error) {
	s := &bareStore{postgres: dburl.IsPostgres(dsn)}
	var err error
	timeType := "TIMESTAMPTZ"
	createdAt := "clock_timestamp()"
	if s.postgres {
		s.db, err = sql.Open("pgx", dsn)
	} else {
		q := url.Values{"_journal_mode": {"WAL"}, "_synchronous": {"NORMAL"}, "_busy_timeout": {"5000"}}
		s.db, err = sql.Open("sqlite3", "file:"+dsn+"?"+q.Encode())
		timeType, createdAt = "TEXT", "(strftime('%Y-%m-%d %H:%M:%f', 'now'))"
	}
	if err != nil {
		return nil, err
	}
	_, err = s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS users (id TEXT NOT NULL, external_id TEXT NOT NULL,
		name TEXT NOT NULL, workflow_id TEXT NOT NULL, analyzed_at `+timeType+` NOT NULL,
		created_at `+timeType+` NOT NULL DEFAULT `+createdAt+`, PRIMARY KEY (id, workflow_id, analyzed_at))`)
	if err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

func (s *bareStore) arg(n int) string {
	if s.postgres {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// insertPage writes one page in one transaction, one multi-row INSERT.
func (s *bareStore) insertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error {
	var sb strings.Builder
	sb.WriteString("INSERT INTO users (id, external_id, name, workflow_id, analyzed_at) VALUES ")
	var args []any
	var at any = analyzedAt
	if !s.postgres {
		at = analyzedAt.Format(time.RFC3339Nano)
	}
	for i, u := range users {
		if i > 0 {
			sb.WriteByte(',')
		}
		n := len(args)
		fmt.Fprintf(&sb, "(%s,%s,%s,%s,%s)", s.arg(n+1), s.arg(n+2), s.arg(n+3), s.arg(n+4), s.arg(n+5))
		args = append(args, u.ID, u.ExternalID, u.Name, workflowID, at)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
		return err
	}
	return tx.Commit()
}

// counts counts what workflowID wrote, with the window-function count.
func (s *bareStore) counts(ctx context.Context, workflowID string) (store.Counts, error) {
	var c store.Counts
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT id) FROM users WHERE workflow_id = `+s.arg(1), workflowID).
		Scan(&c.Rows, &c.UniqueUsers)
	if err != nil {
		return c, err
	}
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY id, workflow_id
		ORDER BY created_at DESC) AS rn FROM users WHERE workflow_id = `+s.arg(1)+`) ranked WHERE rn = 1`, workflowID).Scan(&c.Latest)
	return c, err
}

func (s *bareStore) delete(ctx context.Context, workflowID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE workflow_id = `+s.arg(1), workflowID)
	return err
}

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

func bareUsers(ctx context.Context) *bareStore {
	return ctx.Value(bareStoreKey{}).(*bareStore)
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
		return users.counts(ctx, root)
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
		if err := users.insertPage(ctx, got, in.Root, analyzedAt); err != nil {
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
	store *bareStore
}

func openBare(ctx context.Context, systemDB, storeDSN string) (*bareApp, error) {
	st, err := openBareStore(ctx, storeDSN)
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
		st.db.Close()
		return nil, err
	}
	dbos.RegisterWorkflow(dc, bareUsersWorkflow)
	dbos.RegisterWorkflow(dc, bareBatchWorkflow)
	if err := dbos.Launch(dc); err != nil {
		dbos.Shutdown(dc, time.Second)
		st.db.Close()
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
	return a.store.db.Close()
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
					b.ReportAllocs()
					for b.Loop() {
						id, c, err := app.run(in)
						if err != nil || c.Rows != in.users() || c.UniqueUsers != in.users() {
							b.Fatalf("run: %v (%+v)", err, c)
						}
						// Emptied as the durable run's next run empties its
						// rows, so every run starts on an empty table.
						if err := app.store.delete(ctx, id); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(in.users())*float64(b.N)/b.Elapsed().Seconds(), "users/s")
				})
			}
		})
	}
}
