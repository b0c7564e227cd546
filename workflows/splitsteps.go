package workflows

// split-steps (ex4): the steps only generate pages; the workflow itself
// inserts them, with an analyzed_at taken afresh by every execution. A
// recovered execution replays the steps' checkpointed pages and inserts them
// again under a new analyzed_at, so the strict key never fires, but after a
// crash the table holds more rows than users: code in the workflow body is
// re-executed, not checkpointed.

import (
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// SplitSteps is the experiment's descriptor.
var SplitSteps = &lab.Experiment{
	Name:   "split-steps",
	Origin: "ex4",
	Short:  "Steps only generate; the workflow inserts. No UNIQUE violation, but duplicates after a crash",
	Long: `Steps generate pages; the workflow body inserts them with an analyzed_at taken
by each execution. A crash (--crash-prob) between pages, then a restart,
re-executes the inserts: no UNIQUE violation, and more rows than unique users.`,
	Knobs: []lab.Knob{lab.KnobPages, lab.KnobPageSize, lab.KnobCrashProb, lab.KnobMaxRecoveryAttempts, lab.KnobWait},
	Defaults: lab.Params{Input: lab.Input{Pages: 2, PageSize: 10},
		Faults: lab.Faults{CrashProb: 0.5, MaxRecoveryAttempts: 3}, Wait: lab.DefaultWait},
	Table:       store.Strict,
	Main:        lab.NewWorkflow("users_workflow", splitStepsWorkflow),
	PageNumbers: lab.PagesFrom1,
	Guarantee:   lab.Guarantee{Status: "SUCCESS", AllUsers: true, NoUnique: true},
	Expected: func(in lab.Input) string {
		return lab.PagesExpected(in) + ", no UNIQUE violation; rows exceed users after a crash"
	},
	Judge: func(rep *lab.Report) {
		rep.AsExpected = rep.Succeeded() && rep.UniqueViolations == 0
		switch {
		case rep.DeadLetterLesson() != "":
			rep.Lesson = rep.DeadLetterLesson()
		case rep.Rows > rep.UniqueUsers:
			rep.Lesson = fmt.Sprintf("rows outnumber unique users (%d rows, %d users): %s, %s; each execution inserts under its own analyzed_at, so no UNIQUE violation", rep.Rows, rep.UniqueUsers, lab.Count(rep.Duplicates, "duplicate", "duplicates"), rep.DuplicateCauses())
		default:
			rep.Lesson = "no crash this time, so rows equal users; run with --crash-prob 1, then again with --crash-prob 0, to see the duplicates"
		}
	},
}

func splitStepsWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		analyzedAt := time.Now().UTC()            // per execution, on purpose: see the file comment
		for page := 1; page <= in.Pages; page++ { // pages 1 and 2, as ex4 writes them
			if page > 1 {
				x.CrashPoint(lab.Named(fmt.Sprintf("before-page-%d", page)), x.Faults().CrashProb, fmt.Sprintf("before page %d", page))
			}
			users, err := lab.Step(x, fmt.Sprintf("generate_page_%d", page), func(*lab.Attempt) ([]fake.User, error) {
				return fake.Page(page, in.PageSize), nil
			}, lab.Retries{})
			if err != nil {
				return store.Counts{}, err
			}
			if err := x.InsertPage(store.Strict, fmt.Sprintf("insert_page_%d", page), page, users, analyzedAt); err != nil {
				return store.Counts{}, err
			}
		}
		return x.Count(store.Strict)
	})
}
