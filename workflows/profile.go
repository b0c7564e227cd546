package workflows

// profile (ex5): the batch shape with no faults, to see where the time of
// durable execution goes. Each batch generates its pages in steps and
// inserts each page from the workflow body. RunPlain does the identical
// work with no DBOS at all, so the price of durability is a ratio measured
// on the same machine in the same run.

import (
	"context"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

const (
	profileWorkflowName      = "profile.users_workflow"
	profileBatchWorkflowName = "profile.users_batch_workflow"
)

var profileExperiment = Experiment{
	Name:  "profile",
	Seed:  "ex5",
	Short: "Batch child workflows with no faults, profiled: where the time of durability goes",
	Long: `A main workflow runs --batches child workflows of --pages pages of --page-size
users. Nothing fails. The run is profiled, and the same work can be run with
no DBOS at all to measure the price of durability.`,
	Knobs:    []Knob{KnobBatches, KnobPages, KnobPageSize, KnobQueue},
	Defaults: Params{Input: Input{Batches: 10, Pages: 10, PageSize: 10}},
	Expected: batchesExpected,
	run:      runProfile,
}

func (l *Lab) profileWorkflow(ctx dbos.Context, in Input) (store.Counts, error) {
	return l.runBatches(ctx, in, l.profileBatchWorkflow, false, l.strict)
}

func (l *Lab) profileBatchWorkflow(ctx dbos.Context, in BatchInput) (int64, error) {
	_, execution, err := l.workflowContext(ctx)
	if err != nil {
		return 0, err
	}
	defer l.flush(ctx, in.Root)
	analyzedAt := time.Now().UTC()
	var rows int64
	for p := 1; p <= in.Pages; p++ {
		out, err := l.generateStep(ctx, in, execution, in.pageNumber(p), 0)
		if err != nil {
			return 0, err
		}
		if err := l.timings.timeStore(func() error { return l.strict.InsertPage(ctx, out.Users, in.Root, analyzedAt) }); err != nil {
			return 0, err
		}
		rows += int64(len(out.Users))
	}
	return rows, nil
}

func runProfile(ctx context.Context, l *Lab, p Params) (Report, error) {
	return runBatchExperiment(ctx, l, p, "profile", profileWorkflowName, l.profileWorkflow, store.Strict)
}

// RunPlain does profile's work with no durability: the same pages, the same
// inserts into the same table, in the same order, with no workflow, step or
// checkpoint, under the given run ID. It returns the counts; the caller
// deletes the run's rows when it has measured what it needs.
func RunPlain(ctx context.Context, tb store.Table, in Input, runID string, t *Timings, progress func(done, total int)) (store.Counts, error) {
	for b := 1; b <= in.Batches; b++ {
		bin := BatchInput{Input: in, Root: runID, Batch: b}
		analyzedAt := time.Now().UTC()
		for p := 1; p <= in.Pages; p++ {
			users := t.timeGenerate(bin.pageNumber(p), in.PageSize)
			if err := t.timeStore(func() error { return tb.InsertPage(ctx, users, runID, analyzedAt) }); err != nil {
				return store.Counts{}, fmt.Errorf("batch %d page %d: %w", b, p, err)
			}
		}
		if progress != nil {
			progress(b, in.Batches)
		}
		if err := ctx.Err(); err != nil {
			return store.Counts{}, ErrInterrupted
		}
	}
	return tb.Counts(ctx, runID)
}

// Checkpoints are what DBOS recorded to make one run of profile durable,
// read back from the system database.
type Checkpoints struct {
	Workflows int // the main workflow and its batch children
	Steps     int // step outputs: generate_page_N and count_users
	// ChildRecords are the parent's records of the child workflows it
	// started and awaited (DBOS.getResult).
	ChildRecords int
	// Total is every checkpoint: Steps + ChildRecords + one status record
	// per workflow (its input, then its final status and result).
	Total int
}

// Checkpoints counts what DBOS recorded for workflow id and its children:
// every step record of each (dbos.GetWorkflowSteps), plus one status record
// per workflow. It reads with the Lab's own context, outside any workflow.
func (l *Lab) Checkpoints(_ context.Context, id string) (Checkpoints, error) {
	children, err := dbos.ListWorkflows(l.dbos, dbos.WithFilterParentWorkflowID(id),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return Checkpoints{}, err
	}
	var c Checkpoints
	for _, wf := range append([]string{id}, idsOf(children)...) {
		steps, err := dbos.GetWorkflowSteps(l.dbos, wf, dbos.WithStepsLoadOutput(false))
		if err != nil {
			return Checkpoints{}, err
		}
		c.Workflows++
		for _, s := range steps {
			if s.ChildWorkflowID != "" {
				c.ChildRecords++
			} else {
				c.Steps++
			}
		}
	}
	c.Total = c.Steps + c.ChildRecords + c.Workflows
	return c, nil
}

func idsOf(wfs []dbos.WorkflowStatus) []string {
	ids := make([]string, len(wfs))
	for i, w := range wfs {
		ids[i] = w.ID
	}
	return ids
}
