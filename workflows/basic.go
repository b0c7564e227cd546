package workflows

// basic (ex1): two steps, each generating a page of users and writing it.
// Nothing fails. It teaches the shape every other experiment bends: a
// workflow of checkpointed steps, safe to run again because each run has its
// own workflow ID and first empties its table of finished runs.

import (
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// Basic is the experiment's descriptor.
var Basic = &lab.Experiment{
	Name:   "basic",
	Origin: "ex1",
	Short:  "Two steps write two pages of users; nothing fails",
	Long: `Empties the users table of finished runs, then runs one workflow whose steps
each generate a page of users and insert it. The result is the number of rows
the workflow wrote. Safe to run again: every run has its own workflow ID.`,
	Knobs:       []lab.Knob{lab.KnobPages, lab.KnobPageSize},
	Defaults:    lab.Params{Input: lab.Input{Pages: 2, PageSize: 10}},
	Table:       store.Strict,
	Main:        lab.NewWorkflow("users_workflow", basicWorkflow),
	PageNumbers: lab.PagesFrom0,
	Guarantee:   lab.Guarantee{Status: "SUCCESS", AllUsers: true},
	Expected:    lab.PagesExpected,
	Judge: func(rep *lab.Report) {
		rep.AsExpected = rep.Succeeded() && rep.Rows == rep.WantUsers()
		if rep.Duplicates > 0 {
			rep.Lesson = fmt.Sprintf("%s, %s", lab.Count(rep.Duplicates, "duplicate row", "duplicate rows"), rep.DuplicateCauses())
		} else {
			rep.Lesson = fmt.Sprintf("each step's write was checkpointed once: %d rows for %d users", rep.Rows, rep.UniqueUsers)
		}
	},
}

func basicWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		for page := range in.Pages {
			if err := writePage(x, page, in.PageSize, x.AnalyzedAt(), nil, lab.Retries{}); err != nil {
				return store.Counts{}, err
			}
		}
		return x.Count(store.Strict)
	})
}

// writePage is the step of the Python ex1 to ex3: it generates a page and
// writes it, in one step (retry-bad and recover use it too).
// failAfterWrite, if set, may fail the attempt after a successful write
// (with FailIf).
func writePage(x *lab.Execution, page, size int, analyzedAt time.Time, failAfterWrite func(a *lab.Attempt) error, retries lab.Retries) error {
	_, err := lab.Step(x, fmt.Sprintf("write_page_%d", page), func(a *lab.Attempt) (int, error) {
		if err := a.InsertPage(store.Strict, page, fake.Page(page, size), analyzedAt); err != nil {
			return 0, err
		}
		if failAfterWrite != nil {
			if err := failAfterWrite(a); err != nil {
				return 0, err
			}
		}
		return size, nil
	}, retries)
	return err
}
