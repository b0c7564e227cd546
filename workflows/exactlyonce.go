package workflows

// exactly-once: dedup's workload and faults, but the insert runs in
// dbos.RunAsTransaction on a DataSource over the store, so the rows and the
// step's completion record commit in one transaction. A failure after the
// write rolls the write back; a crash after the commit finds the step
// checkpointed. Rows equal users, with no duplicates, under any schedule.

import (
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

var exactlyOnceBatch = lab.NewWorkflow("users_batch_workflow", exactlyOnceBatchWorkflow)

// ExactlyOnce is the experiment's descriptor.
var ExactlyOnce = &lab.Experiment{
	Name:   "exactly-once",
	Origin: "", // beyond the Python originals: none commits a write with its checkpoint
	Short:  "dedup's faults, but each insert commits with its checkpoint: no duplicates at all",
	Long: `The same workload, faults and seeds as dedup, but the insert step runs in
dbos.RunAsTransaction: the batch's rows and the step's checkpoint commit
together. Compare the two with 'durlab compare'.`,
	Knobs:       batchFaultKnobs,
	Defaults:    batchFaultDefaults,
	Table:       store.Ledger,
	Main:        lab.NewWorkflow("users_workflow", exactlyOnceWorkflow),
	Children:    []lab.ChildWorkflow{exactlyOnceBatch},
	PageNumbers: lab.BatchPages,
	Guarantee:   lab.Guarantee{Status: "SUCCESS", AllUsers: true, LatestExact: true, NoDuplicates: true},
	Expected:    func(in lab.Input) string { return lab.BatchesExpected(in) + ", rows == unique users, 0 duplicates" },
	Judge: func(rep *lab.Report) {
		judgeBatches(rep)
		rep.AsExpected = rep.AsExpected && rep.Rows == rep.UniqueUsers
		switch {
		case rep.AsExpected:
			rep.Lesson = fmt.Sprintf("every insert committed together with its checkpoint: %d rows for %d users, 0 duplicates, after %s and %s",
				rep.Rows, rep.UniqueUsers, lab.Count(rep.Failures(), "injected failure", "injected failures"), lab.Count(rep.Crashes, "crash", "crashes"))
			if rep.CommitCrashes > 0 {
				rep.Lesson += fmt.Sprintf(" (%d right after an insert committed: its recovery found the step done)", rep.CommitCrashes)
			}
		case rep.Duplicates > 0:
			rep.Lesson = fmt.Sprintf("%s, %s: an insert and its checkpoint did not commit together", lab.Count(rep.Duplicates, "duplicate", "duplicates"), rep.DuplicateCauses())
		}
	},
}

func exactlyOnceWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		if err := lab.RunBatches(x, in, exactlyOnceBatch, lab.WithCrashPoints); err != nil {
			return store.Counts{}, err
		}
		return x.Count(store.Ledger)
	})
}

func exactlyOnceBatchWorkflow(ctx dbos.Context, in lab.BatchInput) (int64, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (int64, error) {
		b, err := generateBatch(x, in)
		if err != nil {
			return 0, err
		}
		out, err := lab.Transaction(x, b.insertName(), func(a *lab.Attempt) (inserted, error) {
			rows, err := b.write(a)
			if err != nil {
				return inserted{}, err
			}
			// Returning an error rolls the insert back with the transaction.
			return b.failAfterWrite(a, rows)
		}, b.insertRetries())
		if err != nil {
			return 0, err
		}
		// The same crash point as dedup's: the insert has committed, the
		// workflow has not moved on. Here the checkpoint committed with it.
		b.crashAfterCommit()
		return int64(out.Rows), nil
	})
}
