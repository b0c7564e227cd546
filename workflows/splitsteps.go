package workflows

// split-steps (ex4): the steps only generate pages; the workflow itself
// inserts them, with an analyzed_at taken afresh by every execution. A
// recovered execution replays the steps' checkpointed pages and inserts them
// again under a new analyzed_at, so the strict key never fires, but after a
// crash the table holds more rows than users: code in the workflow body is
// re-executed, not checkpointed.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

const splitStepsWorkflowName = "split-steps.users_workflow"

var splitStepsExperiment = Experiment{
	Name:  "split-steps",
	Seed:  "ex4",
	Short: "Steps only generate; the workflow inserts. No UNIQUE violation, but duplicates after a crash",
	Long: `Steps generate pages; the workflow body inserts them with an analyzed_at taken
by each execution. A crash (--crash-prob) between pages, then a restart,
re-executes the inserts: no UNIQUE violation, and more rows than unique users.`,
	Knobs: []Knob{KnobPages, KnobPageSize, KnobCrashProb, KnobMaxRecoveryAttempts, KnobWait},
	Defaults: Params{Input: Input{Pages: 2, PageSize: 10},
		Faults: Faults{CrashProb: 0.5, MaxRecoveryAttempts: 3}, Wait: defaultWait},
	Expected: func(p Params) string {
		return pagesExpected(p) + ", no UNIQUE violation; rows exceed users after a crash"
	},
	run: runSplitSteps,
}

func (l *Lab) splitStepsWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	wfID, execution, err := l.workflowContext(ctx)
	if err != nil {
		return store.Counts{}, err
	}
	defer l.flush(ctx, wfID)
	analyzedAt := time.Now().UTC() // per execution, on purpose: see the file comment
	for page := range in.Pages {
		if page > 0 {
			l.maybeCrash(ctx, in.Seed, l.faults.CrashProb, wfID, mainRole, execution, fmt.Sprintf("before page %d", page))
		}
		users, err := dbos.RunAsStep(ctx, func(context.Context) ([]fake.User, error) {
			l.count(wfID, func(s *store.Stats) { s.StepAttempts++ })
			return fake.Page(page, in.PageSize), nil
		}, dbos.WithStepName(fmt.Sprintf("generate_page_%d", page)))
		if err != nil {
			return store.Counts{}, err
		}
		if err := l.strict.InsertPage(ctx, users, wfID, analyzedAt); err != nil {
			if errors.Is(err, store.ErrDuplicateUser) {
				l.count(wfID, func(s *store.Stats) { s.UniqueViolations++ })
			}
			return store.Counts{}, err
		}
	}
	return l.countStep(ctx, l.strict, wfID)
}

func runSplitSteps(ctx context.Context, l *Lab, p Params) (Report, error) {
	rep, err := startAndReport(ctx, l, p, "split-steps", splitStepsWorkflowName, l.splitStepsWorkflow, store.Strict)
	if err != nil {
		return rep, err
	}
	rep.AsExpected = succeeded(rep) && rep.UniqueViolations == 0
	switch {
	case deadLetterLesson(rep) != "":
		rep.Lesson = deadLetterLesson(rep)
	case rep.Rows > rep.UniqueUsers:
		rep.Lesson = fmt.Sprintf("rows outnumber unique users (%d rows, %d users): the recovered execution inserted its pages again under a new analyzed_at, so no UNIQUE violation, but %d duplicates", rep.Rows, rep.UniqueUsers, rep.Duplicates)
	default:
		rep.Lesson = "no crash this time, so rows equal users; run with --crash-prob 1, then again with --crash-prob 0, to see the duplicates"
	}
	return rep, nil
}
