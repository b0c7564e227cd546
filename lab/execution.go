package lab

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/google/uuid"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

// Execution is one execution of a workflow, as its function sees it: the
// handle through which it runs steps, writes users and reaches its crash
// points.
type Execution struct {
	rt     *Runtime
	ctx    dbos.Context
	id     string // the workflow ID
	execID string // this execution's ID in the ledger
	root   string // the main workflow's ID: every row of a run carries it
	role   string // the workflow's place in its run, for fault decisions
	seed   int64
	// number is the execution number (see Runtime.execution).
	number int

	mu            sync.Mutex
	current       *Attempt // the attempt running now, for a crash to end
	replays       int      // steps taken from their checkpoints
	saidRecovered bool
	beginFlushed  bool      // its beginning is in the ledger (tree.go)
	treeRanAt     time.Time // when treeRuns last found the tree running
	forkedFrom    string    // the workflow a fork was forked from
	// fired are the schedule's entries this run already fired (faults.go),
	// read from the ledger when a schedule first needs them.
	fired map[string]bool
}

// Execute runs body as the execution of the workflow ctx belongs to, and
// records it in the attempt ledger. A workflow function is Execute around
// its body.
func Execute[I runInput, O any](ctx dbos.Context, in I, body func(x *Execution) (O, error)) (O, error) {
	var zero O
	rt := runtimeOf(ctx)
	if rt == nil {
		return zero, errors.New("a durlab workflow runs only in a lab.Runtime")
	}
	id, err := dbos.GetWorkflowID(ctx)
	if err != nil {
		return zero, err
	}
	if rt.parks(id) {
		return zero, park(ctx) // left pending on purpose: leftovers.go
	}
	x := &Execution{rt: rt, ctx: ctx, id: id, execID: uuid.NewString(), root: in.rootOf(id), role: in.role(),
		seed: in.runSeed(), number: 1}
	mark, fresh := ctx.Value(startedKey{}).(startMark)
	if !fresh {
		st, err := rt.status(id, dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return zero, err
		}
		mark, x.number, x.forkedFrom = startMark{st.Name, st.ParentWorkflowID}, st.Attempts, st.ForkedFrom
	}
	// A child's first execution, started by its parent in this process,
	// is recorded with its first write: one killed before it is told by
	// DBOS's checkpoints (package ledger). A main workflow's, and any
	// recovery's, is recorded before it runs.
	rt.deathMu.RLock()
	if rt.dying {
		select {} // the process is about to die by an injected crash
	}
	begin := x.beginEvent(mark.name, mark.parent)
	rt.deathMu.RUnlock()
	if err := x.begin(begin, !fresh || mark.parent == ""); err != nil {
		return zero, err
	}
	if rt.schedule != nil {
		// Read now, outside any transaction: inside one, SQLite's only
		// connection is the transaction's.
		x.fired = x.firedFaults()
	}
	rt.track(x, true)
	out, err := body(x)
	rt.track(x, false)
	x.end(err)
	return out, err
}

// Faults are the fault knobs of the process running this execution.
func (x *Execution) Faults() Faults { return x.rt.faults }

// AnalyzedAt is taken once per process, as in the Python ex1 to ex4.
func (x *Execution) AnalyzedAt() time.Time { return x.rt.analyzedAt }

// Decide is a fault decision: true with probability p, fixed by the seed,
// the workflow's role, the execution number and the coordinates.
func (x *Execution) Decide(p float64, coords ...any) bool {
	return p > 0 && chance(x.seed, append([]any{x.role, x.number}, coords...)...) < p
}

// decidedBy says what decided a fault of probability p.
func (x *Execution) decidedBy(p float64) string {
	return fmt.Sprintf("seed %d, probability %v", x.seed, p)
}

// chance is a uniform number in [0,1) fixed by the seed and the decision's
// coordinates.
func chance(seed int64, coords ...any) float64 {
	h := sha256.New()
	fmt.Fprint(h, seed)
	for _, c := range coords {
		fmt.Fprintf(h, "|%v", c)
	}
	return float64(binary.BigEndian.Uint64(h.Sum(nil))>>11) / (1 << 53)
}

