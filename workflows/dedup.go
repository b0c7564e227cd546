package workflows

// dedup (ex6): a realistic failure. The insert step writes a whole batch,
// then fails AFTER the write (--fail-prob), and DBOS retries it: every
// retry writes the batch again. Crashes after the later batches make
// recovered executions write again too, under a new analyzed_at. The ledger
// table keeps every copy, and the window-function count (latest row per
// user and workflow) still comes to exactly the number of users.

import (
	"context"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

const (
	dedupWorkflowName      = "dedup.users_workflow"
	dedupBatchWorkflowName = "dedup.users_batch_workflow"
)

var batchFaultKnobs = []Knob{KnobBatches, KnobPages, KnobPageSize, KnobGenFailProb, KnobFailProb, KnobAttempts,
	KnobCrashProb, KnobCrashAfter, KnobCommitCrashProb, KnobMaxRecoveryAttempts, KnobWait, KnobQueue}

// batchFaultDefaults are the Python original's values.
var batchFaultDefaults = Params{
	Input: Input{Batches: 10, Pages: 10, PageSize: 10},
	Faults: Faults{GenFailProb: 0.02, FailProb: 0.4, Attempts: 10, CrashProb: 0.1, CrashAfterBatch: 5,
		MaxRecoveryAttempts: 100},
	Wait: defaultWait,
}

var dedupExperiment = Experiment{
	Name:  "dedup",
	Seed:  "ex6",
	Short: "Inserts that fail after writing, and crashes: duplicates, counted away by a window function",
	Long: `A main workflow runs batch child workflows. Each batch generates its pages in
steps (failing with --gen-fail-prob), then one insert step writes the batch and
fails AFTER the write with --fail-prob, up to --attempts attempts 0.1 s apart.
After each batch past --crash-after the process dies with --crash-prob. The
ledger table keeps every duplicate; the window-function count is exact.
Use 'durlab run dedup --until-success' to restart it after each crash.`,
	Knobs:    batchFaultKnobs,
	Defaults: batchFaultDefaults,
	Expected: func(p Params) string { return batchesExpected(p) + " by the window-function count" },
	run:      runDedup,
}

func (l *Lab) dedupWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	return l.runBatches(ctx, in, l.dedupBatchWorkflow, true, l.ledger)
}

func (l *Lab) dedupBatchWorkflow(ctx dbos.Context, in BatchInput) (int64, error) {
	defer l.flush(ctx, in.Root)
	b, err := l.newBatchInsert(ctx, in)
	if err != nil {
		return 0, err
	}
	out, err := dbos.RunAsStep(ctx, func(sctx context.Context) (insertOutput, error) {
		write := func(users []fake.User) error { return l.ledger.InsertPage(sctx, users, in.Root, b.analyzedAt) }
		// Committed, not yet checkpointed: a crash here makes the
		// recovered execution insert the batch again.
		return b.attempt(write, func() { l.maybeCrashAfterCommit(sctx, in, b.execution, b.attempts) })
	}, l.insertStepOptions(in.Batch)...)
	return int64(out.Rows), err
}

func runDedup(ctx context.Context, l *Lab, p Params) (Report, error) {
	return runBatchExperiment(ctx, l, p, "dedup", dedupWorkflowName, l.dedupWorkflow, store.Ledger)
}
