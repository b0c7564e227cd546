package lab

// Fencing: what keeps a process that lost its executor claim from writing
// for work another process has adopted.
//
// DBOS v1.8 fences its own writes: every dispatch of a workflow gets a new
// owner token, and a step's checkpoint, a child's record and the final
// status are written only by the current owner; recovering a workflow for
// another executor clears the token. What DBOS cannot fence is what the
// step does: dedup's plain insert step writes its rows before its
// checkpoint fails. So every write this process makes to the store waits
// while its claim is lost (the gate below), and when the claim comes back
// the process checks that nobody took over what it was running; if someone
// did, or holds the claim now, the process ends at once with ExitFenced,
// running no clean-up: DBOS's shutdown and the ledger's "stopped" records
// would be writes too, for workflows that are no longer its own.

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

// ExitFenced is the exit status of a process that stopped because its
// executor claim was taken over while it had lost it.
const ExitFenced = 3

// regainTimeout bounds the check of the running executions when a lost
// claim is held again.
const regainTimeout = 2 * time.Second

// fenceOwn makes the Runtime's claim fence the process when it is lost for
// good, and check its work when it is held again.
func (rt *Runtime) fenceOwn() {
	rt.claim.onLoss(lossPolicy{regain: rt.stillOwnsItsWork, taken: rt.fence})
}

// stillOwnsItsWork tells whether this process may carry on after taking
// its lost claim again. Within MinAdoptAfter of the last time the lost
// session was seen holding the claim, no worker can have adopted it yet.
// After that, every workflow this process is working on must still be
// this executor's to run: still PENDING here, at the dispatch it started
// with (an adopter puts it back on a queue, and the next dispatch counts
// one more attempt). "Working on" is what runs (rt.running) and what
// waits at the gate to write, which includes an execution whose first
// record, its begin, is waiting: it is not running yet.
func (rt *Runtime) stillOwnsItsWork(lastHeld time.Time) error {
	if time.Since(lastHeld) < MinAdoptAfter {
		return nil
	}
	number := rt.waitingAtGate()
	rt.runningMu.Lock()
	for x := range rt.running {
		number[x.id] = x.number
	}
	rt.runningMu.Unlock()
	if len(number) == 0 {
		return nil
	}
	ctx, cancel := dbos.WithTimeout(dbos.WithoutCancel(rt.dbos), regainTimeout)
	defer cancel()
	wfs, err := dbos.ListWorkflows(ctx, dbos.WithFilterWorkflowIDs(slices.Collect(maps.Keys(number))...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return err // asked again at the next check
	}
	me := rt.ExecutorID()
	for _, w := range wfs {
		n := number[w.ID]
		if w.Status != dbos.WorkflowStatusPending || w.ExecutorID != me || n > 0 && w.Attempts != n {
			return fmt.Errorf("%w: executor ID %s lost its database session, and meanwhile workflow %s, which this process was running, became %s on executor %s: it was adopted",
				errFenced, me, w.ID, w.Status, w.ExecutorID)
		}
	}
	return nil
}

// waitingAtGate are the workflows whose writes wait at the gate, with
// their execution numbers where a write tells it (0 otherwise).
func (rt *Runtime) waitingAtGate() map[string]int {
	s, ok := rt.store.(fencedStore)
	if !ok {
		return map[string]int{}
	}
	return s.waiting.workflows()
}

// fence ends the process at once: see the file comment.
func (rt *Runtime) fence(err error) {
	fmt.Fprintf(rt.notices, "durlab: %v; this process stops now and writes nothing more (exit %d)\n", err, ExitFenced)
	os.Exit(ExitFenced)
}

// fencedStore is the store as this process writes it: each write first
// waits for the executor claim to be held. The claim is held nearly always,
// and then a write costs one channel receive.
//
// It is also where the run's environment faults are met (environment.go):
// every operation waits out an outage, or ends the process.
type fencedStore struct {
	store.Store
	claim   claim
	stop    <-chan struct{} // the Runtime's: a stopping process waits no more
	waiting *gateWaiters
	env     *environment
}

func newFencedStore(st store.Store, cl claim, stop <-chan struct{}, env *environment) fencedStore {
	return fencedStore{Store: st, claim: cl, stop: stop, waiting: &gateWaiters{byWrite: map[*[]store.Event]bool{}}, env: env}
}

// endure runs op through the environment's outage handling.
func (s fencedStore) endure(ctx context.Context, op func() error) error {
	return s.env.endure(ctx, s.stop, op)
}

// write runs a write: in a dbos.RunAsTransaction transaction (tx set),
// whose faults DBOS retries, or on its own. events are the ledger events
// it commits, which tell whether a write whose answer was lost committed.
func (s fencedStore) write(ctx context.Context, tx store.Tx, events []store.Event, op func() error) error {
	if tx != nil {
		return s.env.inTransaction(op())
	}
	var committed func() (bool, error)
	if len(events) > 0 {
		committed = func() (bool, error) { return s.Store.HasEvent(ctx, events[0]) }
	}
	return s.env.endureWrite(ctx, s.stop, op, committed)
}

// gate waits for the claim; events are those of the write, which tell
// stillOwnsItsWork whose write it is.
func (s fencedStore) gate(ctx context.Context, events []store.Event) error {
	held := s.claim.held()
	select {
	case <-held:
		return nil
	default:
	}
	key := &events
	s.waiting.add(key)
	defer s.waiting.remove(key)
	// A claim lost for longer than the outage timeout ends the process
	// (Runtime.watchClaim), so this wait is bounded.
	select {
	case <-held:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return ErrClaimLost
	}
}

// gateWaiters are the writes waiting at the gate, by their events.
type gateWaiters struct {
	mu      sync.Mutex
	byWrite map[*[]store.Event]bool
}

func (g *gateWaiters) add(w *[]store.Event) {
	g.mu.Lock()
	g.byWrite[w] = true
	g.mu.Unlock()
}

func (g *gateWaiters) remove(w *[]store.Event) {
	g.mu.Lock()
	delete(g.byWrite, w)
	g.mu.Unlock()
}

// workflows are the workflows the waiting writes are working on, with the
// execution number their begin events give (0 when none does). A write
// also carries the events that waited for it, such as the end of an
// execution that finished before: a workflow whose end is among them is
// done here, and one with only an attempt's end may be.
func (g *gateWaiters) workflows() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	number := map[string]int{}
	for w := range g.byWrite {
		ended := map[string]bool{}
		for _, e := range *w {
			if e.Kind == store.ExecutionEnded {
				ended[e.Workflow] = true
			}
		}
		for _, e := range *w {
			switch {
			case e.Workflow == "" || ended[e.Workflow]:
			case e.Kind == store.ExecutionBegan:
				number[e.Workflow] = e.Number
			case e.Kind == store.AttemptBegan || e.Kind == store.PageWritten:
				if _, ok := number[e.Workflow]; !ok {
					number[e.Workflow] = 0
				}
			}
		}
	}
	return number
}

