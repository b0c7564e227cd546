package bench

// TestBareDBOS keeps BenchmarkBareDBOS honest: apart from bare_test.go, so
// that the bare program itself imports neither lab nor workflows.

import (
	"context"
	"log/slog"
	"testing"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
	"github.com/durlab/durlab/workflows"
)

// bareCheckpoints counts what DBOS recorded for main workflow id and its
// children as lab.Runtime.Checkpoints does: step records, child records
// (started, then awaited), and one status record per workflow.
func bareCheckpoints(t *testing.T, c dbos.Context, id string) lab.Checkpoints {
	t.Helper()
	children, err := dbos.ListWorkflows(c, dbos.WithFilterParentWorkflowID(id),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		t.Fatal(err)
	}
	var cp lab.Checkpoints
	for _, w := range append([]dbos.WorkflowStatus{{ID: id, Status: dbos.WorkflowStatusSuccess}}, children...) {
		if w.Status != dbos.WorkflowStatusSuccess {
			t.Errorf("workflow %s: %s", w.ID, w.Status)
		}
		steps, err := dbos.GetWorkflowSteps(c, w.ID, dbos.WithStepsLoadOutput(false))
		if err != nil {
			t.Fatal(err)
		}
		cp.Workflows++
		for _, s := range steps {
			if s.ChildWorkflowID != "" {
				cp.ChildRecords++
			} else {
				cp.Steps++
			}
		}
	}
	cp.Total = cp.Steps + cp.ChildRecords + cp.Workflows
	return cp
}

// TestBareDBOS runs the bare program once on SQLite: it must write every
// user, and DBOS must have checkpointed exactly what it checkpoints for
// durlab's profile run of the same size, or BenchmarkBareDBOS would not
// measure durlab's workload.
func TestBareDBOS(t *testing.T) {
	ctx := context.Background()
	systemDB, storeDSN := sqliteBackend(t)
	app, err := openBare(ctx, systemDB, storeDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer app.close()
	in := bareInput{Batches: 10, Pages: 10, PageSize: 10}
	id, c, err := app.run(in)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Counts{Rows: 1000, UniqueUsers: 1000, Latest: 1000}
	if c != want {
		t.Errorf("the workflow counted %+v, want %+v", c, want)
	}
	// Read back from the table, not only from the workflow's count step.
	got, err := app.store.counts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("the table holds %+v for %s, want %+v", got, id, want)
	}

	// 11 workflows; 100 generate steps and the count; each batch recorded
	// twice by its parent, started then awaited.
	bare := bareCheckpoints(t, app.dbos, id)
	if w := (lab.Checkpoints{Workflows: 11, Steps: 101, ChildRecords: 20, Total: 132}); bare != w {
		t.Errorf("bare checkpoints %+v, want %+v", bare, w)
	}
	// And the same as durlab's run of the same size.
	systemDB, storeDSN = sqliteBackend(t)
	rt, err := lab.Open(ctx, lab.Config{SystemDB: systemDB, Store: storeDSN, ExecutorID: "durlab-bench",
		Logger: slog.New(slog.DiscardHandler), Experiments: workflows.Experiments()})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	rep, err := rt.Run(ctx, workflows.Profile, lab.Params{Input: lab.Input{Batches: in.Batches, Pages: in.Pages, PageSize: in.PageSize}})
	if err != nil || !rep.AsExpected {
		t.Fatalf("durlab's run: %v (%+v)", err, rep)
	}
	durable, err := rt.Checkpoints(rep.WorkflowID)
	if err != nil {
		t.Fatal(err)
	}
	if bare != durable {
		t.Errorf("bare checkpoints %+v, durlab's %+v", bare, durable)
	}
}