// crash records the fault, the end of the attempt it interrupts and of the
// execution, then kills this process with SIGKILL, like the OOM killer: no
// deferred function, no DBOS shutdown.
func (x *Execution) crash(kind, where, decided string) {
	x.rt.deathMu.Lock()
	x.rt.dying = true
	x.rt.deathMu.Unlock()
	x.mu.Lock()
	a := x.current
	x.mu.Unlock()
	var events []store.Event
	if a != nil {
		events = a.unwritten()
	}
	events = append(events, x.faultEvent(kind, where, decided, a))
	if a != nil {
		e := a.event(store.AttemptEnded)
		e.Outcome, e.Site = OutcomeCrashed, where
		events = append(events, e)
		if a.tx != nil {
			// The crash ends the transaction uncommitted; rolled back now,
			// it frees the store for the record of the crash.
			a.tx.(dbos.Tx).Rollback(context.WithoutCancel(a.ctx))
		}
	}
	end := x.event(store.ExecutionEnded)
	end.Outcome, end.Site = OutcomeCrashed, where
	if err := x.rt.rec.now(x.ctx, append(events, end)...); err != nil {
		fmt.Fprintf(x.rt.notices, "durlab: could not record the crash: %v\n", err)
	}
	fmt.Fprintf(x.rt.notices, "durlab: injected crash at %s: SIGKILL to pid %d (workflow %s)\n", where, os.Getpid(), x.root)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// Attempt is one attempt at a step: DBOS runs the step's function once per
// attempt.
type Attempt struct {
	x   *Execution
	ctx context.Context
	tx  store.Tx // the transaction of a Transaction step; nil in a plain step
	// N numbers the attempts of the step in this process, from 1. DBOS
	// itself does not tell a step which attempt it is on.
	N int

	id     string // the attempt's ID in the ledger
	step   string
	stepID int
	rows   int // what its writes committed
	// begin is the attempt's begin event, until a write (or a failure, or
	// a crash) writes it: an attempt that writes nothing and succeeds is
	// recorded by its end alone.
	begin *store.Event
	// checked: the attempt found its tree running before its first write
	// (tree.go).
	checked bool
}

// unwritten takes the attempt's begin event, if no write has taken it yet.
func (a *Attempt) unwritten() []store.Event {
	if a.begin == nil {
		return nil
	}
	e := *a.begin
	a.begin = nil
	return []store.Event{e}
}

// Step runs fn as a DBOS step named name, once per attempt, and records
// every attempt in the ledger (see ledger.go).
func Step[R any](x *Execution, name string, fn func(a *Attempt) (R, error), retries Retries) (R, error) {
	next := x.stepIDNext()
	n := 0 // DBOS calls this same closure for every retry in this process
	out, err := dbos.RunAsStep(x.ctx, func(ctx context.Context) (R, error) {
		n++
		x.sayRecovered("running " + name)
		a := x.newAttempt(ctx, nil, name, stepIDOf(ctx, next), n)
		begin := a.event(store.AttemptBegan)
		a.begin = &begin // its first write, a failure or a crash writes it
		x.setCurrent(a)
		x.point(In(name, n, "start"))
		r, err := fn(a)
		x.point(In(name, n, "end"))
		x.setCurrent(nil)
		if err != nil {
			// Written before DBOS waits to retry: a process killed in the
			// wait still tells how this attempt ended.
			if rerr := x.rt.rec.now(ctx, append(a.unwritten(), a.endEvent(err))...); rerr != nil {
				return r, errors.Join(err, rerr)
			}
			return r, a.sayFailed(err, retries)
		}
		end := a.endEvent(nil)
		if a.begin != nil {
			end.Began = a.begin.At
			a.begin = nil
		}
		x.rt.rec.later(end)
		return r, nil
	}, append(retries.options(), dbos.WithStepName(name), dbos.WithStepRetryPredicate(retryable))...)
	if n == 0 {
		x.replayed(name, next)
	}
	return out, err
}

// Transaction runs fn as a DBOS transaction on the store named name, once
// per attempt: its writes, its ledger events and the step's checkpoint
// commit together, and an error rolls its writes back. The events of an
// attempt that rolled back are written on their own before DBOS retries.
// Transaction sets the step's retry predicate itself.
func Transaction[R any](x *Execution, name string, fn func(a *Attempt) (R, error), retries Retries) (R, error) {
	next := x.stepIDNext()
	n := 0
	var rolledBack []store.Event // events of attempts that rolled back, not yet written
	writeRolledBack := func(ctx context.Context) error {
		if len(rolledBack) == 0 {
			return nil
		}
		err := x.rt.rec.now(ctx, rolledBack...)
		rolledBack = nil
		return err
	}
	// A transaction's first attempt checks its tree before it begins,
	// outside the transaction: on SQLite the transaction holds the store's
	// only connection, which the check's first flush of the ledger needs.
	// A later one checks inside, and so does one that failed: a step that
	// ended on an ordinary error would have DBOS mirror that failure into
	// the store, unguarded by the workflow's ownership, and replay it when
	// the cancelled tree is resumed. A stop is ended as DBOS ends a step
	// of a workflow that changed hands, which it records nowhere.
	if err := x.treeRuns(x.ctx); err != nil {
		var zero R
		return zero, err
	}
	retry := func(err error) bool {
		if werr := writeRolledBack(x.ctx); werr != nil {
			fmt.Fprintf(x.rt.notices, "durlab: %v\n", werr)
		}
		return retryable(err)
	}
	out, err := dbos.RunAsTransaction(x.ctx, x.rt.dataSource, func(ctx context.Context, tx dbos.Tx) (R, error) {
		var zero R
		if n > 0 {
			if err := x.treeRuns(ctx); err != nil {
				return zero, stoppedInTransaction{err}
			}
		}
		n++
		x.sayRecovered("running " + name)
		a := x.newAttempt(ctx, tx, name, stepIDOf(ctx, next), n)
		begin := a.event(store.AttemptBegan)
		if err := x.rt.store.AppendEvents(ctx, tx, append(rolledBack, begin)); err != nil {
			return zero, err
		}
		x.setCurrent(a)
		x.point(In(name, n, "start"))
		r, err := fn(a)
		x.point(In(name, n, "end"))
		x.setCurrent(nil)
		if err != nil {
			rolledBack = append(rolledBack, begin, a.endEvent(err))
			a.rows = 0 // rolled back with the transaction
			if stop := x.treeRuns(ctx); stop != nil {
				x.rt.say("%s: %s attempt %d failed (rolled back), and is not retried: %s", x.who(), name, n, oneLine(stop.Error()))
				return zero, stoppedInTransaction{stop}
			}
			return zero, a.sayFailed(err, retries)
		}
		rolledBack = nil // they are in this transaction
		return r, x.rt.store.AppendEvents(ctx, tx, []store.Event{a.endEvent(nil)})
	}, append(retries.options(), dbos.WithStepName(name), dbos.WithStepRetryPredicate(retry))...)
	if werr := writeRolledBack(x.ctx); werr != nil && err == nil {
		err = werr
	}
	if n == 0 {
		x.replayed(name, next)
	}
	return out, err
}

func (x *Execution) setCurrent(a *Attempt) {
	x.mu.Lock()
	x.current = a
	x.mu.Unlock()
}

// InsertPage writes page number page, users, to table v under the run's
// workflow ID, with the ledger's record of it: in the attempt's
// transaction, or in one of its own in a plain step.
func (a *Attempt) InsertPage(v store.Variant, page int, users []fake.User, analyzedAt time.Time) error {
	if a.tx == nil && !a.checked {
		// Transaction checks its attempts itself.
		if err := a.x.treeRuns(a.ctx); err != nil {
			return err
		}
		a.checked = true
	}
	w := a.event(store.PageWritten)
	w.Page, w.Rows = page, len(users)
	err := a.x.rt.timings.TimeStore(func() error {
		if a.tx != nil {
			return a.x.rt.store.WritePage(a.ctx, a.tx, v, users, a.x.root, analyzedAt, []store.Event{w})
		}
		begin := a.unwritten()
		err := a.x.write(a.ctx, v, users, analyzedAt, append(begin, w)...)
		if err != nil && len(begin) > 0 {
			a.begin = &begin[0] // the write rolled back, its begin with it
		}
		return err
	})
	if err == nil {
		a.rows += len(users)
		if a.tx == nil && a.x.pointsWatched() { // committed: in a transaction, nothing commits before its end
			a.x.point(In(a.step, a.N, fmt.Sprintf("after-page-%d", page)))
		}
	}
	return err
}

// InsertPage writes page number page, users, from the workflow body,
// outside any step: a recovered execution runs it again. The ledger
// records it as a one-attempt operation named step, with no DBOS step ID.
func (x *Execution) InsertPage(v store.Variant, step string, page int, users []fake.User, analyzedAt time.Time) error {
	if err := x.treeRuns(x.ctx); err != nil {
		return err
	}
	a := x.newAttempt(x.ctx, nil, step, -1, 1)
	begin := a.event(store.AttemptBegan)
	// One event stands for the whole operation when it succeeds.
	w := a.event(store.PageWritten)
	w.Page, w.Rows, w.Began = page, len(users), begin.At
	err := x.rt.timings.TimeStore(func() error { return x.write(x.ctx, v, users, analyzedAt, w) })
	if err != nil {
		x.rt.rec.later(begin, a.endEvent(err))
		return err
	}
	x.point(In(step, 1, "after-commit"))
	return nil
}

// write inserts users into table v, atomically with events and the events
// waiting for a write.
func (x *Execution) write(ctx context.Context, v store.Variant, users []fake.User, analyzedAt time.Time, events ...store.Event) error {
	waiting := x.rt.rec.take()
	err := x.rt.store.WritePage(ctx, nil, v, users, x.root, analyzedAt, append(waiting, events...))
	if err != nil {
		x.rt.rec.giveBack(waiting)
	}
	return err
}

// FailIf injects a failure into attempt a with probability p, decided by
// the coordinates: it records the fault and returns an error saying msg.
// It returns nil when no fault fires.
func (a *Attempt) FailIf(p float64, msg string, coords ...any) error {
	site := In(a.step, a.N, "")
	// A schedule replaces the random knobs; a probability of 1 decides
	// nothing, so it stays (retry-bad's failures are its lesson).
	var decided string
	if a.x.rt.schedule != nil && p < 1 {
		var ok bool
		if decided, ok = a.x.scheduled(FaultFail, site, 0); !ok {
			return nil
		}
	} else if !a.x.Decide(p, coords...) {
		return nil
	} else {
		decided = a.x.decidedBy(p)
	}
	a.x.rt.rec.later(a.x.faultEvent(FaultFail, site.String(), decided, a))
	return injectedError{msg}
}

// Count counts what the run wrote to table v, as a step: the counts are the
// workflow's output, checkpointed, so the report never depends on rows a
// later run may empty away.
//
// A fork from past this step copies the original's count, of the
// original's rows (see fork.go): the fork then counts its own in a step of
// its own, so that its output is what the store holds under its ID.
func (x *Execution) Count(v store.Variant) (store.Counts, error) {
	count := func(a *Attempt) (store.Counts, error) {
		c, err := x.rt.store.Table(v).Counts(a.ctx, x.root)
		c.Root = x.root
		return c, err
	}
	c, err := Step(x, "count_users", count, Retries{})
	if err != nil || c.Root == "" || c.Root == x.root {
		return c, err
	}
	return Step(x, "count_own_users", count, Retries{})
}

// pageOutput is the generate step's checkpointed output. Attempts is read
// back by `durlab workflow steps`: DBOS itself does not record the attempts
// of a step that succeeded.
type pageOutput struct {
	Page     int         `json:"page"`
	Attempts int         `json:"attempts"`
	Users    []fake.User `json:"users"`
}

// GeneratePage generates one page of size users as a step. With failProb >
// 0 it fails with that probability, and DBOS retries it (3 attempts, DBOS's
// default intervals, as the Python original's retries_allowed step).
func GeneratePage(x *Execution, page, size int, failProb float64) ([]fake.User, error) {
	var retries Retries
	if failProb > 0 {
		retries.Attempts = 3
	}
	out, err := Step(x, fmt.Sprintf("generate_page_%d", page), func(a *Attempt) (pageOutput, error) {
		if err := a.FailIf(failProb, fmt.Sprintf("injected failure generating page %d (attempt %d)", page, a.N), "generate", page, a.N); err != nil {
			return pageOutput{}, err
		}
		return pageOutput{Page: page, Attempts: a.N, Users: x.rt.timings.TimeGenerate(page, size)}, nil
	}, retries)
	return out.Users, err
}

// Timings accumulate where the time of a run went, for profile's breakdown.
type Timings struct {
	generate atomic.Int64 // ns in fake generation
	store    atomic.Int64 // ns in store writes
	ledger   atomic.Int64 // ns in the attempt ledger's own commits
}

// Ledger is the time spent in the attempt ledger's own commits; the events
// that ride in a page's transaction are part of its store write.
func (t *Timings) Ledger() time.Duration { return time.Duration(t.ledger.Load()) }

// Generation is the time spent generating fake users.
func (t *Timings) Generation() time.Duration { return time.Duration(t.generate.Load()) }

// StoreWrites is the time spent writing to the store.
func (t *Timings) StoreWrites() time.Duration { return time.Duration(t.store.Load()) }

// TimeGenerate generates a page, timed as generation.
func (t *Timings) TimeGenerate(page, size int) []fake.User {
	start := time.Now()
	users := fake.Page(page, size)
	t.generate.Add(int64(time.Since(start)))
	return users
}

// TimeStore runs a store write, timed as such.
func (t *Timings) TimeStore(f func() error) error {
	start := time.Now()
	err := f()
	t.store.Add(int64(time.Since(start)))
	return err
}
