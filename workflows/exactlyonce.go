package workflows

// exactly-once: dedup's workload and faults, but the insert runs in
// dbos.RunAsTransaction on a DataSource over the store, so the rows and the
// step's completion record commit in one transaction. A failure after the
// write rolls the write back; a crash after the commit finds the step
// checkpointed. Rows equal users, with no duplicates, under any schedule.

import (
	"context"
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

const (
	exactlyOnceWorkflowName      = "exactly-once.users_workflow"
	exactlyOnceBatchWorkflowName = "exactly-once.users_batch_workflow"
)

var exactlyOnceExperiment = Experiment{
	Name:  "exactly-once",
	Seed:  "none (dedup with transactional inserts)",
	Short: "dedup's faults, but each insert commits with its checkpoint: no duplicates at all",
	Long: `The same workload, faults and seeds as dedup, but the insert step runs in
dbos.RunAsTransaction: the batch's rows and the step's checkpoint commit
together. Compare the two with 'durlab compare'.`,
	Knobs:    batchFaultKnobs,
	Defaults: batchFaultDefaults,
	Expected: func(p Params) string { return batchesExpected(p) + ", rows == unique users, 0 duplicates" },
	run:      runExactlyOnce,
}

func (l *Lab) exactlyOnceWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	return l.runBatches(ctx, in, l.exactlyOnceBatchWorkflow, true, l.ledger)
}

func (l *Lab) exactlyOnceBatchWorkflow(ctx dbos.Context, in BatchInput) (int64, error) {
	defer l.flush(ctx, in.Root)
	b, err := l.newBatchInsert(ctx, in)
	if err != nil {
		return 0, err
	}
	out, err := dbos.RunAsTransaction(ctx, l.dataSource, func(tctx context.Context, tx dbos.Tx) (insertOutput, error) {
		write := func(users []fake.User) error {
			for _, st := range l.ledger.InsertStatements(users, in.Root, b.analyzedAt) {
				if _, err := tx.Exec(tctx, st.SQL, st.Args...); err != nil {
					return err
				}
			}
			return nil
		}
		// Returning an error rolls the insert back with the transaction.
		return b.attempt(write, nil)
	}, l.insertStepOptions(in.Batch)...)
	if err != nil {
		return 0, err
	}
	// The same crash point as dedup's: the insert has committed, the
	// workflow has not moved on. Here the checkpoint committed with it.
	l.maybeCrashAfterCommit(ctx, in, b.execution, b.attempts)
	return int64(out.Rows), nil
}

func runExactlyOnce(ctx context.Context, l *Lab, p Params) (Report, error) {
	rep, err := runBatchExperiment(ctx, l, p, "exactly-once", exactlyOnceWorkflowName, l.exactlyOnceWorkflow, store.Ledger)
	if err != nil {
		return rep, err
	}
	rep.AsExpected = rep.AsExpected && rep.Rows == rep.UniqueUsers
	if rep.AsExpected {
		rep.Lesson = fmt.Sprintf("every insert committed together with its checkpoint: %d rows for %d users, 0 duplicates, after %d injected failures and %d crashes (%d right after an insert committed: its recovery found the step done)", rep.Rows, rep.UniqueUsers, rep.InjectedFailures, rep.Crashes, rep.CommitCrashes)
	} else if rep.Duplicates > 0 {
		rep.Lesson = fmt.Sprintf("%d duplicates: an insert and its checkpoint did not commit together", rep.Duplicates)
	}
	return rep, nil
}
