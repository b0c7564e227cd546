package workflows

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

func openRuntime(t *testing.T, exps []*lab.Experiment) (*lab.Runtime, string) {
	t.Helper()
	dir := t.TempDir()
	systemDB := "sqlite:" + filepath.Join(dir, "dbos.sqlite")
	rt, err := lab.Open(context.Background(), lab.Config{SystemDB: systemDB, Store: filepath.Join(dir, "users.db"),
		ExecutorID: "durlab-test", Logger: slog.New(slog.DiscardHandler), Experiments: exps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt, systemDB
}

// TestEveryWorkflowIsRegistered runs every listed experiment, small and
// without faults, and checks that every workflow it started is recorded
// under a name its descriptor registered, and that every registered one
// ran. DBOS itself refuses to start a workflow nobody registered; the
// runtime says, before that, which descriptor left it out.
func TestEveryWorkflowIsRegistered(t *testing.T) {
	rt, systemDB := openRuntime(t, Experiments())
	ctx := context.Background()
	for _, e := range Experiments() {
		p := lab.Params{Input: lab.Input{Seed: 1, Pages: 1, PageSize: 2, Batches: 2}, Faults: lab.Faults{Attempts: 1}}
		rep, err := rt.Run(ctx, e, p)
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		if rep.Status != string(dbos.WorkflowStatusSuccess) {
			t.Errorf("%s: %s: %s", e.Name, rep.Status, rep.Error)
		}
	}
	client, err := dbos.NewClient(ctx, dbos.ClientConfig{DatabaseURL: systemDB, AppName: lab.AppName, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Shutdown(client, 0)
	wfs, err := dbos.ListWorkflows(client, dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		t.Fatal(err)
	}
	var registered []string
	for _, e := range Experiments() {
		registered = append(registered, e.WorkflowNames()...)
	}
	started := map[string]bool{}
	for _, w := range wfs {
		started[w.Name] = true
		if !slices.Contains(registered, w.Name) {
			t.Errorf("workflow %s ran under a name no descriptor registers", w.Name)
		}
	}
	for _, name := range registered {
		if !started[name] {
			t.Errorf("registered workflow %s never ran: the test does not cover it", name)
		}
	}
}

// An experiment whose main workflow starts a child left out of its
// descriptor fails at once, and says which list to add it to.
var (
	strayChild = lab.NewWorkflow("stray_child", strayChildWorkflow)
	broken     = &lab.Experiment{Name: "broken", Table: store.Strict,
		Main:     lab.NewWorkflow("users_workflow", brokenWorkflow),
		Expected: lab.PagesExpected, Judge: func(*lab.Report) {}}
)

func strayChildWorkflow(ctx dbos.Context, in lab.BatchInput) (int64, error) { return 0, nil }

func brokenWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		h, err := strayChild.Run(x, lab.BatchInput{Input: in, Batch: 1})
		if err != nil {
			return store.Counts{}, err
		}
		_, err = h.GetResult()
		return store.Counts{}, err
	})
}

func TestAChildLeftOutOfItsDescriptorFails(t *testing.T) {
	rt, _ := openRuntime(t, []*lab.Experiment{broken})
	rep, err := rt.Run(context.Background(), broken, lab.Params{Input: lab.Input{Pages: 1, PageSize: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != string(dbos.WorkflowStatusError) || !strings.Contains(rep.Error, "stray_child is not in its experiment's Children") {
		t.Fatalf("status %s, error %q", rep.Status, rep.Error)
	}
}
