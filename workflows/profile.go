package workflows

// profile (ex5): the batch shape with no faults, to see where the time of
// durable execution goes. Each batch generates its pages in steps and
// inserts each page from the workflow body. RunPlain does the identical
// work with no DBOS at all, so the price of durability is a ratio measured
// on the same machine in the same run. ex5's own faults are there behind
// flags that default to 0, so that the measurement stays fault-free.

import (
	"context"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/google/uuid"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

var profileBatch = lab.NewWorkflow("users_batch_workflow", profileBatchWorkflow)

// Profile is the experiment's descriptor.
var Profile = &lab.Experiment{
	Name:   "profile",
	Origin: "ex5",
	Short:  "Batch child workflows with no faults, profiled: where the time of durability goes",
	Long: `A main workflow runs --batches child workflows of --pages pages of --page-size
users. Nothing fails by default. The run is profiled, and the same work can be
run with no DBOS at all to measure the price of durability.

The Python ex5 injects faults in its code: its generate step fails with
probability 0.1 (DBOS retries it), the process dies with probability 0.02
after each batch, and a workflow is dead-lettered after 3 recoveries. Here
they default to 0, so that the measurement is fault-free; to run ex5 as
written: --gen-fail-prob 0.1 --crash-prob 0.02 --max-recovery-attempts 3
(under 'durlab run profile --until-success'). ex5 crashes in the main
workflow after each batch; here the crash point is at the start of each
batch workflow, before its first step, so that it adds no checkpoint to
what is measured.`,
	Knobs: []lab.Knob{lab.KnobBatches, lab.KnobPages, lab.KnobPageSize, lab.KnobGenFailProb, lab.KnobCrashProb,
		lab.KnobMaxRecoveryAttempts, lab.KnobQueue},
	Defaults:    lab.Params{Input: lab.Input{Batches: 10, Pages: 10, PageSize: 10}},
	Table:       store.Strict,
	Main:        lab.NewWorkflow("users_workflow", profileWorkflow),
	Children:    []lab.ChildWorkflow{profileBatch},
	PageNumbers: lab.BatchPages,
	Guarantee:   lab.Guarantee{Status: "SUCCESS", AllUsers: true, LatestExact: true},
	Expected:    lab.BatchesExpected,
	Judge:       judgeBatches,
}

func profileWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		if err := lab.RunBatches(x, in, profileBatch, lab.NoCrashPoints); err != nil {
			return store.Counts{}, err
		}
		return x.Count(store.Strict)
	})
}

func profileBatchWorkflow(ctx dbos.Context, in lab.BatchInput) (int64, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (int64, error) {
		// ex5's crash after each batch: here before the next, at no step.
		x.CrashPoint(lab.Named(fmt.Sprintf("before-batch-%d", in.Batch)), x.Faults().CrashProb, fmt.Sprintf("before batch %d", in.Batch))
		analyzedAt := time.Now().UTC()
		var rows int64
		for p := 1; p <= in.Pages; p++ {
			page := in.PageNumber(p)
			users, err := lab.GeneratePage(x, page, in.PageSize, x.Faults().GenFailProb)
			if err != nil {
				return 0, err
			}
			if err := x.InsertPage(store.Strict, fmt.Sprintf("insert_page_%d", page), page, users, analyzedAt); err != nil {
				return 0, err
			}
			rows += int64(len(users))
		}
		return rows, nil
	})
}

// Plain is profile's work with no durability: where it runs and what it is
// told.
type Plain struct {
	Store string // the store's DSN
	// OpenClient opens a DBOS client, which tells which workflows are
	// finished so that their rows are emptied as a durable run would, and
	// the function that closes it; a nil client when there is no system
	// database. It is called once the store is open, and the client closed
	// before the work starts, so that it takes no time from it.
	OpenClient func() (dbos.Client, func(), error)
	Input      lab.Input
	Timings    *lab.Timings
	Progress   func(done, total int)
	// Start, if set, is called right before the work starts (profilers).
	Start func() error
}

// RunPlain does profile's work with no durability: the same pages, the same
// inserts into the same table, in the same order, with no workflow, step or
// checkpoint, under a run ID of its own, whose rows it deletes when it has
// counted them. It returns the report and the time the work took.
func RunPlain(ctx context.Context, p Plain) (lab.Report, time.Duration, error) {
	st, err := store.Open(ctx, p.Store)
	if err != nil {
		return lab.Report{}, 0, err
	}
	defer st.Close()
	tb := st.Table(Profile.Table)
	if p.OpenClient != nil {
		c, closeClient, err := p.OpenClient()
		if err != nil {
			return lab.Report{}, 0, err
		}
		if c != nil {
			_, err = lab.PrepareStore(ctx, c, tb)
			closeClient()
			if err != nil {
				return lab.Report{}, 0, err
			}
		}
	}
	if p.Start != nil {
		if err := p.Start(); err != nil {
			return lab.Report{}, 0, err
		}
	}
	runID := lab.PlainRunPrefix + uuid.NewString()
	start := time.Now()
	c, err := PlainWork(ctx, tb, p.Input, runID, p.Timings, p.Progress)
	d := time.Since(start)
	// The plain run's rows served their purpose; a durable run would leave
	// them to the next run's emptying, which cannot tell a plain run is over.
	if _, derr := tb.Delete(context.WithoutCancel(ctx), []string{runID}); derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return lab.Report{}, 0, err
	}
	rep := lab.PlainReport(Profile, p.Input, runID, c)
	want := p.Input.Users()
	rep.AsExpected = rep.Result == want && rep.UniqueUsers == want
	if !rep.AsExpected {
		rep.Lesson = fmt.Sprintf("the run with no durability counted %d of %d users", rep.Result, want)
	}
	return rep, d, nil
}

// PlainWork is the plain run's loop, under the given run ID. It returns
// the counts and leaves the rows in place.
func PlainWork(ctx context.Context, tb store.Table, in lab.Input, runID string, t *lab.Timings, progress func(done, total int)) (store.Counts, error) {
	for b := 1; b <= in.Batches; b++ {
		bin := lab.BatchInput{Input: in, Root: runID, Batch: b}
		analyzedAt := time.Now().UTC()
		for p := 1; p <= in.Pages; p++ {
			users := t.TimeGenerate(bin.PageNumber(p), in.PageSize)
			if err := t.TimeStore(func() error { return tb.InsertPage(ctx, users, runID, analyzedAt) }); err != nil {
				return store.Counts{}, fmt.Errorf("batch %d page %d: %w", b, p, err)
			}
		}
		if progress != nil {
			progress(b, in.Batches)
		}
		if err := ctx.Err(); err != nil {
			return store.Counts{}, lab.ErrInterrupted
		}
	}
	return tb.Counts(ctx, runID)
}
