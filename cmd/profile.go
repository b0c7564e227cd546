package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
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
	c.Long = exp.Long + "\n" + profileHelp + "\n\n" + originText(exp)
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
		if err := printReport(g.io, false, rep, wall, seedDecides(o.params.Faults)); err != nil {
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
	p.OpenClient = func() (dbos.Client, func(), error) {
		in, err := openClient(ctx, cfg, o.global.io)
		var none errNoSystemDB
		switch {
		case errors.As(err, &none): // no system database: no workflow to judge
			return nil, nil, nil
		case err != nil:
			return nil, nil, err
		}
		return in.client, in.Close, nil
	}
	bar := newProgress(o.global.io, cfg.json, "no durability", "batches", o.params.Batches)
	p.Progress = bar.update
	p.Start = func() error {
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
	return rep, d, err
}

// runDurableProfile opens the runtime, runs the experiment under the
// profiles and counts what DBOS checkpointed.
func runDurableProfile(ctx context.Context, o *profileOptions, cfg resolved, rec *profiling.Recording) (rep lab.Report, cp lab.Checkpoints, t *lab.Timings, startup, wall time.Duration, err error) {
	g := o.global
	bar := newProgress(g.io, cfg.json, "durable", "batches", o.params.Batches)
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
	o.params.OnStart = o.onStart
	rep, err = rt.Run(ctx, o.exp, o.params)
	wall = time.Since(start)
	bar.finish()
	if err != nil {
		return
	}
	if err = rec.Stop(); err != nil {
		return
	}
	cp, err = rt.Checkpoints(rep.WorkflowID)
	return rep, cp, rt.Timings(), startup, wall, err
}
