package lab

// Recording the attempt ledger (store/ledger.go). Events wait in memory for
// the next write, whose transaction carries them, so a fault-free run pays
// one extra statement per page and a commit per execution. The rules that
// make the ledger survive a SIGKILL from outside:
//
//   - An execution's begin is written before its body runs.
//   - An attempt's begin rides in its first write's transaction: it is
//     recorded before its effects, atomically with the first of them.
//   - A page's write event commits in the same transaction as its rows, so
//     "rows written" is exact even when the process dies right after.
//   - A failed attempt's end (and the fault that failed it) is written
//     before DBOS waits to retry it; an injected crash writes the fault and
//     the end of what it kills, then kills the process.
//   - An attempt of a dbos.RunAsTransaction step writes its begin, its
//     writes and its end in its own transaction: they commit together with
//     its rows and checkpoint, or not at all.
//   - What a process killed from outside had not written yet, the reader
//     takes from DBOS (package ledger): a successful attempt's end and an
//     execution's end wait for the next write, but DBOS checkpoints a step,
//     and records a workflow's status, before anything else happens to
//     them. An attempt killed before it wrote anything, or that wrote
//     nothing, left no effect and no checkpoint; its execution shows
//     killed, and the recovery runs the step again.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/google/uuid"

	"github.com/durlab/durlab/store"
)

// Outcomes of executions and attempts, as the ledger records them.
const (
	OutcomeOK       = "ok"       // the attempt or the workflow function succeeded
	OutcomeInjected = "injected" // an injected failure
	OutcomeUnique   = "unique"   // a UNIQUE violation
	OutcomeError    = "error"    // any other error
	OutcomeCrashed  = "crashed"  // an injected crash killed it
	OutcomeStopped  = "stopped"  // the process was stopped by a signal
	// OutcomeEnvironment: the process stopped on an environment fault of a
	// database (environment.go); the workflow stays PENDING.
	OutcomeEnvironment = "environment"
	OutcomeCancelled   = "cancelled" // the workflow was cancelled
	OutcomeReplayed    = "replayed"  // taken from its checkpoint
)

// Fault kinds.
const (
	FaultFail        = "fail"
	FaultCrash       = "crash"
	FaultCommitCrash = "commit-crash" // a crash right after a write committed
)

// ErrInjected matches every failure the lab injects on purpose.
var ErrInjected = errors.New("injected failure")

// injectedError is a failure injected on purpose: its message is the
// report's, and it matches ErrInjected.
type injectedError struct{ msg string }

func (e injectedError) Error() string        { return e.msg }
func (e injectedError) Is(target error) bool { return target == ErrInjected }

// recorder writes this process's events to the ledger.
type recorder struct {
	st       store.Store
	timings  *Timings
	pid      int
	host     string
	executor string

	mu      sync.Mutex
	seq     int64
	pending []store.Event
}

func newRecorder(st store.Store, executor string, t *Timings) *recorder {
	host, _ := os.Hostname()
	return &recorder{st: st, timings: t, pid: os.Getpid(), host: host, executor: executor}
}

// stamp gives an event its time and its place in this process's order.
func (r *recorder) stamp(e store.Event) store.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	e.Seq, e.At = r.seq, time.Now().UTC()
	return e
}

// later keeps events for the next write.
func (r *recorder) later(events ...store.Event) {
	r.mu.Lock()
	r.pending = append(r.pending, events...)
	r.mu.Unlock()
}

// take hands the waiting events to a write, which gives them back if it
// fails.
func (r *recorder) take() []store.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = nil
	return p
}

func (r *recorder) giveBack(events []store.Event) {
	if len(events) == 0 {
		return
	}
	r.mu.Lock()
	r.pending = append(events, r.pending...)
	r.mu.Unlock()
}

// waiting tells whether events wait for a write.
func (r *recorder) waiting() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending) > 0
}

// idleFlush is how long events may wait for a write that does not come.
const idleFlush = 500 * time.Millisecond

// flushIdle writes, every idleFlush until Close, the events that wait for
// a write: a worker idle after a batch would otherwise keep the batch's
// end to itself, and a report waiting for its run to stop (tree.go), or a
// trace following it, would wait for that end as long.
func (rt *Runtime) flushIdle() {
	rt.every(idleFlush, func() {
		if rt.rec.waiting() {
			// A failure keeps them for the next write, which will say
			// what failed.
			_ = rt.rec.now(context.Background())
		}
	})
}

// now writes events, with those waiting, before returning.
func (r *recorder) now(ctx context.Context, events ...store.Event) error {
	start := time.Now()
	defer func() { r.timings.ledger.Add(int64(time.Since(start))) }()
	all := append(r.take(), events...)
	if err := r.st.AppendEvents(context.WithoutCancel(ctx), nil, all); err != nil {
		r.giveBack(all)
		return fmt.Errorf("recording the attempt ledger: %w", err)
	}
	return nil
}

