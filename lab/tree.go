package lab

// Stopping a run's tree. DBOS cancels a workflow by its status alone: a
// process running it finds out at its next checkpoint, and a step's
// retries run on in the meantime, each of dedup's writing its batch again.
// A parent's cancel does not reach its children unless they are cancelled
// with it (`durlab workflow cancel` does), and nothing stops the children
// of a main workflow that failed. So every attempt that is about to write
// first asks the system database whether its workflow and its run's main
// workflow still run: a batch whose own workflow was cancelled, or whose
// main workflow was cancelled, failed or finished, cancels itself and stops
// there, writing nothing more.
//
// That check is what lets a report of a stopped tree equal the store: an
// execution that passed it has its beginning in the ledger first
// (Execution.treeRuns flushes it), and records its end at once when it
// fails, as a stopped one does at its next checkpoint; so once no
// execution of the run is open in a live process, nothing more will be
// written (Runtime.awaitTreeStopped).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// ErrTreeStopped: the attempt's workflow, or its run's main workflow, no
// longer runs, and the attempt stopped before writing.
var ErrTreeStopped = errors.New("stopped before writing")

// stoppedInTransaction ends a transaction step whose tree stopped (or
// whose check failed) as DBOS ends one whose workflow changed hands: not
// retried, and recorded in neither database, so that a resume runs the
// step again (see Transaction).
type stoppedInTransaction struct{ err error }

func (e stoppedInTransaction) Error() string { return e.err.Error() }
func (e stoppedInTransaction) Unwrap() []error {
	return []error{e.err, ErrTreeStopped, dbos.ErrConflictingWorkflowID}
}

// retryable is the predicate of every step's retries: a stopped tree is
// not retried.
func retryable(err error) bool { return !errors.Is(err, ErrTreeStopped) }

// StoppedRoot: the statuses of a main workflow after which its batches
// stop. A dead-lettered one may be resumed, and it then awaits them.
func StoppedRoot(s dbos.WorkflowStatusType) bool {
	return s == dbos.WorkflowStatusCancelled || s == dbos.WorkflowStatusError || s == dbos.WorkflowStatusSuccess
}

// treeRuns returns ErrTreeStopped when x's workflow was cancelled or,
// for a child, its main workflow was cancelled, failed or finished; the
// child then cancels itself, so that it ends CANCELLED rather than PENDING
// and the main workflow's resume can resume it (cmd's workflow resume).
func (x *Execution) treeRuns(ctx context.Context) error {
	if !x.beginFlushed {
		// Before the check, so that a reader that saw the tree stopped
		// and this execution not open knows it will not write.
		if err := x.rt.rec.now(ctx); err != nil {
			return err
		}
		x.beginFlushed = true
	}
	if time.Since(x.treeRanAt) < treeFresh {
		return nil
	}
	// Bookkeeping of durlab's, not DBOS's: timed with the ledger's.
	start := time.Now()
	defer func() { x.rt.timings.ledger.Add(int64(time.Since(start))) }()
	ids := []string{x.id}
	if x.root != x.id {
		ids = append(ids, x.root)
	}
	sts, err := dbos.ListWorkflows(x.rt.dbos, dbos.WithFilterWorkflowIDs(ids...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return err
	}
	var self, root dbos.WorkflowStatusType
	var mine dbos.WorkflowStatus
	for _, st := range sts {
		if st.ID == x.id {
			self, mine = st.Status, st
		}
		if st.ID == x.root {
			root = st.Status
		}
	}
	me := x.rt.ExecutorID()
	switch {
	case self == dbos.WorkflowStatusCancelled:
		return fmt.Errorf("%w: workflow %s was cancelled", ErrTreeStopped, x.id)
	case mine.ID != "" && (self != dbos.WorkflowStatusPending || mine.ExecutorID != me || mine.Attempts != x.number):
		// Another process took this execution's workflow over (an
		// adopter, while this one was cut off): as the claim's regain
		// would find (adopt_fence.go), this process is fenced.
		x.rt.fence(fmt.Errorf("%w: workflow %s, which this process was running, became %s on executor %s: it was adopted",
			errFenced, x.id, self, mine.ExecutorID))
	case x.root != x.id && StoppedRoot(root):
		if err := dbos.CancelWorkflow(x.rt.dbos, x.id); err != nil {
			return err
		}
		return fmt.Errorf("%w: its run's main workflow %s is %s, so workflow %s cancelled itself", ErrTreeStopped, x.root, root, x.id)
	}
	x.treeRanAt = start
	return nil
}

// treeFresh: a check that found the tree running stands for the writes of
// the next 20 ms. A page's write takes about a millisecond on SQLite, and a
// status read as long: checking before each would double it; a cancel
// stops the writes at most 20 ms late.
const treeFresh = 20 * time.Millisecond

// awaitTreeStopped waits until no execution of the run whose main workflow
// is root is open in a live process: after its main workflow stopped, that
// is when the store holds all the run will ever write (see above). It says
// so once if it has to wait.
func (rt *Runtime) awaitTreeStopped(ctx context.Context, root string, status string) error {
	l := NewLiveness(ctx, rt.systemDB)
	defer l.Close()
	said := false
	for {
		if err := rt.rec.now(ctx); err != nil {
			return err
		}
		open, err := rt.store.OpenExecutions(ctx, root)
		if err != nil {
			return err
		}
		done, err := rt.endedWorkflows(open)
		if err != nil {
			return err
		}
		running := 0
		for _, e := range open {
			if !done[e.Workflow] && l.Alive(e.ExecutorID, e.PID, e.Host) {
				running++
			}
		}
		if running == 0 {
			return nil
		}
		if !said {
			fmt.Fprintf(rt.notices, "durlab: workflow %s is %s; waiting for %s of its run still running to stop before counting\n",
				root, status, Count(running, "execution", "executions"))
			said = true
		}
		select {
		case <-ctx.Done():
			return ErrInterrupted
		case <-time.After(treePoll):
		}
	}
}

// treePoll: awaitTreeStopped reads the run's open executions this often;
// each read scans the run's ledger.
const treePoll = 100 * time.Millisecond

// endedWorkflows tells which of the open executions' workflows DBOS has
// recorded an outcome for (SUCCESS, ERROR) or dead-lettered: their
// function returned, whatever the ledger has not been told yet. A
// CANCELLED one may still be mid-attempt, and its end is written at once.
func (rt *Runtime) endedWorkflows(open []store.OpenExecution) (map[string]bool, error) {
	if len(open) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(open))
	for _, e := range open {
		ids = append(ids, e.Workflow)
	}
	sts, err := dbos.ListWorkflows(rt.dbos, dbos.WithFilterWorkflowIDs(ids...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, err
	}
	done := map[string]bool{}
	for _, st := range sts {
		switch st.Status {
		case dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError, dbos.WorkflowStatusMaxRecoveryAttemptsExceeded:
			done[st.ID] = true
		}
	}
	return done, nil
}