func (s fencedStore) Table(v store.Variant) store.Table {
	return fencedTable{Table: s.Store.Table(v), s: s}
}

func (s fencedStore) Update(ctx context.Context, f func(tx store.Tx) error) error {
	return s.endure(ctx, func() error {
		if err := s.gate(ctx, nil); err != nil {
			return err
		}
		return s.Store.Update(ctx, f)
	})
}

func (s fencedStore) WritePage(ctx context.Context, tx store.Tx, v store.Variant, users []fake.User, workflowID string, analyzedAt time.Time, events []store.Event) error {
	return s.write(ctx, tx, events, func() error {
		if err := s.gate(ctx, events); err != nil {
			return err
		}
		return s.Store.WritePage(ctx, tx, v, users, workflowID, analyzedAt, events)
	})
}

func (s fencedStore) AppendEvents(ctx context.Context, tx store.Tx, events []store.Event) error {
	return s.write(ctx, tx, events, func() error {
		if err := s.gate(ctx, events); err != nil {
			return err
		}
		return s.Store.AppendEvents(ctx, tx, events)
	})
}

// The reads a run makes wait out an outage too: a step that counts the
// users must not fail its workflow for one. EachWorkflow is not retried:
// its fn has seen the workflows before the fault, and a report that meets
// one there ends with exit 4 (cmd's exitCode).

func (s fencedStore) Events(ctx context.Context, root string) (events []store.Event, err error) {
	err = s.endure(ctx, func() error { events, err = s.Store.Events(ctx, root); return err })
	return events, err
}

func (s fencedStore) Crashes(ctx context.Context, root string) (crashes []store.Crash, err error) {
	err = s.endure(ctx, func() error { crashes, err = s.Store.Crashes(ctx, root); return err })
	return crashes, err
}

func (s fencedStore) FaultDetails(ctx context.Context, root string) (details []string, err error) {
	err = s.endure(ctx, func() error { details, err = s.Store.FaultDetails(ctx, root); return err })
	return details, err
}

func (s fencedStore) WorkflowEvents(ctx context.Context, root, workflow string, lean bool) (events []store.Event, plain int, err error) {
	err = s.endure(ctx, func() error { events, plain, err = s.Store.WorkflowEvents(ctx, root, workflow, lean); return err })
	return events, plain, err
}

func (s fencedStore) OpenExecutions(ctx context.Context, root string) (open []store.OpenExecution, err error) {
	err = s.endure(ctx, func() error { open, err = s.Store.OpenExecutions(ctx, root); return err })
	return open, err
}

func (s fencedStore) Noticed(ctx context.Context, ids []string) (noticed map[string]bool, err error) {
	err = s.endure(ctx, func() error { noticed, err = s.Store.Noticed(ctx, ids); return err })
	return noticed, err
}

func (t fencedTable) Counts(ctx context.Context, workflowID string) (c store.Counts, err error) {
	err = t.s.endure(ctx, func() error { c, err = t.Table.Counts(ctx, workflowID); return err })
	return c, err
}

func (t fencedTable) TotalRows(ctx context.Context) (n int64, err error) {
	err = t.s.endure(ctx, func() error { n, err = t.Table.TotalRows(ctx); return err })
	return n, err
}

// fencedTable is a users table whose writes wait as fencedStore's do.
type fencedTable struct {
	store.Table
	s fencedStore
}

func (t fencedTable) Insert(ctx context.Context, tx store.Tx, users []fake.User, workflowID string, analyzedAt time.Time) error {
	return t.s.write(ctx, tx, nil, func() error {
		if err := t.s.gate(ctx, nil); err != nil {
			return err
		}
		return t.Table.Insert(ctx, tx, users, workflowID, analyzedAt)
	})
}

func (t fencedTable) InsertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error {
	return t.s.endure(ctx, func() error {
		if err := t.s.gate(ctx, nil); err != nil {
			return err
		}
		return t.Table.InsertPage(ctx, users, workflowID, analyzedAt)
	})
}

func (t fencedTable) Delete(ctx context.Context, workflowIDs []string) (n int64, err error) {
	err = t.s.endure(ctx, func() error {
		if err := t.s.gate(ctx, nil); err != nil {
			return err
		}
		n, err = t.Table.Delete(ctx, workflowIDs)
		return err
	})
	return n, err
}
