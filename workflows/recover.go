package workflows

// recover (ex3): a workflow of two checkpointed write steps, with a crash
// (a real SIGKILL) between them with probability --crash-prob. Restart the
// command and DBOS recovers the workflow: the first step is not run again,
// the second runs, and the result is 20 rows for 20 users. After
// --max-recovery-attempts recoveries DBOS dead-letters the workflow instead.

import (
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// Recover is the experiment's descriptor.
var Recover = &lab.Experiment{
	Name:   "recover",
	Origin: "ex3",
	Short:  "Crash between two checkpointed steps; restart to recover",
	Long: `Runs a workflow whose steps each write a page, and kills the process with
SIGKILL between pages with probability --crash-prob. Run it again: DBOS
recovers the pending workflow, skips the checkpointed steps and finishes.
A workflow that crashes more than --max-recovery-attempts times is dead-lettered.`,
	Knobs: []lab.Knob{lab.KnobPages, lab.KnobPageSize, lab.KnobCrashProb, lab.KnobMaxRecoveryAttempts, lab.KnobWait},
	Defaults: lab.Params{Input: lab.Input{Pages: 2, PageSize: 10},
		Faults: lab.Faults{CrashProb: 0.5, MaxRecoveryAttempts: 3}, Wait: lab.DefaultWait},
	Table:       store.Strict,
	Main:        lab.NewWorkflow("users_workflow", recoverWorkflow),
	PageNumbers: lab.PagesFrom1,
	Guarantee:   lab.Guarantee{Status: "SUCCESS", AllUsers: true},
	Expected:    lab.PagesExpected,
	Judge: func(rep *lab.Report) {
		rep.AsExpected = rep.Succeeded() && rep.Rows == rep.WantUsers()
		switch {
		case rep.DeadLetterLesson() != "":
			rep.Lesson = rep.DeadLetterLesson()
		case rep.Duplicates > 0:
			rep.Lesson = fmt.Sprintf("recovered after %s; %s, %s", lab.Count(rep.Crashes, "crash", "crashes"), lab.Count(rep.Duplicates, "duplicate row", "duplicate rows"), rep.DuplicateCauses())
		case rep.Crashes > 0:
			rep.Lesson = fmt.Sprintf("recovered after %s: checkpointed steps were not run again, so %d rows for %d users", lab.Count(rep.Crashes, "crash", "crashes"), rep.Rows, rep.UniqueUsers)
		case rep.Recoveries > 0:
			rep.Lesson = fmt.Sprintf("no crash, but %s after the first (the workflow was resumed): checkpointed steps were not run again, so %d rows for %d users", lab.Count(int64(rep.Recoveries), "execution", "executions"), rep.Rows, rep.UniqueUsers)
		default:
			rep.Lesson = "no crash this time; run it again (or with --crash-prob 1) to see a recovery"
		}
	},
}

func recoverWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		for page := 1; page <= in.Pages; page++ { // pages 1 and 2, as ex3 writes them
			if page > 1 {
				x.CrashPoint(lab.Named(fmt.Sprintf("before-page-%d", page)), x.Faults().CrashProb, fmt.Sprintf("before page %d", page))
			}
			if err := writePage(x, page, in.PageSize, x.AnalyzedAt(), nil, lab.Retries{}); err != nil {
				return store.Counts{}, err
			}
		}
		return x.Count(store.Strict)
	})
}
