package workflows

// basic (ex1): two steps, each generating a page of users and writing it.
// Nothing fails. It teaches the shape every other experiment bends: a
// workflow of checkpointed steps, safe to run again because each run has its
// own workflow ID and first empties its table of finished runs.

import (
	"context"
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

const basicWorkflowName = "basic.users_workflow"

var basicExperiment = Experiment{
	Name:  "basic",
	Seed:  "ex1",
	Short: "Two steps write two pages of users; nothing fails",
	Long: `Empties the users table of finished runs, then runs one workflow whose steps
each generate a page of users and insert it. The result is the number of rows
the workflow wrote. Safe to run again: every run has its own workflow ID.`,
	Knobs:    []Knob{KnobPages, KnobPageSize},
	Defaults: Params{Input: Input{Pages: 2, PageSize: 10}},
	Expected: pagesExpected,
	run:      runBasic,
}

func (l *Lab) basicWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	wfID, _, err := l.workflowContext(ctx)
	if err != nil {
		return store.Counts{}, err
	}
	defer l.flush(ctx, wfID)
	for page := range in.Pages {
		if err := l.writePageStep(ctx, wfID, page, in.PageSize, l.analyzedAt, nil); err != nil {
			return store.Counts{}, err
		}
	}
	return l.countStep(ctx, l.strict, wfID)
}

func runBasic(ctx context.Context, l *Lab, p Params) (Report, error) {
	rep, err := startAndReport(ctx, l, p, "basic", basicWorkflowName, l.basicWorkflow, store.Strict)
	if err != nil {
		return rep, err
	}
	rep.AsExpected = succeeded(rep) && rep.Rows == rep.input.Users()
	rep.Lesson = fmt.Sprintf("each step's write was checkpointed once: %d rows for %d users", rep.Rows, rep.UniqueUsers)
	return rep, nil
}
