package lab

// Adoption: finishing the pending workflows of an executor that died.
//
// DBOS recovers a PENDING workflow only in a process with its executor ID
// (at Launch), and has no notion of a dead executor: DBOS Conductor is what
// decides one is dead, from its lost websocket, and calls
// RecoverPendingWorkflows for it. durlab already holds the liveness signal:
// every process claims its executor ID for its lifetime (claim.go), and the
// claim dies with the process.
//
//   - A worker (Config.AdoptAfter > 0) looks, every adoptCheck, at the
//     executors that have PENDING workflows of its application version. One
//     whose claim no live process has held for AdoptAfter is dead.
//   - To adopt it, a process takes its claim first (claimAdoption), so that
//     two survivors never adopt the same executor, and a process restarted
//     with that ID waits instead of recovering the same workflows.
//   - Then DBOS's RecoverPendingWorkflows (dbos/internals) puts the dead
//     executor's PENDING workflows of this version back on their queues
//     (DBOS's internal queue for those that were on none), clearing their
//     DBOS owner token. Whoever dequeues one next runs it and becomes its
//     executor: the adopter, or another worker of its queue.
//   - The adopter holds the claim until every workflow it adopted has
//     finished, and puts back on the queue any that shows up PENDING under
//     the dead ID meanwhile (a cut-off process that dequeued it after its
//     network came back, before it found itself fenced). Then the claim is
//     free: the executor ID starts over with nothing to recover.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/dbos-inc/dbos-transact-golang/dbos/internals"
)

const (
	// DefaultAdoptAfter is how long a worker waits, by default, before it
	// adopts an executor whose claim no live process holds.
	DefaultAdoptAfter = 10 * time.Second
	// MinAdoptAfter is the shortest AdoptAfter allowed: more than twice the
	// time a process takes to find out it lost its claim (pgClaimCheck +
	// pgPingTimeout), so that it has closed its gate before anyone adopts
	// its work.
	MinAdoptAfter = 5 * time.Second
	// adoptCheck is how often a worker looks for dead executors.
	adoptCheck = time.Second
	// adoptHold is how often an adopter checks on what it adopted.
	adoptHold = 250 * time.Millisecond
)

// Adoption is the pending work of a dead executor that this process took
// over.
type Adoption struct {
	Executor string `json:"executor_id"`
	// DeadFor is how long no live process had held its claim when a worker
	// adopted it; zero when adopted by hand.
	DeadFor   time.Duration     `json:"-"`
	Workflows []AdoptedWorkflow `json:"workflows"`

	rt    *Runtime
	claim claim
	done  chan struct{} // closed when the claim is released
	mu    sync.Mutex
	err   error // why the hold ended before every workflow finished
}

// AdoptedWorkflow is one workflow an adoption put back on its queue.
type AdoptedWorkflow struct {
	ID     string `json:"workflow_id"`
	Name   string `json:"name"`
	Queue  string `json:"queue_name"`
	Status string `json:"status"` // as last seen
}

// ErrAdoptSelf: a process cannot adopt its own executor ID.
var ErrAdoptSelf = errors.New("a process cannot adopt its own executor ID")

// Adopt takes executor id's claim and puts its PENDING workflows of this
// application version back on their queues, to be run by this process or
// any other of their queue. It fails with an error matching
// ErrExecutorInUse when id is alive or being adopted. An executor with
// nothing pending gives an Adoption with no workflows, its claim already
// released; otherwise the claim is held until they all finish (Wait).
func (rt *Runtime) Adopt(ctx context.Context, id string) (*Adoption, error) {
	if id == rt.ExecutorID() {
		return nil, fmt.Errorf("%w (%s)", ErrAdoptSelf, id)
	}
	cl, err := claimAdoption(ctx, rt.systemDB, id, rt.notices)
	if err != nil {
		return nil, err
	}
	a := &Adoption{Executor: id, rt: rt, claim: cl, done: make(chan struct{})}
	// Lost to another process (the executor came back): the hold ends,
	// and the workflows are whoever's dequeues them.
	cl.onLoss(lossPolicy{taken: a.setErr})
	ids, err := a.recover()
	if err != nil || len(ids) == 0 {
		close(a.done)
		return a, errors.Join(err, cl.release())
	}
	a.Workflows = make([]AdoptedWorkflow, 0, len(ids))
	for _, wid := range ids {
		a.Workflows = append(a.Workflows, AdoptedWorkflow{ID: wid})
	}
	if err := a.refresh(); err != nil {
		// They are back on their queues all the same: hold on.
		a.setErr(err)
	}
	// An adopted workflow on a queue that no worker serves would never
	// finish: like an experiment, this process runs it then (queues.go).
	// The internal queue every process serves already.
	for _, w := range a.Workflows {
		if w.Queue != "" && w.Queue != rt.serve && !strings.HasPrefix(w.Queue, "_dbos") {
			if _, err := rt.registerQueue(w.Queue, 0); err == nil {
				rt.watchQueue(w.Queue)
			}
		}
	}
	rt.watchers.Add(1)
	go a.hold()
	return a, nil
}

