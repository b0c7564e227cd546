package lab

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"

	"github.com/durlab/durlab/internal/pgtest"
	"github.com/durlab/durlab/store"
)

// terminateClaim ends, from outside, the server session that holds
// executor id's claim, as a network partition or a server restart does.
func terminateClaim(t *testing.T, url, id string) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	s, err := store.OpenLockSession(ctx, url, "", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	pid, err := s.Holder(ctx, store.LockKey("executor", id))
	if err != nil || pid == 0 {
		t.Fatalf("no holder of %s's claim: %v", id, err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)); err != nil {
		t.Fatal(err)
	}
}

func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A claim whose session ended closes its gate until it holds the claim
// again, then asks regain before writes resume.
func TestClaimLossClosesTheGateUntilRegained(t *testing.T) {
	url := pgtest.Database(t)
	c, err := claimExecutor(context.Background(), url, "w1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	pc := c.(*pgClaim)
	regained := make(chan time.Time, 1)
	c.onLoss(lossPolicy{
		regain: func(lastHeld time.Time) error {
			// Called by the watcher, which holds the claim's lock.
			if isOpen(pc.heldCh) {
				t.Error("writes go through before the claim is regained")
			}
			regained <- lastHeld
			return nil
		},
		taken: func(err error) { t.Errorf("taken: %v", err) },
	})
	if !isOpen(c.held()) {
		t.Fatal("a fresh claim's gate is closed")
	}
	terminateClaim(t, url, "w1")
	select {
	case lastHeld := <-regained:
		if time.Since(lastHeld) > 3*pgClaimCheck {
			t.Errorf("last held %s ago", time.Since(lastHeld))
		}
	case <-time.After(3 * (pgClaimCheck + pgPingTimeout)):
		t.Fatal("the claim was not taken again")
	}
	select {
	case <-c.held():
	case <-time.After(time.Second):
		t.Fatal("the gate stayed closed after regain")
	}
}

// A claim lost and then taken by another process (an adopter) is given
// up: the policy's taken gets an error matching errFenced, and the gate
// stays closed.
func TestClaimTakenAfterLossFences(t *testing.T) {
	url := pgtest.Database(t)
	ctx := context.Background()
	c, err := claimExecutor(ctx, url, "w1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	taken := make(chan error, 1)
	c.onLoss(lossPolicy{
		regain: func(time.Time) error { t.Error("regained a claim another process holds"); return nil },
		taken:  func(err error) { taken <- err },
	})
	terminateClaim(t, url, "w1")
	// The adopter gets in first: the watcher checks only every second.
	var adopter claim
	for deadline := time.Now().Add(5 * time.Second); adopter == nil; {
		adopter, err = claimAdoption(ctx, url, "w1", nil)
		if err != nil && time.Now().After(deadline) {
			t.Fatalf("the adopter never got the claim: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer adopter.release()
	select {
	case err := <-taken:
		if !errors.Is(err, errFenced) {
			t.Errorf("taken with %v, want errFenced", err)
		}
	case <-time.After(3 * (pgClaimCheck + pgPingTimeout)):
		t.Fatal("the lost claim did not find itself taken")
	}
	if isOpen(c.held()) {
		t.Error("a claim taken over lets writes through")
	}
	if c.verify(ctx) == nil {
		t.Error("verify passes on a claim given up")
	}
}

// claimAdoption is exclusive, and tells a live executor from one being
// adopted; claimOrWait waits for an adopter, and only for one.
func TestAdoptionClaims(t *testing.T) {
	for name, systemDB := range map[string]string{
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "dbos.sqlite"),
		"postgres": pgtest.Database(t),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			live, err := claimExecutor(ctx, systemDB, "w1", nil)
			if err != nil {
				t.Fatal(err)
			}
			var alive executorAliveError
			if _, err := claimAdoption(ctx, systemDB, "w1", nil); !errors.As(err, &alive) || !errors.Is(err, ErrExecutorInUse) {
				t.Fatalf("adopting a live executor: %v", err)
			}
			if _, _, err := claimOrWait(ctx, systemDB, "w1", nil); !errors.Is(err, ErrExecutorInUse) {
				t.Fatalf("a twin of a live executor: %v, want ErrExecutorInUse at once", err)
			}
			live.release()

			a, err := claimAdoption(ctx, systemDB, "w1", nil)
			if err != nil {
				t.Fatalf("adopting a dead executor: %v", err)
			}
			var adopting adoptingError
			if _, err := claimAdoption(ctx, systemDB, "w1", nil); !errors.As(err, &adopting) {
				t.Fatalf("a second adopter: %v, want adoptingError", err)
			}
			l := NewLiveness(ctx, systemDB)
			defer l.Close()
			if adopting, known := l.Adopting("w1"); !adopting || !known {
				t.Errorf("Adopting: %v, %v", adopting, known)
			}
			if alive, _ := l.ExecutorAlive("w1"); !alive {
				t.Error("an adopted executor's claim reads as free")
			}
			// The executor comes back: it waits until the adopter lets go.
			go func() {
				time.Sleep(3 * claimWait)
				a.release()
			}()
			start := time.Now()
			back, waited, err := claimOrWait(ctx, systemDB, "w1", nil)
			if err != nil || !waited {
				t.Fatalf("claimOrWait: waited %v, %v", waited, err)
			}
			if time.Since(start) < 2*claimWait {
				t.Errorf("claimed after %s, while the adopter held it", time.Since(start))
			}
			back.release()
			if adopting, _ := l.Adopting("w1"); adopting {
				t.Error("the marker outlived its adopter")
			}
		})
	}
}

// fakeClaim is a claim whose gate the test opens and closes.
type fakeClaim struct {
	noClaim
	ch chan struct{}
}

func (f fakeClaim) held() <-chan struct{} { return f.ch }

// The fenced store lets writes through while the claim is held, holds them
// while it is lost, tells whose writes wait, and lets them go, failed,
// when the runtime stops.
func TestFencedStoreWaitsForTheClaim(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gate := make(chan struct{})
	stop := make(chan struct{})
	fs := newFencedStore(st, fakeClaim{ch: gate}, stop, testEnvironment(t))
	ctx := context.Background()
	begin := store.Event{Root: "r", Workflow: "b1", Execution: "x1", Kind: store.ExecutionBegan, Number: 2, StepID: -1, Seq: 1, At: time.Now()}
	done := make(chan error, 1)
	go func() { done <- fs.AppendEvents(ctx, nil, []store.Event{begin}) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(fs.waiting.workflows()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the write did not wait at the gate")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := fs.waiting.workflows(); got["b1"] != 2 || len(got) != 1 {
		t.Errorf("waiting: %v, want b1 at execution 2", got)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("the write after the gate opened: %v", err)
	}
	if len(fs.waiting.workflows()) != 0 {
		t.Error("a written write still waits")
	}

	closed := newFencedStore(st, fakeClaim{ch: make(chan struct{})}, stop, testEnvironment(t))
	go func() { done <- closed.Table(store.Ledger).InsertPage(ctx, nil, "r", time.Now()) }()
	close(stop)
	if err := <-done; !errors.Is(err, ErrClaimLost) {
		t.Errorf("a write waiting when the runtime stops: %v, want ErrClaimLost", err)
	}
}

// A write carries the events that waited for it: an execution that ended
// before is not work in progress, an attempt's begin is.
func TestGateWaitersWorkflows(t *testing.T) {
	g := &gateWaiters{byWrite: map[*[]store.Event]bool{}}
	w := []store.Event{
		{Workflow: "done", Kind: store.AttemptEnded},
		{Workflow: "done", Kind: store.ExecutionEnded},
		{Workflow: "maybe-done", Kind: store.AttemptEnded},
		{Workflow: "b2", Kind: store.AttemptBegan},
		{Workflow: "b2", Kind: store.PageWritten},
	}
	g.add(&w)
	got := g.workflows()
	if len(got) != 1 || got["b2"] != 0 {
		t.Errorf("workflows %v, want only b2, number unknown", got)
	}
}

// testEnvironment waits out outages for a minute and fails the test if the
// process would be stopped on one.
func testEnvironment(t *testing.T) *environment {
	return &environment{timeout: time.Minute, notices: func(string, ...any) {},
		stop: func(err error) { t.Errorf("the process would stop on %v", err) }}
}

// An adopter by hand hands on, when it closes, what it dequeued beside
// the adopted workflows and did not finish: left PENDING under its made-up
// executor ID, it would wait for a process that never comes.
func TestCloseHandingBackResumesWhatWasLeftPending(t *testing.T) {
	dir := t.TempDir()
	systemDB := "sqlite:" + filepath.Join(dir, "dbos.sqlite")
	rt, err := Open(context.Background(), Config{SystemDB: systemDB, Store: filepath.Join(dir, "users.db"), ExecutorID: "durlab-adopt-w9",
		Logger: slog.New(slog.DiscardHandler), Notices: io.Discard, Experiments: testExperiments})
	if err != nil {
		t.Fatal(err)
	}
	h, err := dbos.RunWorkflow(rt.dbos, holdWorkflow.fn, Input{Pages: 1, PageSize: 1})
	if err != nil {
		rt.Close()
		t.Fatal(err)
	}
	handed, err := rt.CloseHandingBack(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(handed) != 1 || handed[0] != h.GetWorkflowID() {
		t.Fatalf("handed back %v, want [%s]", handed, h.GetWorkflowID())
	}
	client, err := dbos.NewClient(context.Background(), dbos.ClientConfig{DatabaseURL: systemDB, AppName: AppName, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Shutdown(client, time.Second)
	wfs, err := dbos.ListWorkflows(client, dbos.WithFilterWorkflowIDs(h.GetWorkflowID()))
	if err != nil || len(wfs) != 1 {
		t.Fatalf("list: %v, %d", err, len(wfs))
	}
	if w := wfs[0]; w.Status != dbos.WorkflowStatusEnqueued || !strings.HasPrefix(w.QueueName, "_dbos") {
		t.Errorf("after the hand-back: %s on queue %q, want ENQUEUED on DBOS's internal queue", w.Status, w.QueueName)
	}
}
