package workflows

// dedup (ex6): a realistic failure. The insert step writes a whole batch,
// then fails AFTER the write (--fail-prob), and DBOS retries it: every
// retry writes the batch again. Crashes after the later batches make
// recovered executions write again too, under a new analyzed_at. The ledger
// table keeps every copy, and the window-function count (latest row per
// user and workflow) still comes to exactly the number of users.

import (
	"context"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

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
	_, execution, err := l.workflowContext(ctx)
	if err != nil {
		return 0, err
	}
	defer l.flush(ctx, in.Root)
	analyzedAt := time.Now().UTC() // once per execution of the batch, as in ex6
	pages, err := l.generateBatch(ctx, in, execution)
	if err != nil {
		return 0, err
	}
	attempt := 0
	out, err := dbos.RunAsStep(ctx, func(sctx context.Context) (insertOutput, error) {
		attempt++
		l.count(in.Root, func(s *store.Stats) { s.StepAttempts++ })
		rows := 0
		for _, users := range pages {
			if err := l.timings.timeStore(func() error { return l.ledger.InsertPage(sctx, users, in.Root, analyzedAt) }); err != nil {
				return insertOutput{}, err
			}
			rows += len(users)
		}
		// Committed, not yet checkpointed: a crash here makes the
		// recovered execution insert the batch again.
		l.maybeCrashAfterCommit(sctx, in, execution, attempt)
		if l.failsAfterWrite(in, execution, attempt) {
			return insertOutput{}, fmt.Errorf("injected failure after inserting batch %d (attempt %d)", in.Batch, attempt)
		}
		return insertOutput{Rows: rows, Attempts: attempt}, nil
	}, l.insertStepOptions(in.Batch)...)
	return int64(out.Rows), err
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

func runDedup(ctx context.Context, l *Lab, p Params) (Report, error) {
	return runBatchExperiment(ctx, l, p, "dedup", dedupWorkflowName, l.dedupWorkflow, store.Ledger)
}
