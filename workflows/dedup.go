package workflows

// dedup (ex6): a realistic failure. The insert step writes a whole batch,
// then fails AFTER the write (--fail-prob), and DBOS retries it: every
// retry writes the batch again. Crashes after the later batches make
// recovered executions write again too, under a new analyzed_at. The ledger
// table keeps every copy, and the window-function count (latest row per
// user and workflow) still comes to exactly the number of users.

import (
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// batchFaultKnobs are the knobs of dedup and exactly-once.
var batchFaultKnobs = []lab.Knob{lab.KnobBatches, lab.KnobPages, lab.KnobPageSize, lab.KnobGenFailProb, lab.KnobFailProb,
	lab.KnobAttempts, lab.KnobBackoff, lab.KnobCrashProb, lab.KnobCrashAfter, lab.KnobCommitCrashProb, lab.KnobMaxRecoveryAttempts,
	lab.KnobWait, lab.KnobQueue}

// batchFaultDefaults are the Python original's values.
var batchFaultDefaults = lab.Params{
	Input: lab.Input{Batches: 10, Pages: 10, PageSize: 10},
	Faults: lab.Faults{GenFailProb: 0.02, FailProb: 0.4, Attempts: 10, Backoff: insertBackoff, CrashProb: 0.1, CrashAfterBatch: 5,
		MaxRecoveryAttempts: 100},
	Wait: lab.DefaultWait,
}

var dedupBatch = lab.NewWorkflow("users_batch_workflow", dedupBatchWorkflow)

// Dedup is the experiment's descriptor.
var Dedup = &lab.Experiment{
	Name:   "dedup",
	Origin: "ex6",
	Short:  "Inserts that fail after writing, and crashes: duplicates, counted away by a window function",
	Long: `A main workflow runs batch child workflows. Each batch generates its pages in
steps (failing with --gen-fail-prob), then one insert step writes the batch and
fails AFTER the write with --fail-prob, up to --attempts attempts, the first
retry 0.1 s later and each wait --backoff times the last: 0.1 s apart by
default; --backoff 0.1 is ex6's rate (0.1 s, 0.01 s, 0.001 s, ...).
After each batch past --crash-after the process dies with --crash-prob. The
ledger table keeps every duplicate; the window-function count is exact.
Use 'durlab run dedup --until-success' to restart it after each crash.`,
	Knobs:       batchFaultKnobs,
	Defaults:    batchFaultDefaults,
	Table:       store.Ledger,
	Main:        lab.NewWorkflow("users_workflow", dedupWorkflow),
	Children:    []lab.ChildWorkflow{dedupBatch},
	PageNumbers: lab.BatchPages,
	Guarantee:   lab.Guarantee{Status: "SUCCESS", AllUsers: true, LatestExact: true},
	Expected:    func(in lab.Input) string { return lab.BatchesExpected(in) + " by the window-function count" },
	Judge:       judgeBatches,
}

func dedupWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		if err := lab.RunBatches(x, in, dedupBatch, lab.WithCrashPoints); err != nil {
			return store.Counts{}, err
		}
		return x.Count(store.Ledger)
	})
}

func dedupBatchWorkflow(ctx dbos.Context, in lab.BatchInput) (int64, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (int64, error) {
		b, err := generateBatch(x, in)
		if err != nil {
			return 0, err
		}
		out, err := lab.Step(x, b.insertName(), func(a *lab.Attempt) (inserted, error) {
			rows, err := b.write(a)
			if err != nil {
				return inserted{}, err
			}
			// Committed, not yet checkpointed: a crash here makes the
			// recovered execution insert the batch again.
			b.crashAfterCommit()
			return b.failAfterWrite(a, rows)
		}, b.insertRetries())
		return int64(out.Rows), err
	})
}

// batch is one batch's pages, generated in steps, for the insert step that
// writes them at once (exactly-once's too).
type batch struct {
	x          *lab.Execution
	in         lab.BatchInput
	pages      [][]fake.User // pages[i] is page in.PageNumber(i+1)
	analyzedAt time.Time     // once per execution of the batch, as in ex6
	attempts   int           // the last insert attempt this process made: 0 when it replayed the insert
}

// inserted is the insert step's checkpointed output.
type inserted struct {
	Rows     int `json:"rows"`
	Attempts int `json:"attempts"`
}

// generateBatch generates the batch's pages, in steps that fail with
// --gen-fail-prob.
func generateBatch(x *lab.Execution, in lab.BatchInput) (*batch, error) {
	b := &batch{x: x, in: in, analyzedAt: time.Now().UTC(), pages: make([][]fake.User, 0, in.Pages)}
	for p := 1; p <= in.Pages; p++ {
		users, err := lab.GeneratePage(x, in.PageNumber(p), in.PageSize, x.Faults().GenFailProb)
		if err != nil {
			return nil, err
		}
		b.pages = append(b.pages, users)
	}
	return b, nil
}

func (b *batch) insertName() string { return fmt.Sprintf("insert_batch_%d", b.in.Batch) }

// insertBackoff is the default --backoff: retries 0.1 s apart. ex6's
// backoff_rate is 0.1 (0.1 s, 0.01 s, 0.001 s, ...), which --backoff 0.1
// gives; it is not the default because, with crashes right after a commit,
// the attempt ledger then misreads some executions (retries microseconds
// apart): see chaos/ledger_test.go with --backoff 0.1.
const insertBackoff = 1.0

// insertRetries: --attempts attempts, 0.1 s then --backoff times the last
// wait. A process without the knob (a worker) takes the default.
func (b *batch) insertRetries() lab.Retries {
	factor := b.x.Faults().Backoff
	if factor <= 0 {
		factor = insertBackoff
	}
	return lab.Retries{Attempts: max(b.x.Faults().Attempts, 1), Interval: 100 * time.Millisecond, Factor: factor}
}

// write writes every page of the batch in attempt a, and returns the rows.
func (b *batch) write(a *lab.Attempt) (int, error) {
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

// failAfterWrite ends attempt a, which wrote rows: with --fail-prob it
// fails as if the write had been lost.
func (b *batch) failAfterWrite(a *lab.Attempt, rows int) (inserted, error) {
	msg := fmt.Sprintf("injected failure after inserting batch %d (attempt %d)", b.in.Batch, a.N)
	if err := a.FailIf(b.x.Faults().FailProb, msg, "insert", b.in.Batch, a.N); err != nil {
		return inserted{}, err
	}
	return inserted{Rows: rows, Attempts: a.N}, nil
}

// crashAfterCommit is the crash point right after the batch's insert
// committed and before the workflow moves on (--commit-crash-prob).
func (b *batch) crashAfterCommit() {
	b.x.CommitCrashPoint(lab.In(b.insertName(), b.attempts, "after-commit"), b.x.Faults().CommitCrashProb,
		fmt.Sprintf("after committing batch %d (attempt %d)", b.in.Batch, b.attempts))
}
