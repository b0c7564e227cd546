package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/profiling"
	"github.com/durlab/durlab/workflows"
)

// profileOptions are the flags of `durlab profile`: the experiment's own
// flags plus where the profiles go and what to run.
type profileOptions struct {
	experimentOptions
	cpuOut, wallOut string
	noDurability    bool
	compare         bool
	top             int
}

const profileHelp = `
--out is the CPU profile and --wall-out the wall-clock profile of the run,
both in pprof format. After the report, a breakdown says where the time went:

  wall time       the run, from starting the workflow to the final counts;
                  DBOS start-up (migrating, launching) is shown apart
  workflows       the main workflow and its batch children
  steps           step outputs DBOS recorded: one per page, plus the count
  checkpoints     every record DBOS wrote to make the run durable, read back
                  from the system database: the step records of each
                  workflow (dbos.GetWorkflowSteps; a parent also records
                  each child it starts and awaits) plus one status record
                  per workflow
  business logic  fake generation, which a program with no DBOS does too
  store writes    inserting the pages into the users table, with the
                  attempt ledger's events that ride in their transactions
  ledger          the attempt ledger's own commits: each execution's begin,
                  and the end of each failed attempt before DBOS retries it
  rest            everything else: DBOS orchestration and checkpoints,
                  emptying finished runs' rows, and the final counts
  price           with --compare: durable wall time / no-durability wall time
  per checkpoint  the overhead of one checkpoint in ms: with --compare
                  (durable - plain) / checkpoints, otherwise
                  rest / checkpoints
  top packages    the packages whose own code was on the CPU most: flat
                  samples by the package of the leaf function, read from the
                  CPU profile; C code called through cgo counts for the Go
                  package that called it, marked (cgo)

--no-durability runs the identical work with no DBOS at all: the same pages,
the same inserts in the same order, no workflow, step or checkpoint.
--compare runs that first, then the durable run, in one process, and reports
the ratio: the price of durability on this machine. The profiles then cover
the durable run only. For steadier figures, bench/run.sh repeats the runs.

A CPU profile misses the time spent waiting on the databases, where durable
execution spends most of its time; the wall-clock profile
(github.com/felixge/fgprof) samples every goroutine, running or waiting.
View either with

  go tool pprof -http=: main.prof
  go tool pprof -top main.wall.prof

Memory does not grow with the number of users: a workflow holds one page at
a time. On a terminal, a progress bar on stderr shows the batches done and
the rate (never with --output json).`

func newProfileCmd(g *globalOptions, runF func(*profileOptions) error) *cobra.Command {
	exp := workflows.Profile
	opts := &profileOptions{}
	var c *cobra.Command
	c = newExperimentCmd(g, exp, func(eo *experimentOptions) error {
		opts.experimentOptions = *eo
		if err := opts.validate(); err != nil {
			return err
		}
		if runF != nil {
			return runF(opts)
		}
		return runProfile(c.Context(), opts)
	})
	c.Long = exp.Long + "\n" + profileHelp + fmt.Sprintf("\n\nPorted from the Python experiment %s.", exp.Origin)
	c.Example = `  durlab profile --out main.prof
  durlab profile --compare
  durlab profile --batches 100 --pages 100 --page-size 100 --compare`
	f := c.Flags()
	f.StringVar(&opts.cpuOut, "out", "main.prof", "write the CPU profile (pprof format) to this file; empty for none")
	f.StringVar(&opts.wallOut, "wall-out", "main.wall.prof", "write the wall-clock profile (fgprof, pprof format) to this file; empty for none")
	f.BoolVar(&opts.noDurability, "no-durability", false, "run the identical work with no DBOS at all")
	f.BoolVar(&opts.compare, "compare", false, "run with no durability, then durably, and report the ratio")
	f.IntVar(&opts.top, "top", 8, "how many packages to list by CPU")
	return c
}

// validate checks profile's own flags; newExperimentCmd checked the
// experiment's.
func (o *profileOptions) validate() error {
	switch {
	case o.noDurability && o.compare:
		return usagef("--no-durability and --compare exclude each other: --compare runs both")
	case o.noDurability && o.params.Queue != "":
		return usagef("--queue needs durability: it enqueues the batch workflows for workers")
	case o.cpuOut != "" && o.cpuOut == o.wallOut:
		return usagef("--out and --wall-out name the same file %q", o.cpuOut)
	case o.top < 0:
		return usagef("--top must not be negative, got %d", o.top)
	}
	return nil
}

// profileReport is the JSON report of profile: the experiment report's
// fields, unchanged, plus the breakdown.
type profileReport struct {
	lab.Report
	Profile profiling.Breakdown `json:"profile"`
}

