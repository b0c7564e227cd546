package lab

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

// TestQueueConcurrencyIsSharedAndNeverSilentlyChanged: DBOS stores one
// per-worker concurrency per queue. Only an explicit --concurrency writes
// it, and says so when it changes it; workers without one, and
// experiments, keep what is stored.
func TestQueueConcurrencyIsSharedAndNeverSilentlyChanged(t *testing.T) {
	dir := t.TempDir()
	open := func(id, serve string, concurrency int) (*Runtime, *bytes.Buffer) {
		var notices bytes.Buffer
		rt, err := Open(context.Background(), Config{SystemDB: "sqlite:" + filepath.Join(dir, "dbos.sqlite"),
			Store: filepath.Join(dir, "users.db"), ExecutorID: id, Logger: slog.New(slog.DiscardHandler),
			Notices: &notices, Serve: serve, Concurrency: concurrency, Experiments: testExperiments})
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		t.Cleanup(func() { rt.Close() })
		return rt, &notices
	}
	stored := func(rt *Runtime) int {
		q, err := dbos.RetrieveQueue(rt.dbos, "q")
		if err != nil || q.GetWorkerConcurrency() == nil {
			t.Fatalf("queue q: %v", err)
		}
		return *q.GetWorkerConcurrency()
	}

	a, _ := open("a", "q", 0)
	if got := a.Concurrency(); got != DefaultWorkerConcurrency {
		t.Errorf("a new queue: concurrency %d, want %d", got, DefaultWorkerConcurrency)
	}
	b, notices := open("b", "q", 2)
	if got := stored(b); got != 2 || b.Concurrency() != 2 {
		t.Errorf("after --concurrency 2: stored %d, worker %d", got, b.Concurrency())
	}
	if !strings.Contains(notices.String(), "per-worker concurrency changed from 4 to 2, for every worker of the queue") {
		t.Errorf("no notice of the change: %q", notices.String())
	}
	c, notices := open("c", "q", 0)
	if got := c.Concurrency(); got != 2 || notices.Len() != 0 {
		t.Errorf("a worker without --concurrency: %d, notices %q", got, notices.String())
	}
	exp, notices := open("exp", "", 0)
	if _, err := exp.batchQueue("q"); err != nil {
		t.Fatal(err)
	}
	if got := stored(exp); got != 2 {
		t.Errorf("an experiment changed the stored concurrency to %d", got)
	}
	if strings.Contains(notices.String(), "runs its batches itself") {
		t.Errorf("the experiment serves a queue that has workers: %q", notices.String())
	}
	if got := dbos.ListenedQueues(exp.dbos); len(got) != 1 || got[0] != noQueue {
		t.Errorf("the experiment listens to %v", got)
	}
	if got := dbos.ListenedQueues(a.dbos); len(got) != 1 || got[0] != "q" {
		t.Errorf("worker a listens to %v", got)
	}
}

// TestExperimentServesAQueueWithoutWorkers: with no worker alive, an
// experiment that enqueues on a queue listens to it itself.
func TestExperimentServesAQueueWithoutWorkers(t *testing.T) {
	dir := t.TempDir()
	var notices bytes.Buffer
	rt, err := Open(context.Background(), Config{SystemDB: "sqlite:" + filepath.Join(dir, "dbos.sqlite"),
		Store: filepath.Join(dir, "users.db"), ExecutorID: "exp", Logger: slog.New(slog.DiscardHandler), Notices: &notices, Experiments: testExperiments})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.batchQueue("lonely"); err != nil {
		t.Fatal(err)
	}
	got := dbos.ListenedQueues(rt.dbos)
	if len(got) != 2 || got[0] != noQueue || got[1] != "lonely" {
		t.Errorf("listens to %v, want [%s lonely]", got, noQueue)
	}
	if !strings.Contains(notices.String(), "no durlab worker serves queue lonely; this process runs its batches itself") {
		t.Errorf("notices %q", notices.String())
	}
}
