package workflows

// recover (ex3): a workflow of two checkpointed write steps, with a crash
// (a real SIGKILL) between them with probability --crash-prob. Restart the
// command and DBOS recovers the workflow: the first step is not run again,
// the second runs, and the result is 20 rows for 20 users. After
// --max-recovery-attempts recoveries DBOS dead-letters the workflow instead.

import (
	"context"
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

const recoverWorkflowName = "recover.users_workflow"

var recoverExperiment = Experiment{
	Name:  "recover",
	Seed:  "ex3",
	Short: "Crash between two checkpointed steps; restart to recover",
	Long: `Runs a workflow whose steps each write a page, and kills the process with
SIGKILL between pages with probability --crash-prob. Run it again: DBOS
recovers the pending workflow, skips the checkpointed steps and finishes.
A workflow that crashes more than --max-recovery-attempts times is dead-lettered.`,
	Knobs: []Knob{KnobPages, KnobPageSize, KnobCrashProb, KnobMaxRecoveryAttempts, KnobWait},
	Defaults: Params{Input: Input{Pages: 2, PageSize: 10},
		Faults: Faults{CrashProb: 0.5, MaxRecoveryAttempts: 3}, Wait: defaultWait},
	Expected: pagesExpected,
	run:      runRecover,
}

func (l *Lab) recoverWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	wfID, execution, err := l.workflowContext(ctx)
	if err != nil {
		return store.Counts{}, err
	}
	defer l.flush(ctx, wfID)
	for page := range in.Pages {
		if page > 0 {
			l.maybeCrash(ctx, in.Seed, l.faults.CrashProb, wfID, mainRole, execution, fmt.Sprintf("before page %d", page))
		}
		if err := l.writePageStep(ctx, wfID, page, in.PageSize, l.analyzedAt, nil); err != nil {
			return store.Counts{}, err
		}
	}
	return l.countStep(ctx, l.strict, wfID)
}

func runRecover(ctx context.Context, l *Lab, p Params) (Report, error) {
	rep, err := startAndReport(ctx, l, p, "recover", recoverWorkflowName, l.recoverWorkflow, store.Strict)
	if err != nil {
		return rep, err
	}
	rep.AsExpected = succeeded(rep) && rep.Rows == rep.input.Users()
	switch {
	case deadLetterLesson(rep) != "":
		rep.Lesson = deadLetterLesson(rep)
	case rep.Recoveries > 0:
		rep.Lesson = fmt.Sprintf("recovered after %d crash(es): checkpointed steps were not run again, so %d rows for %d users", rep.Recoveries, rep.Rows, rep.UniqueUsers)
	default:
		rep.Lesson = "no crash this time; run it again (or with --crash-prob 1) to see a recovery"
	}
	return rep, nil
}
