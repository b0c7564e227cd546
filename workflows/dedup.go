package workflows

// dedup (ex6): a realistic failure. The insert step writes a whole batch,
// then fails AFTER the write (--fail-prob), and DBOS retries it: every
// retry writes the batch again. Crashes after the later batches make
// recovered executions write again too, under a new analyzed_at. The ledger
// table keeps every copy, and the window-function count (latest row per
// user and workflow) still comes to exactly the number of users.

import (
	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// batchFaultKnobs are the knobs of dedup and exactly-once.
var batchFaultKnobs = []lab.Knob{lab.KnobBatches, lab.KnobPages, lab.KnobPageSize, lab.KnobGenFailProb, lab.KnobFailProb,
	lab.KnobAttempts, lab.KnobCrashProb, lab.KnobCrashAfter, lab.KnobCommitCrashProb, lab.KnobMaxRecoveryAttempts,
	lab.KnobWait, lab.KnobQueue}

// batchFaultDefaults are the Python original's values.
var batchFaultDefaults = lab.Params{
	Input: lab.Input{Batches: 10, Pages: 10, PageSize: 10},
	Faults: lab.Faults{GenFailProb: 0.02, FailProb: 0.4, Attempts: 10, CrashProb: 0.1, CrashAfterBatch: 5,
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
fails AFTER the write with --fail-prob, up to --attempts attempts 0.1 s apart.
After each batch past --crash-after the process dies with --crash-prob. The
ledger table keeps every duplicate; the window-function count is exact.
Use 'durlab run dedup --until-success' to restart it after each crash.`,
	Knobs:    batchFaultKnobs,
	Defaults: batchFaultDefaults,
	Table:    store.Ledger,
	Main:     lab.NewWorkflow("users_workflow", dedupWorkflow),
	Children: []lab.ChildWorkflow{dedupBatch},
	Expected: func(in lab.Input) string { return lab.BatchesExpected(in) + " by the window-function count" },
	Judge:    judgeBatches,
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
		b, err := lab.GenerateBatch(x, in)
		if err != nil {
			return 0, err
		}
		out, err := lab.Step(x, b.InsertName(), func(a *lab.Attempt) (lab.Inserted, error) {
			rows, err := b.Write(a)
			if err != nil {
				return lab.Inserted{}, err
			}
			// Committed, not yet checkpointed: a crash here makes the
			// recovered execution insert the batch again.
			b.CrashAfterCommit()
			return b.FailAfterWrite(a, rows)
		}, b.InsertRetries())
		return int64(out.Rows), err
	})
}
