package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/explore"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/workflows"
)

// exploreOptions are explore's own flags.
type exploreOptions struct {
	exp          *experimentOptions
	crashPoints  string // "" off, "all", or A..B
	seeds        string
	kills        int
	killWithin   time.Duration
	parallel     int
	trialTimeout time.Duration
	keep         bool
}

func newExploreCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "explore EXPERIMENT [flags] (--crash-points [A..B] | --seeds A..B [--kills N])",
		Short: "Crash an experiment at every crash point, or run it over many seeds, and check its guarantee",
		Long: `Runs an experiment many times, each trial in a data folder (or Postgres
databases) of its own, as real processes restarted after each death as
'durlab run --until-success' does, and checks the experiment's guarantee
after each against the store, the attempt ledger and the system database
directly, never against the report.

--crash-points first runs the experiment once, fault-free, to list every
crash point its code reaches (the start and end of each step, right after
each store commit, each child workflow's start and return, the experiment's
own crash points), then crashes trial k exactly at point k (A..B: only
those). --seeds A..B runs one trial per seed with the experiment's random
fault knobs, plus --kills external SIGKILLs per trial at moments the seed
draws within --kill-within of a process's start; it prints the
distributions.

Exit 0 when the guarantee held everywhere, 1 when it failed somewhere (the
failing trials and the commands that replay them are printed), 2 for bad
usage. Trials that pass leave nothing on disk unless --keep; failed and hung
ones keep their folder.`,
		Example: `  durlab explore exactly-once --crash-points
  durlab explore dedup --batches 2 --pages 2 --crash-points 1..20
  durlab explore dedup --seeds 1..50 --kills 2`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown experiment %q for explore: choose one of %s", args[0], experimentNames())
			}
			return usagef("explore needs an experiment: %s", experimentNames())
		},
	}
	opts := &exploreOptions{}
	f := c.PersistentFlags()
	f.StringVar(&opts.crashPoints, "crash-points", "", "crash at every crash point (or at A..B of them)")
	f.Lookup("crash-points").NoOptDefVal = "all"
	f.StringVar(&opts.seeds, "seeds", "", "one trial per seed of A..B, with the random fault knobs")
	f.IntVar(&opts.kills, "kills", 0, "with --seeds: external SIGKILLs per trial")
	f.DurationVar(&opts.killWithin, "kill-within", 0, "with --kills: a kill lands within this long of a process's start (default: as long as the first seed's run takes, timed first)")
	f.IntVar(&opts.parallel, "parallel", runtime.NumCPU(), "trials at once")
	f.DurationVar(&opts.trialTimeout, "trial-timeout", 2*time.Minute, "a trial still running after this long is reported as hung, and its folder kept")
	f.BoolVar(&opts.keep, "keep", false, "keep every trial's folder (and Postgres databases)")
	for _, exp := range workflows.Experiments() {
		c.AddCommand(newExploreExperimentCmd(g, exp, opts))
	}
	return c
}

func newExploreExperimentCmd(g *globalOptions, exp *lab.Experiment, opts *exploreOptions) *cobra.Command {
	c := newExperimentCmd(g, exp, func(eo *experimentOptions) error {
		opts.exp = eo
		return nil
	})
	// --crash-points takes an optional value, which pflag reads only as
	// --crash-points=A..B: a range written after a space is one too.
	spacedRange := func(args []string) bool {
		if opts.crashPoints != "all" || len(args) != 1 {
			return false
		}
		_, err := explore.ParseRange(args[0])
		return err == nil
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if spacedRange(args) {
			return nil
		}
		return noArgs(cmd, args)
	}
	inner := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if spacedRange(args) {
			opts.crashPoints, args = args[0], nil
		}
		if err := inner(cmd, args); err != nil {
			return err
		}
		if err := opts.validate(cmd); err != nil {
			return err
		}
		return runExplore(cmd.Context(), cmd, opts)
	}
	return c
}

func (o *exploreOptions) validate(cmd *cobra.Command) error {
	switch {
	case (o.crashPoints == "") == (o.seeds == ""):
		return usagef("explore needs --crash-points or --seeds A..B, and not both")
	case o.crashPoints != "" && cmd.Flags().Changed("kills"):
		return usagef("--kills goes with --seeds: a crash-point trial crashes at its point only")
	case o.crashPoints != "" && len(o.exp.drawing) > 0:
		return usagef("a crash-point trial draws no random fault: drop %s, or explore it with --seeds", strings.Join(o.exp.drawing, ", "))
	case o.crashPoints != "" && (changed(cmd, lab.KnobCrashProb) || changed(cmd, lab.KnobCommitCrashProb)) &&
		(o.exp.params.CrashProb > 0 || o.exp.params.CommitCrashProb > 0):
		return usagef("a crash-point trial crashes at its point only: drop --crash-prob and --commit-crash-prob")
	case o.exp.faults != "":
		return usagef("explore chooses the faults itself: drop --faults (paste a trial's replay command to replay it)")
	case o.kills < 0:
		return usagef("--kills must not be negative, got %d", o.kills)
	case cmd.Flags().Changed("kill-within") && o.killWithin <= 0:
		return usagef("--kill-within must be positive, got %s", o.killWithin)
	case o.parallel < 1:
		return usagef("--parallel must be at least 1, got %d", o.parallel)
	case o.trialTimeout <= 0:
		return usagef("--trial-timeout must be positive, got %s", o.trialTimeout)
	}
	return nil
}

