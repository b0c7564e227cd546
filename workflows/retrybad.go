package workflows

// retry-bad (ex2): one retried step both generates a page and inserts it,
// then fails after the insert on every attempt but the last. The retry
// regenerates the same users and inserts them again with the same
// analyzed_at, and the strict key refuses them: a step that writes and can
// fail after the write is not safe to retry. The run is "as expected" when
// that UNIQUE violation is observed.

import (
	"context"
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

const retryBadWorkflowName = "retry-bad.users_workflow"

var retryBadExperiment = Experiment{
	Name:  "retry-bad",
	Seed:  "ex2",
	Short: "A retried step that writes, then fails: the retry hits the UNIQUE constraint",
	Long: `One step generates a page and inserts it, then fails (with --fail-prob) on
every attempt but the last. DBOS retries the step; the retry inserts the same
users with the same analyzed_at and the UNIQUE constraint refuses them.
Exit 0 means the lesson was observed: the workflow failed on the constraint.`,
	Knobs:    []Knob{KnobPages, KnobPageSize, KnobFailProb, KnobAttempts},
	Defaults: Params{Input: Input{Pages: 2, PageSize: 10}, Faults: Faults{FailProb: 1, Attempts: 3}},
	Expected: func(Params) string {
		return "the retried step fails on the UNIQUE constraint (users.id, workflow_id, analyzed_at)"
	},
	run: runRetryBad,
}

func (l *Lab) retryBadWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	wfID, execution, err := l.workflowContext(ctx)
	if err != nil {
		return store.Counts{}, err
	}
	defer l.flush(ctx, wfID)
	attempts := max(l.faults.Attempts, 1)
	for page := range in.Pages {
		failAfterWrite := func(attempt int) bool {
			return attempt < attempts && chance(in.Seed, mainRole, execution, "page", page, attempt) < l.faults.FailProb
		}
		if err := l.writePageStep(ctx, wfID, page, in.PageSize, l.analyzedAt, failAfterWrite,
			dbos.WithStepMaxRetries(attempts-1)); err != nil {
			return store.Counts{}, err
		}
	}
	return l.countStep(ctx, l.strict, wfID)
}

func runRetryBad(ctx context.Context, l *Lab, p Params) (Report, error) {
	rep, err := startAndReport(ctx, l, p, "retry-bad", retryBadWorkflowName, l.retryBadWorkflow, store.Strict)
	if err != nil {
		return rep, err
	}
	rep.AsExpected = rep.UniqueViolations > 0 && rep.Status == string(dbos.WorkflowStatusError)
	if rep.AsExpected {
		rep.Lesson = fmt.Sprintf("the step wrote, failed, and was retried: the retry wrote the same users again and hit the UNIQUE constraint %d time(s); keep writes out of steps that can fail after writing", rep.UniqueViolations)
	} else {
		rep.Lesson = "no retry rewrote a page, so the UNIQUE constraint was never hit (raise --fail-prob or --attempts to see it)"
	}
	return rep, nil
}
