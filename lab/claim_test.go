package lab

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durlab/durlab/internal/pgtest"
)

// claimContract is what both kinds of claim promise: one holder per
// executor ID at a time, freed by release; a queue is served while a
// holder serves it.
func claimContract(t *testing.T, systemDB string) {
	ctx := context.Background()
	first, err := claimExecutor(ctx, systemDB, "w1", nil)
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	_, err = claimExecutor(ctx, systemDB, "w1", nil)
	if !errors.Is(err, ErrExecutorInUse) {
		t.Fatalf("second claim of w1: %v, want ErrExecutorInUse", err)
	}
	if want := "executor ID w1 is in use by another live durlab process; give this one another --executor-id (workers) or wait for it to finish"; err.Error() != want {
		t.Errorf("message %q", err.Error())
	}
	other, err := claimExecutor(ctx, systemDB, "w2", nil)
	if err != nil {
		t.Fatalf("claim of another ID: %v", err)
	}
	if served, err := other.served(ctx, "batches"); err != nil || served {
		t.Errorf("served before any worker: %v, %v", served, err)
	}
	if err := first.serve("batches"); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if err := other.serve("batches"); err != nil {
		t.Fatalf("a second worker serves the same queue: %v", err)
	}
	third, err := claimExecutor(ctx, systemDB, "w3", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer third.release()
	for range 2 { // a check must not disturb the next
		if served, err := third.served(ctx, "batches"); err != nil || !served {
			t.Errorf("served with two workers: %v, %v", served, err)
		}
	}
	if served, _ := third.served(ctx, "other"); served {
		t.Errorf("another queue is served")
	}
	if err := first.release(); err != nil {
		t.Fatal(err)
	}
	if served, _ := third.served(ctx, "batches"); !served {
		t.Errorf("not served with one worker left")
	}
	if err := other.release(); err != nil {
		t.Fatal(err)
	}
	if served, _ := third.served(ctx, "batches"); served {
		t.Errorf("served after every worker released")
	}
	again, err := claimExecutor(ctx, systemDB, "w1", nil)
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	again.release()
}

func TestClaimSQLite(t *testing.T) {
	db := filepath.Join(t.TempDir(), "dbos.sqlite")
	claimContract(t, "sqlite:"+db)
	st, err := os.Stat(db + ".w1.lock")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("lock file mode %v, want 0600", st.Mode().Perm())
	}
}

func TestClaimPostgres(t *testing.T) {
	claimContract(t, pgtest.Database(t))
}

func TestClaimInMemory(t *testing.T) {
	for range 2 {
		c, err := claimExecutor(context.Background(), "sqlite::memory:", "w1", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.release()
	}
}

func TestLockName(t *testing.T) {
	if got := lockName("durlab-worker-host1-batches"); got != "durlab-worker-host1-batches" {
		t.Errorf("a safe name changed: %q", got)
	}
	a, b := lockName("a/b"), lockName("a_b")
	if a == b || strings.ContainsAny(a, "/\\") {
		t.Errorf("lockName: %q and %q", a, b)
	}
	if got := lockName(strings.Repeat("x", 300)); len(got) > 100 {
		t.Errorf("a long name stays long: %d bytes", len(got))
	}
}

// TestOpenRefusesALiveExecutorID: a second Runtime with the same executor ID
// fails before running anything, and the ID is free again after Close.
func TestOpenRefusesALiveExecutorID(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{SystemDB: "sqlite:" + filepath.Join(dir, "dbos.sqlite"), Store: filepath.Join(dir, "users.db"), ExecutorID: "durlab-test",
		Logger: slog.New(slog.DiscardHandler), Experiments: testExperiments}
	ctx := context.Background()
	first, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, cfg); !errors.Is(err, ErrExecutorInUse) {
		t.Fatalf("second Open: %v, want ErrExecutorInUse", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}

// TestClaimPostgresSurvivesALostSession: a server restart ends the claim's
// session and with it the lock; the claim's watcher takes it again.
func TestClaimPostgresSurvivesALostSession(t *testing.T) {
	url := pgtest.Database(t)
	ctx := context.Background()
	c, err := claimExecutor(ctx, url, "w1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	const app = "durlab executor w1"
	// lockHolder is the backend holding the claim's advisory lock in this
	// test's database (pg_locks shows every database's), 0 if none.
	lockHolder := func() int {
		var pid int
		admin.QueryRow(ctx, `SELECT COALESCE(MAX(l.pid), 0) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = $1
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`, app).Scan(&pid)
		return pid
	}
	old := lockHolder()
	if old == 0 {
		t.Fatal("the claim holds no advisory lock")
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, old); err != nil {
		t.Fatal(err)
	}
	// Wait for the lock to be held again, by a new session: the watcher
	// reconnects, then locks.
	deadline := time.Now().Add(3 * pgClaimCheck)
	for {
		if pid := lockHolder(); pid != 0 && pid != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim did not take its lock again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := claimExecutor(ctx, url, "w1", nil); !errors.Is(err, ErrExecutorInUse) {
		t.Fatalf("claim after the reconnect: %v, want ErrExecutorInUse", err)
	}
}

// ExecutorAlive reads a claim without taking it: held while its process
// holds it, free after.
func TestExecutorAlive(t *testing.T) {
	for name, systemDB := range map[string]string{
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "dbos.sqlite"),
		"postgres": pgtest.Database(t),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			l := NewLiveness(ctx, systemDB)
			defer l.Close()
			if alive, known := l.ExecutorAlive("w1"); alive || !known {
				t.Fatalf("before any claim: alive %v, known %v", alive, known)
			}
			c, err := claimExecutor(ctx, systemDB, "w1", nil)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // reading must not disturb the claim
				if alive, known := l.ExecutorAlive("w1"); !alive || !known {
					t.Fatalf("claimed: alive %v, known %v", alive, known)
				}
			}
			if alive, _ := l.ExecutorAlive("w2"); alive {
				t.Error("another executor ID reads as alive")
			}
			c.release()
			if alive, _ := l.ExecutorAlive("w1"); alive {
				t.Error("alive after the release")
			}
		})
	}
}