// event is an event of execution x.
func (x *Execution) event(kind store.EventKind) store.Event {
	return x.rt.rec.stamp(store.Event{Root: x.root, Workflow: x.id, Execution: x.execID, Kind: kind, StepID: -1})
}

// beginEvent is the record of the start of execution x, stamped now.
func (x *Execution) beginEvent(name, parent string) store.Event {
	e := x.event(store.ExecutionBegan)
	e.Number, e.ExecutorID, e.PID, e.Host, e.Name, e.Parent = x.number, x.rt.rec.executor, x.rt.rec.pid, x.rt.rec.host, name, parent
	e.Detail = x.role
	return e
}

// begin records the start of execution x: at once, or with the next write.
func (x *Execution) begin(e store.Event, now bool) error {
	if !now {
		x.rt.rec.later(e)
		return nil
	}
	return x.rt.rec.now(x.ctx, e)
}

// end records how execution x ended: its function returned err. A child's
// successful end waits for the next write, or Runtime.flushIdle: DBOS
// records the workflow's status before anything else happens to it, which
// is how a reader knows how an execution whose end was lost with its
// process ended.
func (x *Execution) end(err error) {
	e := x.event(store.ExecutionEnded)
	e.Outcome = OutcomeOK
	switch {
	case err == nil:
	case x.rt.stopping.Load():
		e.Outcome = OutcomeStopped
	case errors.Is(err, dbos.ErrWorkflowCancelled), errors.Is(err, dbos.ErrAwaitedWorkflowCancelled), errors.Is(err, ErrTreeStopped):
		e.Outcome = OutcomeCancelled
	default:
		e.Outcome, e.Detail = OutcomeError, err.Error()
	}
	if err == nil && x.id != x.root {
		x.rt.rec.later(e)
		return
	}
	// At once: a main workflow's end, with every event still waiting,
	// before DBOS records its outcome, so that whoever sees the run ended
	// (a trace following it) finds all of it in the ledger; a report
	// waiting for a stopped tree waits for a failed end (tree.go), and the
	// execution of a cancelled workflow ends with an error at its next
	// checkpoint, which DBOS refuses.
	if werr := x.rt.rec.now(x.ctx, e); werr != nil {
		fmt.Fprintf(x.rt.notices, "durlab: %v\n", werr)
	}
}

// outcomeOf classifies an attempt's error.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrInjected):
		return OutcomeInjected
	case errors.Is(err, store.ErrDuplicateUser):
		return OutcomeUnique
	}
	return OutcomeError
}

// attemptEvent is an event of attempt a.
func (a *Attempt) event(kind store.EventKind) store.Event {
	e := a.x.event(kind)
	e.Attempt, e.StepID, e.StepName, e.AttemptNo = a.id, a.stepID, a.step, a.N
	return e
}

// newAttempt starts attempt n at step stepID of x.
func (x *Execution) newAttempt(ctx context.Context, tx store.Tx, step string, stepID, n int) *Attempt {
	return &Attempt{x: x, ctx: ctx, tx: tx, N: n, id: uuid.NewString(), step: step, stepID: stepID}
}

// endEvent is the end of attempt a, which returned err.
func (a *Attempt) endEvent(err error) store.Event {
	e := a.event(store.AttemptEnded)
	e.Outcome = outcomeOf(err)
	if err != nil {
		e.Detail = err.Error()
	}
	return e
}

// faultEvent records a fault of kind at site, as decided.
func (x *Execution) faultEvent(kind, site, decided string, a *Attempt) store.Event {
	var e store.Event
	if a != nil {
		e = a.event(store.FaultInjected)
	} else {
		e = x.event(store.FaultInjected)
	}
	e.Outcome, e.Site, e.Detail = kind, site, decided
	return e
}

// stepIDNext is the DBOS step ID the next step of x will get.
func (x *Execution) stepIDNext() int {
	id, err := dbos.GetStepID(x.ctx)
	if err != nil {
		return -1
	}
	return id + 1
}

// stepIDOf is the DBOS step ID of the step whose body got ctx.
func stepIDOf(ctx context.Context, fallback int) int {
	if dctx, ok := ctx.(dbos.Context); ok {
		if id, err := dbos.GetStepID(dctx); err == nil {
			return id
		}
	}
	return fallback
}

// replayed records that x took step stepID from its checkpoint.
func (x *Execution) replayed(step string, stepID int) {
	e := x.event(store.StepReplayed)
	e.StepID, e.StepName, e.Outcome = stepID, step, OutcomeReplayed
	x.rt.rec.later(e)
	x.mu.Lock()
	x.replays++
	x.mu.Unlock()
}