func changed(cmd *cobra.Command, k lab.Knob) bool { return cmd.Flags().Changed(string(k)) }

// experimentFlags are the experiment's flags as the user gave them, for
// every trial: not the ones explore sets itself.
func experimentFlags(cmd *cobra.Command) []string {
	own := map[string]bool{"crash-points": true, "seeds": true, "kills": true, "kill-within": true, "parallel": true,
		"trial-timeout": true, "keep": true, "seed": true, "faults": true, "output": true, "data-dir": true,
		"system-db": true, "store": true, "quiet": true, "log-level": true}
	var flags []string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if !own[f.Name] {
			flags = append(flags, "--"+f.Name+"="+f.Value.String())
		}
	})
	return flags
}

func runExplore(ctx context.Context, cmd *cobra.Command, o *exploreOptions) error {
	g := o.exp.global
	g.jsonlOK = true
	cfg, err := g.resolveFor(false)
	if err != nil {
		return err
	}
	pgSys, pgStore := dburl.IsPostgres(cfg.systemDB), dburl.IsPostgres(cfg.store)
	if pgSys != pgStore {
		return usagef("explore on Postgres needs both --system-db and --store as postgres:// URLs: each trial gets databases of its own on those servers")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the durlab binary to run: %w", err)
	}
	// The ranges first: a usage error leaves no folder behind.
	var points, seeds explore.Range
	if o.crashPoints != "" {
		if o.crashPoints != "all" {
			if points, err = explore.ParseRange(o.crashPoints); err != nil || points.From < 1 {
				return usagef("--crash-points: %q is not a range of points A..B, from 1", o.crashPoints)
			}
		}
	} else if seeds, err = explore.ParseRange(o.seeds); err != nil {
		return usagef("--seeds: %v", err)
	}
	dir, err := os.MkdirTemp("", "durlab-explore-*")
	if err != nil {
		return err
	}
	// Kept only when asked to, or to replay a failure of a finished run.
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	xo := &explore.Options{Experiment: o.exp.exp, Experiments: workflows.Experiments(), Params: o.exp.params,
		Flags: experimentFlags(cmd), Binary: self, Env: trialEnv(), Dir: dir, Parallel: o.parallel,
		TrialTimeout: o.trialTimeout, Keep: o.keep}
	if pgSys {
		xo.SystemDB, xo.Store = cfg.systemDB, cfg.store
	}
	var res explore.Result
	if o.crashPoints != "" {
		sites, err := xo.Points(ctx)
		if err != nil {
			return err
		}
		if points.From > len(sites) {
			return usagef("--crash-points %s: %s reaches %d crash points", o.crashPoints, o.exp.exp.Name, len(sites))
		}
		fmt.Fprintf(g.io.Err, "durlab explore: %s reaches %d crash points; one trial each, %d at a time, checking that %s\n",
			o.exp.exp.Name, len(sites), o.parallel, o.exp.exp.Guarantee)
		bar := newProgress(g.io, cfg.json || cfg.jsonl, "trials", "trials", 0)
		xo.Progress = bar.update
		bar.start()
		res = xo.CrashPoints(ctx, sites, points)
		bar.finish()
	} else {
		r := seeds
		killWithin := o.killWithin
		if o.kills > 0 && !cmd.Flags().Changed("kill-within") {
			d, err := xo.Calibrate(ctx, int64(r.From))
			if err != nil {
				return err
			}
			killWithin = d
		}
		fmt.Fprintf(g.io.Err, "durlab explore: %s over seeds %d..%d, %d at a time, checking that %s\n",
			o.exp.exp.Name, r.From, r.To, o.parallel, o.exp.exp.Guarantee)
		if o.kills > 0 {
			fmt.Fprintf(g.io.Err, "durlab explore: %s from outside per trial, each within %s of a process's start\n",
				lab.Count(int64(o.kills), "SIGKILL", "SIGKILLs"), killWithin.Round(time.Millisecond))
		}
		bar := newProgress(g.io, cfg.json || cfg.jsonl, "trials", "trials", r.To-r.From+1)
		xo.Progress = bar.update
		bar.start()
		res = xo.Seeds(ctx, r, o.kills, killWithin)
		bar.finish()
	}
	if ctx.Err() != nil {
		return lab.ErrInterrupted
	}
	keep = o.keep || res.Failed > 0
	switch {
	case cfg.jsonl:
		enc := json.NewEncoder(g.io.Out)
		for _, t := range res.Trials {
			enc.Encode(t)
		}
		summary := res
		summary.Trials = nil
		enc.Encode(summary)
	case cfg.json:
		json.NewEncoder(g.io.Out).Encode(res)
	default:
		printExplore(g.io.Out, res, g.io.OutIsTerminal)
	}
	if res.Failed > 0 {
		return errNotAsExpected
	}
	return nil
}