func runProfile(ctx context.Context, o *profileOptions) error {
	g := o.global
	cfg, err := g.resolve()
	if err != nil {
		return err
	}
	rec, err := profiling.Create(o.cpuOut, o.wallOut)
	if err != nil {
		return usagef("cannot write the profile: %v", unwrapPathError(err))
	}
	defer rec.Stop()
	bd := profiling.Breakdown{Mode: "durable", Users: o.params.Input.Users(), CPUProfile: o.cpuOut, WallProfile: o.wallOut}
	var rep, plainRep lab.Report
	var timings *lab.Timings
	var wall time.Duration
	if o.noDurability || o.compare {
		// The plain run goes first, before the runtime opens and its Launch
		// recovers anything, so the two runs never share the machine.
		var t lab.Timings
		var d time.Duration
		plainRep, d, err = runPlainProfile(ctx, o, cfg, &t, rec, o.noDurability)
		if err != nil {
			return err
		}
		plain := profiling.Ms(d)
		bd.PlainWallMs = &plain
		bd.Mode, rep, timings, wall = "plain", plainRep, &t, d
	}
	if !o.noDurability {
		if o.compare {
			bd.Mode = "compare"
		}
		var cp lab.Checkpoints
		var startup time.Duration
		rep, cp, timings, startup, wall, err = runDurableProfile(ctx, o, cfg, rec)
		if err != nil {
			return err
		}
		bd.StartupMs = profiling.Ms(startup)
		bd.Workflows, bd.Steps, bd.Checkpoints = cp.Workflows, cp.Steps, cp.Total
	}
	if err := rec.Stop(); err != nil {
		return fmt.Errorf("writing the profiles: %w", err)
	}
	bd.Fill(wall, timings.Generation(), timings.StoreWrites(), timings.Ledger())
	if err := bd.ReadCPU(o.top); err != nil {
		return err
	}
	if o.compare && !plainRep.AsExpected {
		rep.AsExpected, rep.Lesson = false, plainRep.Lesson
	}
	switch {
	case rep.AsExpected && rep.Attached:
		rep.Lesson = "resumed a workflow an earlier run left pending: the times cover only what was left of it; run again for a whole run"
	case rep.AsExpected:
		rep.Lesson = bd.Lesson()
	}
	if cfg.json {
		if err := json.NewEncoder(g.io.Out).Encode(profileReport{rep, bd}); err != nil {
			return err
		}
	} else {
		if err := printReport(g.io, false, rep, wall); err != nil {
			return err
		}
		if err := printBreakdown(g.io.Out, bd); err != nil {
			return err
		}
	}
	if !rep.AsExpected {
		return errNotAsExpected
	}
	return nil
}

// runPlainProfile runs the work with no DBOS and builds its report.
// profiled: the profiles cover this run.
func runPlainProfile(ctx context.Context, o *profileOptions, cfg resolved, t *lab.Timings, rec *profiling.Recording, profiled bool) (lab.Report, time.Duration, error) {
	// The plain run has no DBOS of its own: a client tells it which
	// workflows are finished, so it empties the table as a durable run would.
	p := workflows.Plain{Store: cfg.store, Input: o.params.Input, Timings: t}
	in, err := openClient(ctx, cfg, o.global.io)
	var none errNoSystemDB
	switch {
	case errors.As(err, &none): // no system database: no workflow to judge
	case err != nil:
		return lab.Report{}, 0, err
	default:
		p.Client = in.client
	}
	// The client has done its part once the work starts; closed then, it
	// takes no time from the measured run.
	closeClient := func() {
		if in != nil {
			in.Close()
			in = nil
		}
	}
	defer closeClient()
	bar := newProgress(o.global.io, cfg.json, "no durability", o.params.Batches)
	p.Progress = bar.update
	p.Start = func() error {
		closeClient()
		if profiled {
			if err := rec.Start(); err != nil {
				return err
			}
		}
		bar.start()
		return nil
	}
	rep, d, err := workflows.RunPlain(ctx, p)
	bar.finish()
	return rep, d, interruption(ctx, err)
}

// runDurableProfile opens the runtime, runs the experiment under the
// profiles and counts what DBOS checkpointed.
func runDurableProfile(ctx context.Context, o *profileOptions, cfg resolved, rec *profiling.Recording) (rep lab.Report, cp lab.Checkpoints, t *lab.Timings, startup, wall time.Duration, err error) {
	g := o.global
	bar := newProgress(g.io, cfg.json, "durable", o.params.Batches)
	opened := time.Now()
	rt, closeRuntime, err := o.openRuntime(ctx, cfg, bar.update)
	if err != nil {
		return
	}
	defer closeRuntime()
	startup = time.Since(opened)
	if err = rec.Start(); err != nil {
		return
	}
	bar.start()
	start := time.Now()
	rep, err = rt.Run(ctx, o.exp, o.params)
	wall = time.Since(start)
	bar.finish()
	if err != nil {
		err = interruption(ctx, err)
		return
	}
	if err = rec.Stop(); err != nil {
		return
	}
	cp, err = rt.Checkpoints(rep.WorkflowID)
	return rep, cp, rt.Timings(), startup, wall, err
}
