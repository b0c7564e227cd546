package lab

// Environment faults: a database that is unreachable, corrupt, full or
// read-only (store.Classify). None of them is the workflow's fault, so none
// may fail it for good: a step that returned one to DBOS would be
// checkpointed as failed, and its workflow set to ERROR, never to run
// again. So every store operation of a run goes through endure, beneath
// the steps:
//
//   - a fault that may pass (an outage, a busy file) is waited out, the
//     operation tried again with backoff, for up to the outage timeout
//     counted from the start of the outage; a page's transaction is
//     retried, not the step, so the attempt, its fault decisions and its
//     ledger record stay one;
//   - any other fault, or an outage that outlasts the timeout, ends the
//     process at once with one line naming the database and ExitEnvironment,
//     the way an injected crash ends it: DBOS records nothing, the
//     workflow stays PENDING, and the next run (durlab run waits for the
//     database) recovers it from its last checkpoint.
//
// The writes of a dbos.RunAsTransaction step are the exception: DBOS
// itself retries their transaction on a lost connection, with a fresh one,
// so a fault that may pass is handed back to it, until the outage outlasts
// the timeout.

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durlab/durlab/store"
)

const (
	// ExitEnvironment is the exit status of a process that stopped on an
	// environment fault of one of its databases.
	ExitEnvironment = 4
	// DefaultOutageTimeout is how long an outage is waited out by default.
	DefaultOutageTimeout = 60 * time.Second
	// outageFirstWait and outageMaxWait bound the backoff between tries.
	outageFirstWait = 500 * time.Millisecond
	outageMaxWait   = 5 * time.Second
	// envRecordTimeout bounds the last record of a process that stops on
	// a fault: a database that is not there is not waited for again.
	envRecordTimeout = time.Second
)

// environment is what endure needs: the outage timeout, the clock of the
// outage under way, and how the process ends.
type environment struct {
	timeout  time.Duration
	raw      string // the store's DSN, named by its faults
	systemDB string // the system database, redacted, named when the claim is lost too long
	notices  func(format string, args ...any)
	stop     func(err error) // ends the process; does not return

	since   atomic.Int64 // UnixNano of the start of the outage under way; 0: none
	mu      sync.Mutex
	saidFor int64 // the outage whose start was told
}

// endure runs op, waiting out a fault that may pass; see the file comment.
// ctx's end or the runtime's stop end the wait with the fault.
func (e *environment) endure(ctx context.Context, stopping <-chan struct{}, op func() error) error {
	return e.endureWrite(ctx, stopping, op, nil)
}

// endureWrite is endure for a write that carries ledger events: one
// whose connection was lost after its statement was sent may have
// committed, and writing it again would write it twice. So before it is
// tried again, the ledger is asked for its first event, which commits with
// it: there, the write is done.
func (e *environment) endureWrite(ctx context.Context, stopping <-chan struct{}, op func() error, committed func() (bool, error)) error {
	wait := outageFirstWait
	maybe := false // the last try may have committed
	for {
		var err error
		done := false
		if maybe {
			done, err = committed()
		}
		if err == nil && !done {
			err = op()
			maybe = committed != nil && store.MaybeCommitted(err)
		}
		f := store.Classify(err)
		if f == store.FaultNone {
			e.reachable()
			return err
		}
		env := store.Environment("store", e.raw, err)
		if !f.Passes() {
			e.stop(env)
		}
		since := e.outage()
		left := e.timeout - time.Since(since)
		if left <= 0 {
			e.stop(env)
		}
		e.tell(since, env, left)
		select {
		case <-time.After(min(wait, left)):
		case <-ctx.Done():
			return err
		case <-stopping:
			return err
		}
		wait = min(2*wait, outageMaxWait)
	}
}

// inTransaction handles the fault of a write in a dbos.RunAsTransaction
// transaction: see the file comment.
func (e *environment) inTransaction(err error) error {
	f := store.Classify(err)
	if f == store.FaultNone {
		if err == nil {
			e.reachable()
		}
		return err
	}
	env := store.Environment("store", e.raw, err)
	if !f.Passes() || time.Since(e.outage()) >= e.timeout {
		e.stop(env)
	}
	return err // DBOS retries the transaction; the chain keeps the driver's type
}

