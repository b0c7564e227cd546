package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/profiling"
	"github.com/durlab/durlab/store"
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
  store writes    inserting the pages into the users table
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
	exp, _ := workflows.Lookup("profile")
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
	c.Long = exp.Long + "\n" + profileHelp + fmt.Sprintf("\n\nPorted from the Python experiment %s.", exp.Seed)
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

// breakdown is where the time of a profile run went. In JSON it is the
// report's "profile" object.
type breakdown struct {
	Mode        string  `json:"mode"` // durable, plain or compare
	Users       int64   `json:"users"`
	WallMs      float64 `json:"wall_ms"`
	StartupMs   float64 `json:"startup_ms"` // DBOS start-up, not in wall_ms
	Workflows   int     `json:"workflows"`
	Steps       int     `json:"steps"`
	Checkpoints int     `json:"checkpoints"`
	BusinessMs  float64 `json:"business_logic_ms"`
	StoreMs     float64 `json:"store_writes_ms"`
	RestMs      float64 `json:"rest_ms"`
	// PlainWallMs and Ratio are set when a plain run was measured.
	PlainWallMs *float64 `json:"plain_wall_ms"`
	Ratio       *float64 `json:"ratio"`
	// PerCheckpointMs is the overhead of one checkpoint, computed as
	// PerCheckpointBasis says; null with no checkpoints.
	PerCheckpointMs    *float64      `json:"overhead_per_checkpoint_ms"`
	PerCheckpointBasis string        `json:"overhead_basis"`
	CPUProfile         string        `json:"cpu_profile"`
	WallProfile        string        `json:"wall_profile"`
	CPUSampledMs       float64       `json:"cpu_sampled_ms"`
	TopPackages        []packageTime `json:"top_packages"`
}

type packageTime struct {
	Package string  `json:"package"`
	CPUMs   float64 `json:"cpu_ms"`
	Percent float64 `json:"percent"`
}

