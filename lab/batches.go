package lab

// The batch experiments (profile, dedup, exactly-once) share the Python
// ex5 shape: a main workflow runs --batches child workflows, each of
// --pages pages of --page-size users, pages numbered from 1 across batches.
// Every row carries the main workflow's ID, so one workflow's counts cover
// all its batches. The batches may go through a queue to worker processes
// (queues.go).

import (
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

// CrashPoints says whether RunBatches crashes after each batch past
// --crash-after with probability --crash-prob.
type CrashPoints bool

const (
	WithCrashPoints CrashPoints = true
	NoCrashPoints   CrashPoints = false
)

// RunBatches is the body of a batch experiment's main workflow: it runs the
// child batch workflows one after the other, or enqueues them all on
// in.Queue for worker processes, and, with crashPoints, crashes after each
// batch past --crash-after with probability --crash-prob.
//
// A crash point fires only after a batch that this execution ran. A
// recovered execution replays the batches an earlier one finished, and the
// Python original passes their crash points again; past a few dozen batches
// a recovery then almost never gets through (0.9^95 at 100 batches) and DBOS
// dead-letters the workflow, which teaches nothing about the workload. So a
// step after each batch records the execution that saw it done: replayed,
// it returns an earlier execution's number. The step is there whatever the
// knobs say, so that every execution has the same sequence of steps.
func RunBatches(x *Execution, in Input, child *Workflow[BatchInput, int64], crashPoints CrashPoints) error {
	var opts []dbos.WorkflowOption
	if in.Queue != "" {
		q, err := x.rt.batchQueue(in.Queue)
		if err != nil {
			return err
		}
		opts = append(opts, dbos.WithQueue(q))
	}
	// Only queued batches are awaited after all are enqueued: one at a time,
	// a batch's handle is dropped once it returned, so that memory does not
	// grow with --batches.
	var handles []dbos.WorkflowHandle[int64]
	for b := 1; b <= in.Batches; b++ {
		h, err := child.Run(x, BatchInput{Input: in, Root: x.id, Batch: b}, opts...)
		if err != nil {
			return err
		}
		if in.Queue != "" {
			handles = append(handles, h)
			continue
		}
		if err := x.awaitBatch(in, crashPoints, b, h); err != nil {
			return err
		}
	}
	if in.Queue != "" {
		for i, h := range handles {
			if err := x.awaitBatch(in, crashPoints, i+1, h); err != nil {
				return err
			}
		}
	}
	return nil
}

func (x *Execution) awaitBatch(in Input, crashPoints CrashPoints, b int, h dbos.WorkflowHandle[int64]) error {
	if _, err := h.GetResult(dbos.WithHandlePollingInterval(pollInterval)); err != nil {
		return fmt.Errorf("batch %d: %w", b, err)
	}
	x.point(Named(fmt.Sprintf("return-batch-%d", b)))
	if x.rt.progress != nil {
		x.rt.progress(b, in.Batches)
	}
	if crashPoints == NoCrashPoints {
		return nil
	}
	doneIn, err := Step(x, fmt.Sprintf("batch_%d_done", b), func(*Attempt) (int, error) { return x.number, nil }, Retries{})
	if err != nil {
		return err
	}
	// The point is reached by every execution, so that --faults and
	// explore can crash there whatever --crash-after says; a random crash
	// hits only past --crash-after, and only in the execution that ran
	// batch_N_done, or a recovered execution would die at the same place.
	p := x.rt.faults.CrashProb
	if doneIn != x.number || b <= x.rt.faults.CrashAfterBatch {
		p = 0
	}
	x.CrashPoint(Named(fmt.Sprintf("after-batch-%d", b)), p, fmt.Sprintf("after batch %d", b))
	return nil
}