// recover puts the executor's PENDING workflows back on their queues.
func (a *Adoption) recover() ([]string, error) {
	r, err := internals.RuntimeOf(a.rt.dbos)
	if err != nil {
		return nil, err
	}
	handles, err := r.RecoverPendingWorkflows([]string{a.Executor})
	if err != nil {
		return nil, fmt.Errorf("%w: recovering the workflows of executor %s: %v", ErrSystemDB, a.Executor, err)
	}
	ids := make([]string, 0, len(handles))
	for _, h := range handles {
		ids = append(ids, h.GetWorkflowID())
	}
	return ids, nil
}

// refresh reads the adopted workflows' names, queues and statuses.
func (a *Adoption) refresh() error {
	a.mu.Lock()
	ids := make([]string, 0, len(a.Workflows))
	for _, w := range a.Workflows {
		ids = append(ids, w.ID)
	}
	a.mu.Unlock()
	ctx, cancel := dbos.WithTimeout(dbos.WithoutCancel(a.rt.dbos), 5*time.Second)
	defer cancel()
	wfs, err := dbos.ListWorkflows(ctx, dbos.WithFilterWorkflowIDs(ids...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return err
	}
	byID := map[string]dbos.WorkflowStatus{}
	for _, w := range wfs {
		byID[w.ID] = w
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, w := range a.Workflows {
		if st, ok := byID[w.ID]; ok {
			a.Workflows[i] = AdoptedWorkflow{ID: w.ID, Name: st.Name, Queue: st.QueueName, Status: string(st.Status)}
		}
	}
	return nil
}

// finished tells whether every adopted workflow has ended.
func (a *Adoption) finished() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.Workflows {
		switch dbos.WorkflowStatusType(w.Status) {
		case dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError, dbos.WorkflowStatusCancelled,
			dbos.WorkflowStatusMaxRecoveryAttemptsExceeded:
		default:
			return false
		}
	}
	return true
}

// hold keeps the executor's claim until every adopted workflow finished,
// the claim is lost, or the Runtime closes.
func (a *Adoption) hold() {
	defer a.rt.watchers.Done()
	defer close(a.done)
	defer a.claim.release()
	t := time.NewTicker(adoptHold)
	defer t.Stop()
	for {
		select {
		case <-a.rt.stop:
			a.setErr(errors.New("this process stopped before the adopted workflows finished"))
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), pgPingTimeout)
		err := a.claim.verify(ctx)
		cancel()
		if err != nil {
			// Without the claim, recovering again could take a workflow
			// from a live process that has the ID now.
			a.setErr(fmt.Errorf("lost the claim of executor %s: %w", a.Executor, err))
			return
		}
		if more, err := a.recover(); err == nil && len(more) > 0 {
			a.mu.Lock()
			known := map[string]bool{}
			for _, w := range a.Workflows {
				known[w.ID] = true
			}
			for _, id := range more {
				if !known[id] {
					a.Workflows = append(a.Workflows, AdoptedWorkflow{ID: id})
				}
			}
			a.mu.Unlock()
		}
		if a.refresh() == nil && a.finished() {
			return
		}
	}
}

func (a *Adoption) setErr(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

// Wait waits until the adopted workflows have finished and the claim is
// released, and returns them as they ended; ctx cancels the wait, not the
// adoption.
func (a *Adoption) Wait(ctx context.Context) ([]AdoptedWorkflow, error) {
	select {
	case <-a.done:
	case <-ctx.Done():
		return a.Snapshot(), context.Cause(ctx)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.Workflows), a.err
}

// Snapshot is the adopted workflows as last seen.
func (a *Adoption) Snapshot() []AdoptedWorkflow {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.Workflows)
}

// Describe says what went back where, e.g. "3 pending workflows back on
// their queues (2 on batches, 1 on DBOS's internal queue)".
func (a *Adoption) Describe() string {
	n := len(a.Snapshot())
	return fmt.Sprintf("%s back on %s (%s)", Count(n, "pending workflow", "pending workflows"),
		plural(n, "its queue", "their queues"), a.queues())
}

