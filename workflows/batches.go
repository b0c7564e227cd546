package workflows

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

// The batch experiments (profile, dedup, exactly-once) share the seed's ex5
// shape: a main workflow runs --batches child workflows, each of --pages
// pages of --page-size users, pages numbered from 1 across batches. Every
// row carries the main workflow's ID, so one workflow's counts cover all its
// batches.

// BatchInput is a batch child workflow's input.
type BatchInput struct {
	Input
	Root  string `json:"root"`  // the main workflow's ID
	Batch int    `json:"batch"` // 1-based
}

// role is the batch's place in the run, which fault decisions use in place
// of its workflow ID so that a seed replays in a new workflow.
func (in BatchInput) role() string { return fmt.Sprintf("batch-%d", in.Batch) }

// pageNumber numbers pages from 1 across batches, as the seed does.
func (in BatchInput) pageNumber(p int) int { return p + (in.Batch-1)*in.Pages }

// pageOutput is the generate step's checkpointed output. Attempts is read
// back by `durlab workflow steps`: DBOS itself does not record the attempts
// of a step that succeeded.
type pageOutput struct {
	Page     int         `json:"page"`
	Attempts int         `json:"attempts"`
	Users    []fake.User `json:"users"`
}

// insertOutput is the insert step's checkpointed output.
type insertOutput struct {
	Rows     int `json:"rows"`
	Attempts int `json:"attempts"`
}

// Timings accumulate where the time of a run went, for profile's breakdown.
type Timings struct {
	generate atomic.Int64 // ns in fake generation
	store    atomic.Int64 // ns in store writes
}

// Generate is the time spent generating fake users.
func (t *Timings) Generate() time.Duration { return time.Duration(t.generate.Load()) }

// Store is the time spent writing to the store.
func (t *Timings) Store() time.Duration { return time.Duration(t.store.Load()) }

func (t *Timings) timeGenerate(page, size int) []fake.User {
	start := time.Now()
	users := fake.Page(page, size)
	t.generate.Add(int64(time.Since(start)))
	return users
}

func (t *Timings) timeStore(f func() error) error {
	start := time.Now()
	err := f()
	t.store.Add(int64(time.Since(start)))
	return err
}

// generateStep generates one page as a step. With failProb > 0 it fails
// with that probability, and DBOS retries it (3 attempts, DBOS's default
// intervals, as the Python original's retries_allowed step).
func (l *Lab) generateStep(ctx dbos.Context, in BatchInput, execution, page int, failProb float64) (pageOutput, error) {
	attempt := 0
	opts := []dbos.StepOption{dbos.WithStepName(fmt.Sprintf("generate_page_%d", page))}
	if failProb > 0 {
		opts = append(opts, dbos.WithStepMaxRetries(2))
	}
	return dbos.RunAsStep(ctx, func(context.Context) (pageOutput, error) {
		attempt++
		l.count(in.Root, func(s *store.Stats) { s.StepAttempts++ })
		if failProb > 0 && chance(in.Seed, in.role(), execution, "generate", page, attempt) < failProb {
			l.count(in.Root, func(s *store.Stats) { s.InjectedFailures++ })
			return pageOutput{}, fmt.Errorf("injected failure generating page %d (attempt %d)", page, attempt)
		}
		return pageOutput{Page: page, Attempts: attempt, Users: l.timings.timeGenerate(page, in.PageSize)}, nil
	}, opts...)
}

// generateBatch runs a batch's generate steps, failing with --gen-fail-prob,
// and returns its pages: the batch the insert step of dedup and
// exactly-once writes at once.
func (l *Lab) generateBatch(ctx dbos.Context, in BatchInput, execution int) ([][]fake.User, error) {
	pages := make([][]fake.User, 0, in.Pages)
	for p := 1; p <= in.Pages; p++ {
		out, err := l.generateStep(ctx, in, execution, in.pageNumber(p), l.faults.GenFailProb)
		if err != nil {
			return nil, err
		}
		pages = append(pages, out.Users)
	}
	return pages, nil
}

