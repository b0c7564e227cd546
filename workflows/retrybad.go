package workflows

// retry-bad (ex2): one retried step both generates a page and inserts it,
// then fails after the insert on every attempt but the last. The retry
// regenerates the same users and inserts them again with the same
// analyzed_at, and the strict key refuses them: a step that writes and can
// fail after the write is not safe to retry. The run is "as expected" when
// that UNIQUE violation is observed.

import (
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// RetryBad is the experiment's descriptor.
var RetryBad = &lab.Experiment{
	Name:   "retry-bad",
	Origin: "ex2",
	Short:  "A retried step that writes, then fails: the retry hits the UNIQUE constraint",
	Long: `One step generates a page and inserts it, then fails (with --fail-prob) on
every attempt but the last. DBOS retries the step; the retry inserts the same
users with the same analyzed_at and the UNIQUE constraint refuses them.
Exit 0 means the lesson was observed: the workflow failed on the constraint.`,
	Knobs:       []lab.Knob{lab.KnobPages, lab.KnobPageSize, lab.KnobFailProb, lab.KnobAttempts},
	Defaults:    lab.Params{Input: lab.Input{Pages: 2, PageSize: 10}, Faults: lab.Faults{FailProb: 1, Attempts: 3}},
	Table:       store.Strict,
	Main:        lab.NewWorkflow("users_workflow", retryBadWorkflow),
	PageNumbers: lab.PagesFrom0,
	Guarantee:   lab.Guarantee{Status: "ERROR", Unique: true},
	Expected: func(lab.Input) string {
		return "the retried step fails on the UNIQUE constraint (users.id, workflow_id, analyzed_at)"
	},
	Judge: func(rep *lab.Report) {
		rep.AsExpected = rep.UniqueViolations > 0 && rep.Status == string(dbos.WorkflowStatusError)
		if rep.AsExpected {
			rep.Lesson = fmt.Sprintf("the step wrote, failed, and was retried: the retry wrote the same users again and hit the UNIQUE constraint %s; keep writes out of steps that can fail after writing", lab.Count(rep.UniqueViolations, "time", "times"))
		} else {
			rep.Lesson = "no retry rewrote a page, so the UNIQUE constraint was never hit (raise --fail-prob or --attempts to see it)"
		}
	},
}

func retryBadWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		attempts := max(x.Faults().Attempts, 1)
		for page := range in.Pages {
			failAfterWrite := func(a *lab.Attempt) error {
				if a.N >= attempts {
					return nil
				}
				msg := fmt.Sprintf("injected failure after writing page %d (attempt %d)", page, a.N)
				return a.FailIf(x.Faults().FailProb, msg, "page", page, a.N)
			}
			if err := writePage(x, page, in.PageSize, x.AnalyzedAt(), failAfterWrite, lab.Retries{Attempts: attempts}); err != nil {
				return store.Counts{}, err
			}
		}
		return x.Count(store.Strict)
	})
}