// profileReport is the JSON report of profile: the experiment report's
// fields, unchanged, plus the breakdown.
type profileReport struct {
	workflows.Report
	Profile breakdown `json:"profile"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

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
	in := o.params.Input
	bd := breakdown{Mode: "durable", Users: in.Users(), CPUProfile: o.cpuOut, WallProfile: o.wallOut}
	var rep, plainRep workflows.Report
	var timings *workflows.Timings
	var wall time.Duration
	if o.noDurability || o.compare {
		// The plain run goes first, before the lab opens and its Launch
		// recovers anything, so the two runs never share the machine.
		var t workflows.Timings
		var d time.Duration
		plainRep, d, err = runPlainProfile(ctx, o, cfg, &t, rec, o.noDurability)
		if err != nil {
			return err
		}
		plain := ms(d)
		bd.PlainWallMs = &plain
		bd.Mode, rep, timings, wall = "plain", plainRep, &t, d
	}
	if !o.noDurability {
		if o.compare {
			bd.Mode = "compare"
		}
		var cp workflows.Checkpoints
		var startup time.Duration
		rep, cp, timings, startup, wall, err = runDurableProfile(ctx, o, cfg, rec)
		if err != nil {
			return err
		}
		bd.StartupMs = ms(startup)
		bd.Workflows, bd.Steps, bd.Checkpoints = cp.Workflows, cp.Steps, cp.Total
	}
	if err := rec.Stop(); err != nil {
		return fmt.Errorf("writing the profiles: %w", err)
	}
	bd.fill(wall, timings.Generate(), timings.Store())
	if o.cpuOut != "" {
		cpu, err := profiling.TopPackagesFile(o.cpuOut, o.top)
		if err != nil {
			return err
		}
		bd.CPUSampledMs = ms(cpu.Total)
		bd.TopPackages = []packageTime{}
		for _, p := range cpu.Packages {
			bd.TopPackages = append(bd.TopPackages, packageTime{p.Package, ms(p.CPU), math.Round(p.Share*1000) / 10})
		}
	}
	// A resumed durable run keeps the sizes it started with; a plain run
	// has only this command's.
	if in := rep.RunInput(); in.Pages > 0 {
		rep.Expected = o.exp.Expected(workflows.Params{Input: in})
	} else {
		rep.Expected = o.exp.Expected(o.params)
	}
	if o.compare && !plainRep.AsExpected {
		rep.AsExpected, rep.Lesson = false, plainRep.Lesson
	}
	switch {
	case rep.AsExpected && rep.Attached:
		rep.Lesson = "resumed a workflow an earlier run left pending: the times cover only what was left of it; run again for a whole run"
	case rep.AsExpected:
		rep.Lesson = bd.lesson()
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

// lesson is one sentence on the price of durability this run measured.
func (bd *breakdown) lesson() string {
	switch {
	case bd.Mode == "plain":
		return "no durability: the same pages and inserts with no workflow, step or checkpoint; a crash would lose the run"
	case bd.Ratio != nil && bd.PerCheckpointMs != nil:
		return fmt.Sprintf("durability took %.2fx the time of the identical work with no DBOS: %.3f ms for each of %d checkpoints",
			*bd.Ratio, *bd.PerCheckpointMs, bd.Checkpoints)
	case bd.WallMs > 0:
		return fmt.Sprintf("%d checkpoints made %d users durable; %.0f%% of the time went to DBOS orchestration and checkpoints (--compare measures the price against no durability)",
			bd.Checkpoints, bd.Users, bd.RestMs/bd.WallMs*100)
	}
	return ""
}

// fill computes the time split and the overhead per checkpoint from the
// run's wall time and its time in fake generation and in store writes.
func (bd *breakdown) fill(wall, generate, storeWrites time.Duration) {
	bd.WallMs = ms(wall)
	bd.BusinessMs, bd.StoreMs = ms(generate), ms(storeWrites)
	bd.RestMs = ms(wall - generate - storeWrites)
	if bd.PlainWallMs != nil && bd.Mode == "compare" && *bd.PlainWallMs > 0 {
		r := math.Round(bd.WallMs / *bd.PlainWallMs * 100) / 100
		bd.Ratio = &r
	}
	if bd.Checkpoints == 0 {
		return
	}
	var per float64
	if bd.Ratio != nil {
		bd.PerCheckpointBasis = "(durable - plain) / checkpoints"
		per = (bd.WallMs - *bd.PlainWallMs) / float64(bd.Checkpoints)
	} else {
		bd.PerCheckpointBasis = "rest / checkpoints"
		per = bd.RestMs / float64(bd.Checkpoints)
	}
	per = math.Round(per*1000) / 1000
	bd.PerCheckpointMs = &per
}

// runPlainProfile runs the work with no DBOS, on its own connection to the
// store, and builds its report. profiled: the profiles cover this run.
func runPlainProfile(ctx context.Context, o *profileOptions, cfg resolved, t *workflows.Timings, rec *profiling.Recording, profiled bool) (workflows.Report, time.Duration, error) {
	st, err := store.Open(ctx, cfg.store)
	if err != nil {
		return workflows.Report{}, 0, err
	}
	defer st.Close()
	tb := st.Table(store.Strict) // the durable run's table, as SPEC has it for profile
	if err := prepareForPlain(ctx, o, cfg, tb); err != nil {
		return workflows.Report{}, 0, err
	}
	runID := "plain-" + uuid.NewString()
	bar := newProgress(o.global.io, cfg.json, "no durability", o.params.Batches)
	if profiled {
		if err := rec.Start(); err != nil {
			return workflows.Report{}, 0, err
		}
	}
	bar.start()
	start := time.Now()
	c, err := workflows.RunPlain(ctx, tb, o.params.Input, runID, t, bar.update)
	d := time.Since(start)
	bar.finish()
	// The plain run's rows served their purpose; a durable run would leave
	// them to the next run's emptying, which cannot tell a plain run is over.
	if _, derr := tb.Delete(context.WithoutCancel(ctx), []string{runID}); derr != nil && err == nil {
		err = derr
	}
	if err != nil {
		return workflows.Report{}, 0, interruption(ctx, err)
	}
	result := c.Latest
	want := o.params.Input.Users()
	rep := workflows.Report{Experiment: o.exp.Name, WorkflowID: runID, Status: "SUCCESS", Result: result,
		Rows: c.Rows, UniqueUsers: c.UniqueUsers, Duplicates: c.Rows - c.UniqueUsers, Seed: o.params.Seed}
	rep.AsExpected = result == want && c.UniqueUsers == want
	if !rep.AsExpected {
		rep.Lesson = fmt.Sprintf("the run with no durability counted %d of %d users", result, want)
	}
	return rep, d, nil
}

// runDurableProfile opens the lab, runs the experiment under the profiles
// and counts what DBOS checkpointed.
func runDurableProfile(ctx context.Context, o *profileOptions, cfg resolved, rec *profiling.Recording) (rep workflows.Report, cp workflows.Checkpoints, t *workflows.Timings, startup, wall time.Duration, err error) {
	g := o.global
	bar := newProgress(g.io, cfg.json, "durable", o.params.Batches)
	opened := time.Now()
	lab, closeLab, err := o.openLab(ctx, cfg, bar.update)
	if err != nil {
		return
	}
	defer closeLab()
	startup = time.Since(opened)
	if err = rec.Start(); err != nil {
		return
	}
	bar.start()
	start := time.Now()
	rep, err = o.exp.Run(ctx, lab, o.params)
	wall = time.Since(start)
	bar.finish()
	if err != nil {
		err = interruption(ctx, err)
		return
	}
	if err = rec.Stop(); err != nil {
		return
	}
	cp, err = lab.Checkpoints(ctx, rep.WorkflowID)
	return rep, cp, lab.Timings(), startup, wall, err
}

// printBreakdown prints where the time went, after the report.
func printBreakdown(out io.Writer, bd breakdown) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	share := func(v float64) string {
		if bd.WallMs <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f%%", v/bd.WallMs*100)
	}
	durable := bd.Mode != "plain"
	fmt.Fprintf(w, "\nbreakdown\t%s run, %d users\n", bd.Mode, bd.Users)
	fmt.Fprintf(w, "wall time\t%s", fmtMs(bd.WallMs))
	if durable {
		fmt.Fprintf(w, ", after %s of DBOS start-up", fmtMs(bd.StartupMs))
	}
	fmt.Fprintln(w)
	if durable {
		fmt.Fprintf(w, "workflows\t%d\n", bd.Workflows)
		fmt.Fprintf(w, "steps\t%d\n", bd.Steps)
		fmt.Fprintf(w, "checkpoints\t%d\n", bd.Checkpoints)
	} else {
		fmt.Fprintf(w, "durability\tnone: no workflow, step or checkpoint\n")
	}
	rest := "the loop, emptying finished runs' rows and the final counts"
	if durable {
		rest = "DBOS orchestration and checkpoints, emptying finished runs' rows and the final counts"
	}
	fmt.Fprintf(w, "business logic\t%s  %s  fake generation\n", fmtMs(bd.BusinessMs), share(bd.BusinessMs))
	fmt.Fprintf(w, "store writes\t%s  %s  inserting the pages\n", fmtMs(bd.StoreMs), share(bd.StoreMs))
	fmt.Fprintf(w, "rest\t%s  %s  %s\n", fmtMs(bd.RestMs), share(bd.RestMs), rest)
	if durable && bd.PlainWallMs != nil {
		fmt.Fprintf(w, "no durability\t%s for the identical work\n", fmtMs(*bd.PlainWallMs))
	}
	if bd.Ratio != nil {
		fmt.Fprintf(w, "price\t%.2fx the time with no durability\n", *bd.Ratio)
	}
	if bd.PerCheckpointMs != nil {
		fmt.Fprintf(w, "per checkpoint\t%.3f ms overhead = %s\n", *bd.PerCheckpointMs, bd.PerCheckpointBasis)
	}
	if bd.CPUProfile != "" && len(bd.TopPackages) == 0 {
		fmt.Fprintf(w, "top packages\tnone: no CPU sample in %s (one every 10 ms of CPU)\n", bd.CPUProfile)
	} else if bd.CPUProfile != "" {
		fmt.Fprintf(w, "top packages\tby CPU: %s sampled in %s\n", fmtMs(bd.CPUSampledMs), bd.CPUProfile)
		for _, p := range bd.TopPackages {
			fmt.Fprintf(w, "\t%5.1f%%  %7s  %s\n", p.Percent, fmtMs(p.CPUMs), p.Package)
		}
	}
	if bd.CPUProfile != "" {
		fmt.Fprintf(w, "CPU profile\t%s: go tool pprof -http=: %s\n", bd.CPUProfile, bd.CPUProfile)
	}
	if bd.WallProfile != "" {
		fmt.Fprintf(w, "wall profile\t%s: go tool pprof -http=: %s\n", bd.WallProfile, bd.WallProfile)
	}
	return w.Flush()
}

// fmtMs prints milliseconds with three significant digits.
func fmtMs(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fs", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

// progress shows batches done out of the total, and the rate, on a
// terminal's stderr; it does nothing elsewhere and with --output json.
type progress struct {
	bar *progressbar.ProgressBar
}

func newProgress(streams IOStreams, asJSON bool, desc string, total int) *progress {
	if !streams.IsTerminal || asJSON {
		return &progress{}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(streams.Err),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetItsString("batches"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish())
	return &progress{bar: bar}
}

// start shows the empty bar, once the notices before the run are printed.
func (p *progress) start() {
	if p.bar != nil {
		p.bar.RenderBlank()
	}
}

// update is a workflows.Config.Progress function.
func (p *progress) update(done, total int) {
	if p.bar == nil {
		return
	}
	if total != p.bar.GetMax() {
		p.bar.ChangeMax(total) // a resumed workflow's own size
	}
	p.bar.Set(done)
}

// finish clears the bar, so the report starts on a clean line.
func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar.Clear()
	}
}

// prepareForPlain empties the table of finished workflows for the
// plain run, as a durable run would: the plain run has no DBOS of its own,
// so a client tells which workflows are finished.
func prepareForPlain(ctx context.Context, o *profileOptions, cfg resolved, tb store.Table) error {
	in, err := openClient(ctx, cfg, o.global.io)
	var none errNoSystemDB
	if errors.As(err, &none) {
		return nil // no system database: no workflow to judge
	}
	if err != nil {
		return err
	}
	defer in.Close()
	return workflows.PrepareStore(ctx, in.client, tb)
}