// queues counts the adopted workflows by queue, e.g. "2 on batches, 1 on
// DBOS's internal queue".
func (a *Adoption) queues() string {
	count := map[string]int{}
	for _, w := range a.Snapshot() {
		q := w.Queue
		if q == "" || strings.HasPrefix(q, "_dbos") {
			q = "DBOS's internal queue"
		}
		count[q]++
	}
	var parts []string
	for _, q := range slices.Sorted(maps.Keys(count)) {
		parts = append(parts, fmt.Sprintf("%d on %s", count[q], q))
	}
	return strings.Join(parts, ", ")
}

// CloseHandingBack closes a runtime that adopted by hand (`durlab
// workflow adopt`), and hands on what else it took meanwhile. To run the
// adopted workflows it serves their queues, so it may have dequeued other
// workflows too; its executor ID was made up for the occasion, and no
// process will come back under it to recover them, so once DBOS has shut
// down (and stopped running them here), each workflow left PENDING under
// that ID is resumed on DBOS's internal queue, which every durlab process
// serves. It returns their IDs.
func (rt *Runtime) CloseHandingBack(ctx context.Context) ([]string, error) {
	self := rt.ExecutorID()
	if err := rt.Close(); err != nil {
		return nil, err
	}
	client, err := dbos.NewClient(ctx, dbos.ClientConfig{DatabaseURL: rt.systemDB, AppName: AppName,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer client.Shutdown(client, 5*time.Second)
	left, err := dbos.ListWorkflows(client, dbos.WithFilterExecutorIDs(self), dbos.WithFilterStatus(dbos.WorkflowStatusPending),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, w := range left {
		if _, err := dbos.ResumeWorkflow[any](client, w.ID); err != nil {
			return ids, err
		}
		ids = append(ids, w.ID)
	}
	return ids, nil
}

// Adopted are the adoptions this process made, with their workflows.
func (rt *Runtime) Adopted() []*Adoption {
	rt.adoptMu.Lock()
	defer rt.adoptMu.Unlock()
	return slices.Clone(rt.adoptions)
}

// watchDead adopts, every adoptCheck until Close, the executors with
// PENDING workflows of this version whose claim no live process has held
// for after.
func (rt *Runtime) watchDead(after time.Duration) {
	rt.watchers.Add(1)
	go func() {
		defer rt.watchers.Done()
		l := NewLiveness(context.Background(), rt.systemDB)
		defer l.Close()
		deadSince := map[string]time.Time{}
		t := time.NewTicker(adoptCheck)
		defer t.Stop()
		for {
			select {
			case <-rt.stop:
				return
			case <-t.C:
			}
			rt.lookForDead(l, after, deadSince)
		}
	}()
}

func (rt *Runtime) lookForDead(l *Liveness, after time.Duration, deadSince map[string]time.Time) {
	ctx, cancel := dbos.WithTimeout(dbos.WithoutCancel(rt.dbos), adoptCheck)
	defer cancel()
	wfs, err := dbos.ListWorkflows(ctx, dbos.WithFilterStatus(dbos.WorkflowStatusPending),
		dbos.WithFilterAppVersion(AppVersion), dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return // the next check asks again
	}
	me := rt.ExecutorID()
	pending := map[string]bool{}
	for _, w := range wfs {
		if w.ExecutorID != "" && w.ExecutorID != me {
			pending[w.ExecutorID] = true
		}
	}
	for id := range deadSince {
		if !pending[id] {
			delete(deadSince, id)
		}
	}
	now := time.Now()
	for _, id := range slices.Sorted(maps.Keys(pending)) {
		// A claim that cannot be read counts as held: adopting a live
		// executor would run its workflows twice; waiting costs time.
		if alive, known := l.ExecutorAlive(id); alive || !known {
			delete(deadSince, id)
			continue
		}
		since, seen := deadSince[id]
		if !seen {
			deadSince[id] = now
			continue
		}
		if now.Sub(since) < after {
			continue
		}
		delete(deadSince, id)
		a, err := rt.Adopt(context.Background(), id)
		switch {
		case errors.Is(err, ErrExecutorInUse):
			// It came back, or another survivor is adopting it: theirs.
			continue
		case err != nil:
			fmt.Fprintf(rt.notices, "durlab: could not adopt executor %s: %v\n", id, err)
			continue
		case len(a.Workflows) == 0:
			continue // another survivor adopted it and already let it go
		}
		a.DeadFor = now.Sub(since).Round(time.Second)
		rt.adoptMu.Lock()
		rt.adoptions = append(rt.adoptions, a)
		rt.adoptMu.Unlock()
		fmt.Fprintf(rt.notices, "durlab: executor %s adopted executor %s, which had no live claim for %s: %s; %s holds its claim until %s\n",
			me, id, a.DeadFor, a.Describe(), me, plural(len(a.Workflows), "that workflow finishes", "those workflows finish"))
	}
}