// outage is the start of the outage under way, starting one now if none is.
func (e *environment) outage() time.Time {
	now := time.Now().UnixNano()
	e.since.CompareAndSwap(0, now)
	return time.Unix(0, e.since.Load())
}

// reachable ends the outage under way, telling its end if its start was told.
func (e *environment) reachable() {
	since := e.since.Swap(0)
	if since == 0 {
		return
	}
	e.mu.Lock()
	said := e.saidFor == since
	e.mu.Unlock()
	if said {
		e.notices("the store is reachable again, after %s", time.Since(time.Unix(0, since)).Round(100*time.Millisecond))
	}
}

// tell says, once per outage, that the process waits it out.
func (e *environment) tell(since time.Time, env error, left time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.saidFor == since.UnixNano() {
		return
	}
	e.saidFor = since.UnixNano()
	e.notices("%v; waiting for it, up to %s more (--outage-timeout)", env, left.Round(time.Second))
}

// claimCheck is how often watchClaim looks at the claim.
const claimCheck = 250 * time.Millisecond

// watchClaim ends the process when its executor claim stays lost for
// longer than the outage timeout. The claim is lost when the system
// database is: then DBOS waits at its next checkpoint, retrying without
// end, and the store's writes wait at the gate (adopt_fence.go), so
// nothing else would ever give up.
func (rt *Runtime) watchClaim(env *environment) {
	var lostSince time.Time
	rt.every(claimCheck, func() {
		select {
		case <-rt.claim.held():
			lostSince = time.Time{}
			return
		default:
		}
		if lostSince.IsZero() {
			lostSince = time.Now()
		}
		if lost := time.Since(lostSince); lost >= env.timeout {
			rt.stopOnFault(&store.EnvironmentError{DB: env.systemDB, Role: "system database", Fault: store.FaultUnreachable,
				Err: fmt.Errorf("the session that holds this process's executor claim has been lost for %s", lost.Round(time.Second))})
		}
	})
}

// stopOnFault ends the process on an environment fault: one line naming
// the database, the ledger's record of what it stops if the ledger can
// take it at once, and ExitEnvironment. Like an injected crash it runs no
// clean-up: DBOS's shutdown would record nothing better, and its workflows
// must stay PENDING for the next run.
func (rt *Runtime) stopOnFault(err error) {
	rt.deathMu.Lock()
	if rt.dying {
		rt.deathMu.Unlock()
		select {} // another goroutine is ending the process
	}
	rt.dying = true
	rt.deathMu.Unlock()
	fmt.Fprintf(rt.notices, "durlab: %v; this process stops, and its workflows stay PENDING for the next run (exit %d)\n", err, ExitEnvironment)
	rt.recordFault(err)
	os.Exit(ExitEnvironment)
}

// recordFault ends, in the ledger, the executions and attempts the fault
// stops, if the store takes the record at once and the claim is held (a
// process that lost it writes nothing: adopt_fence.go). Otherwise they stay
// open, and the reader counts them as killed.
func (rt *Runtime) recordFault(cause error) {
	fs, ok := rt.store.(fencedStore)
	if !ok {
		return
	}
	select {
	case <-fs.claim.held():
	default:
		return
	}
	rt.runningMu.Lock()
	var events []store.Event
	for x := range rt.running {
		x.mu.Lock()
		if a := x.current; a != nil && a.tx == nil {
			e := a.event(store.AttemptEnded)
			e.Outcome, e.Detail = OutcomeEnvironment, cause.Error()
			events = append(events, append(a.unwritten(), e)...)
		}
		x.mu.Unlock()
		e := x.event(store.ExecutionEnded)
		e.Outcome, e.Detail = OutcomeEnvironment, cause.Error()
		events = append(events, e)
	}
	rt.runningMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), envRecordTimeout)
	defer cancel()
	// The inner store: the fenced one would wait out the fault again.
	fs.Store.AppendEvents(ctx, nil, append(rt.rec.take(), events...))
}