// trialEnv is this process's environment without the database settings: a
// trial names its own databases.
func trialEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR", "DURLAB_EXECUTOR_ID":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func printExplore(out io.Writer, res explore.Result, terminal bool) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	held := func(t explore.Trial) string {
		if t.Held {
			return "yes"
		}
		return "NO: " + t.Why
	}
	dups := func(t explore.Trial) string {
		return fmt.Sprintf("%d (%d retry, %d recovery, %d commit crash)", t.Duplicates, t.DuplicatesFromRetries, t.DuplicatesFromRecoveries, t.DuplicatesFromCommitCrashes)
	}
	if res.Mode == "crash-points" {
		fmt.Fprintln(w, "K\tSITE\tSTATUS\tROWS\tUNIQUE\tDUPLICATES\tRECOVERIES\tHELD")
		for _, t := range res.Trials {
			fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%s\t%d\t%s\n", t.K, t.Site, dash(t.Status), t.Rows, t.Unique, dups(t), t.Recoveries, held(t))
		}
	} else {
		fmt.Fprintln(w, "SEED\tKILLS\tSTATUS\tROWS\tUNIQUE\tDUPLICATES\tCRASHES\tRECOVERIES\tATTEMPTS\tWALL\tHELD")
		for _, t := range res.Trials {
			fmt.Fprintf(w, "%d\t%d\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t%s\n", t.Seed, t.Kills, dash(t.Status), t.Rows, t.Unique, dups(t),
				t.Crashes, t.Recoveries, t.StepAttempts, time.Duration(t.WallMs)*time.Millisecond, held(t))
		}
	}
	w.Flush()
	if len(res.Stats) > 0 {
		fmt.Fprintln(out)
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "\tMIN\tMEDIAN\tP90\tMAX\t")
		for _, s := range res.Stats {
			fmt.Fprintf(w, "%s\t%g\t%g\t%g\t%g\t\n", s.Name, s.Min, s.Median, s.P90, s.Max)
		}
		w.Flush()
		if terminal {
			printHistogram(out, res.Stats[0])
		}
	}
	fmt.Fprintln(out)
	noun := "crash points"
	if res.Mode == "seeds" {
		noun = "seeds"
	}
	line := fmt.Sprintf("%s: guarantee held at %d of %d %s", res.Experiment, res.Held, len(res.Trials), noun)
	if res.WithDuplicates > 0 {
		line += fmt.Sprintf("; %d of %d wrote duplicates", res.WithDuplicates, len(res.Trials))
		switch {
		case res.Failed > 0:
		case res.CountedAway:
			line += ", all counted away by the window-function count and explained by the ledger"
		default:
			line += ", each explained by the ledger"
		}
	}
	fmt.Fprintf(out, "%s (%s)\n", line, time.Duration(res.WallMs)*time.Millisecond)
	if res.Mode == "seeds" {
		fmt.Fprintf(out, "replay a row: %s (its kills from outside aside; -o json gives each row's faults)\n", res.ReplayRow)
	} else {
		fmt.Fprintf(out, "replay a row: %s\n", res.ReplayRow)
	}
	for _, t := range res.Trials {
		if t.Held || t.Why == "stopped" {
			continue
		}
		label := fmt.Sprintf("seed %d", t.Seed)
		if res.Mode == "crash-points" {
			label = fmt.Sprintf("point %d (%s)", t.K, t.Site)
		}
		fmt.Fprintf(out, "\n%s: %s\n  replay: %s\n", label, t.Why, t.Replay)
		if t.Kills > 0 {
			fmt.Fprintf(out, "  (it also had %d kills from outside, which no schedule replays)\n", t.Kills)
		}
		if t.Kept != "" {
			fmt.Fprintf(out, "  kept:   %s\n", t.Kept)
		}
	}
}

// printHistogram draws a distribution as bars, on a terminal.
func printHistogram(out io.Writer, s explore.Stat) {
	const buckets, width = 8, 40
	span := s.Max - s.Min
	counts := make([]int, buckets)
	for _, v := range s.Values {
		b := buckets - 1
		if span > 0 {
			b = min(int((v-s.Min)/span*buckets), buckets-1)
		}
		counts[b]++
	}
	most := 1
	for _, c := range counts {
		most = max(most, c)
	}
	fmt.Fprintf(out, "\n%s:\n", s.Name)
	for i, c := range counts {
		lo := s.Min + span*float64(i)/buckets
		fmt.Fprintf(out, "  %8.0f  %s %d\n", lo, strings.Repeat("█", c*width/most), c)
	}
}