// mainExecution is one execution of a batch experiment's main workflow.
type mainExecution struct {
	wfID        string
	execution   int
	crashPoints bool // the experiment has crash points after its batches
}

// batchInsert is the write of one batch in dedup and exactly-once, with
// what its attempts share, however DBOS runs them (a step, a transaction).
type batchInsert struct {
	l          *Lab
	in         BatchInput
	execution  int
	pages      [][]fake.User
	analyzedAt time.Time // once per execution of the batch, as in ex6
	attempts   int       // DBOS calls the same closure for every retry in this process
}

// newBatchInsert generates the batch's pages, in steps, for its insert.
func (l *Lab) newBatchInsert(ctx dbos.Context, in BatchInput) (*batchInsert, error) {
	_, execution, err := l.workflowContext(ctx)
	if err != nil {
		return nil, err
	}
	b := &batchInsert{l: l, in: in, execution: execution, analyzedAt: time.Now().UTC()}
	b.pages, err = l.generateBatch(ctx, in, execution)
	return b, err
}

// attempt is one attempt at the insert: write each page, then, after
// afterWrite (if set), fail with --fail-prob as if the write had been lost.
func (b *batchInsert) attempt(write func([]fake.User) error, afterWrite func()) (insertOutput, error) {
	l := b.l
	b.attempts++
	l.count(b.in.Root, func(s *store.Stats) { s.StepAttempts++ })
	rows := 0
	err := l.timings.timeStore(func() error {
		for _, users := range b.pages {
			if err := write(users); err != nil {
				return err
			}
			rows += len(users)
		}
		return nil
	})
	if err != nil {
		return insertOutput{}, err
	}
	if afterWrite != nil {
		afterWrite()
	}
	if l.failsAfterWrite(b.in, b.execution, b.attempts) {
		return insertOutput{}, fmt.Errorf("injected failure after inserting batch %d (attempt %d)", b.in.Batch, b.attempts)
	}
	return insertOutput{Rows: rows, Attempts: b.attempts}, nil
}

// failsAfterWrite decides, and counts, a failure injected after a write.
func (l *Lab) failsAfterWrite(in BatchInput, execution, attempt int) bool {
	if l.faults.FailProb > 0 && chance(in.Seed, in.role(), execution, "insert", in.Batch, attempt) < l.faults.FailProb {
		l.count(in.Root, func(s *store.Stats) { s.InjectedFailures++ })
		return true
	}
	return false
}

// insertStepOptions: --attempts attempts at a constant 0.1 s, as in ex6.
func (l *Lab) insertStepOptions(batch int) []dbos.StepOption {
	return []dbos.StepOption{
		dbos.WithStepName(fmt.Sprintf("insert_batch_%d", batch)),
		dbos.WithStepMaxRetries(max(l.faults.Attempts, 1) - 1),
		dbos.WithStepBaseInterval(100 * time.Millisecond),
		dbos.WithStepBackoffFactor(1),
	}
}

