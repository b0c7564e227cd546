package lab

// The batch experiments (profile, dedup, exactly-once) share the Python
// ex5 shape: a main workflow runs --batches child workflows, each of
// --pages pages of --page-size users, pages numbered from 1 across batches.
// Every row carries the main workflow's ID, so one workflow's counts cover
// all its batches. The batches may go through a queue to worker processes
// (queues.go).

import (
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
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
	handles := make([]dbos.WorkflowHandle[int64], 0, in.Batches)
	for b := 1; b <= in.Batches; b++ {
		h, err := child.Run(x, BatchInput{Input: in, Root: x.id, Batch: b}, opts...)
		if err != nil {
			return err
		}
		handles = append(handles, h)
		if in.Queue == "" {
			if err := x.awaitBatch(in, crashPoints, b, h); err != nil {
				return err
			}
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
	if doneIn == x.number && b > x.rt.faults.CrashAfterBatch {
		x.MaybeCrash(x.rt.faults.CrashProb, fmt.Sprintf("after batch %d", b))
	}
	return nil
}

// Batch is one batch's pages, generated in steps, for the insert step of
// dedup and exactly-once that writes them at once.
type Batch struct {
	x          *Execution
	in         BatchInput
	pages      [][]fake.User // pages[i] is page in.PageNumber(i+1)
	analyzedAt time.Time     // once per execution of the batch, as in ex6
	attempts   int           // the last insert attempt this process made: 0 when it replayed the insert
}

// Inserted is the insert step's checkpointed output.
type Inserted struct {
	Rows     int `json:"rows"`
	Attempts int `json:"attempts"`
}

// GenerateBatch generates the batch's pages, in steps that fail with
// --gen-fail-prob.
func GenerateBatch(x *Execution, in BatchInput) (*Batch, error) {
	b := &Batch{x: x, in: in, analyzedAt: time.Now().UTC(), pages: make([][]fake.User, 0, in.Pages)}
	for p := 1; p <= in.Pages; p++ {
		users, err := GeneratePage(x, in.PageNumber(p), in.PageSize, x.rt.faults.GenFailProb)
		if err != nil {
			return nil, err
		}
		b.pages = append(b.pages, users)
	}
	return b, nil
}

// InsertRetries are the insert step's retries: --attempts attempts at a
// constant 0.1 s, as in ex6.
func (b *Batch) InsertRetries() Retries {
	return Retries{Attempts: max(b.x.rt.faults.Attempts, 1), Interval: 100 * time.Millisecond, Factor: 1}
}

// InsertName is the insert step's name.
func (b *Batch) InsertName() string { return fmt.Sprintf("insert_batch_%d", b.in.Batch) }

// Write writes every page of the batch in attempt a, and returns the rows.
func (b *Batch) Write(a *Attempt) (int, error) {
	b.attempts = a.N
	rows := 0
	for i, users := range b.pages {
		if err := a.InsertPage(store.Ledger, b.in.PageNumber(i+1), users, b.analyzedAt); err != nil {
			return rows, err
		}
		rows += len(users)
	}
	return rows, nil
}

// FailAfterWrite ends attempt a, which wrote rows: with --fail-prob it
// fails as if the write had been lost.
func (b *Batch) FailAfterWrite(a *Attempt, rows int) (Inserted, error) {
	msg := fmt.Sprintf("injected failure after inserting batch %d (attempt %d)", b.in.Batch, a.N)
	if err := a.FailIf(b.x.rt.faults.FailProb, msg, "insert", b.in.Batch, a.N); err != nil {
		return Inserted{}, err
	}
	return Inserted{Rows: rows, Attempts: a.N}, nil
}

// CrashAfterCommit is the crash point right after the batch's insert
// committed and before the workflow moves on (--commit-crash-prob),
// counted apart so the report can say what it did.
func (b *Batch) CrashAfterCommit() {
	where := fmt.Sprintf("after committing batch %d (attempt %d)", b.in.Batch, b.attempts)
	if p := b.x.rt.faults.CommitCrashProb; b.x.Decide(p, where) {
		b.x.crash(FaultCommitCrash, where, b.x.decidedBy(p))
	}
}
