package lab

import (
	"context"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// testExperiments are what the runtime's own tests register: one trivial
// experiment (package workflows, which holds the real ones, imports lab).
var testExperiments = []*Experiment{{Name: "lab-test", Table: store.Strict,
	Main: NewWorkflow("users_workflow", labTestWorkflow), Expected: PagesExpected, Judge: func(*Report) {}},
	{Name: "lab-hold", Table: store.Strict, Main: holdWorkflow, Expected: PagesExpected, Judge: func(*Report) {}}}

// holdWorkflow runs until its process shuts down, which leaves it PENDING.
var holdWorkflow = NewWorkflow("users_workflow", func(ctx dbos.Context, in Input) (store.Counts, error) {
	<-ctx.Done()
	return store.Counts{}, context.Cause(ctx)
})

func labTestWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	return Execute(ctx, in, func(x *Execution) (store.Counts, error) { return x.Count(store.Strict) })
}