// runBatches is the main workflow of the batch experiments: it runs the
// batch children one after the other, or enqueues them all on in.Queue for
// worker processes, and crashes after each batch past --crash-after with
// probability --crash-prob. It returns the counts of what its batches wrote.
//
// A crash point fires only after a batch that this execution ran. A
// recovered execution replays the batches an earlier one finished, and the
// Python original passes their crash points again; past a few dozen batches
// a recovery then almost never gets through (0.9^95 at 100 batches) and DBOS
// dead-letters the workflow, which teaches nothing about the workload. So a
// step after each batch records the execution that saw it done: replayed,
// it returns an earlier execution's number. The step is there whatever the
// knobs say, so that every execution has the same sequence of steps.
func (l *Lab) runBatches(ctx dbos.Context, in Input, child dbos.Workflow[BatchInput, int64], crashPoints bool, t store.Table) (store.Counts, error) {
	wfID, execution, err := l.workflowContext(ctx)
	if err != nil {
		return store.Counts{}, err
	}
	defer l.flush(ctx, wfID)
	run := mainExecution{wfID: wfID, execution: execution, crashPoints: crashPoints}
	var opts []dbos.WorkflowOption
	if in.Queue != "" {
		q, err := l.batchQueue(in.Queue)
		if err != nil {
			return store.Counts{}, err
		}
		opts = append(opts, dbos.WithQueue(q))
	}
	handles := make([]dbos.WorkflowHandle[int64], 0, in.Batches)
	for b := 1; b <= in.Batches; b++ {
		h, err := dbos.RunWorkflow(ctx, child, BatchInput{Input: in, Root: wfID, Batch: b}, opts...)
		if err != nil {
			return store.Counts{}, err
		}
		handles = append(handles, h)
		if in.Queue == "" {
			if err := l.awaitBatch(ctx, in, run, b, h); err != nil {
				return store.Counts{}, err
			}
		}
	}
	if in.Queue != "" {
		for i, h := range handles {
			if err := l.awaitBatch(ctx, in, run, i+1, h); err != nil {
				return store.Counts{}, err
			}
		}
	}
	return l.countStep(ctx, t, wfID)
}

func (l *Lab) awaitBatch(ctx dbos.Context, in Input, run mainExecution, b int, h dbos.WorkflowHandle[int64]) error {
	if _, err := h.GetResult(dbos.WithHandlePollingInterval(pollInterval)); err != nil {
		return fmt.Errorf("batch %d: %w", b, err)
	}
	if l.progress != nil {
		l.progress(b, in.Batches)
	}
	if !run.crashPoints {
		return nil
	}
	doneIn, err := dbos.RunAsStep(ctx, func(context.Context) (int, error) { return run.execution, nil },
		dbos.WithStepName(fmt.Sprintf("batch_%d_done", b)))
	if err != nil {
		return err
	}
	if doneIn == run.execution && b > l.faults.CrashAfterBatch {
		l.maybeCrash(ctx, in.Seed, l.faults.CrashProb, run.wfID, mainRole, run.execution, fmt.Sprintf("after batch %d", b))
	}
	return nil
}

// batchesExpected is the Expected text of the batch experiments.
func batchesExpected(p Params) string {
	return fmt.Sprintf("%d unique users (%d batches x %d pages x %d)", p.Input.Users(), p.Batches, p.Pages, p.PageSize)
}

// runBatchExperiment starts or attaches to the main workflow of a batch
// experiment writing to the table of variant v, and reports on it.
func runBatchExperiment(ctx context.Context, l *Lab, p Params, exp, name string, wf dbos.Workflow[Input, store.Counts], v store.Variant) (Report, error) {
	rep, err := startAndReport(ctx, l, p, exp, name, wf, v)
	if err != nil {
		return rep, err
	}
	result, want := rep.Result, rep.input.Users()
	rep.AsExpected = rep.Status == string(dbos.WorkflowStatusSuccess) && result == want && rep.UniqueUsers == want
	switch {
	case deadLetterLesson(rep) != "":
		rep.Lesson = deadLetterLesson(rep)
	case !rep.AsExpected:
		rep.Lesson = fmt.Sprintf("the workflow ended %s with %d of %d users", rep.Status, result, want)
	case rep.Duplicates > 0 && rep.CommitCrashes > 0:
		rep.Lesson = fmt.Sprintf("%d duplicate rows, from retried inserts and from %d crash(es) right after an insert committed (the recovery ran the insert again), yet the window-function count is exactly %d", rep.Duplicates, rep.CommitCrashes, result)
	case rep.Duplicates > 0:
		rep.Lesson = fmt.Sprintf("%d duplicate rows from retried inserts and recovered executions, yet the window-function count is exactly %d", rep.Duplicates, result)
	default:
		rep.Lesson = fmt.Sprintf("no duplicates this time: rows, unique users and the window-function count all equal %d", result)
	}
	return rep, nil
}
