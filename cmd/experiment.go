package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/internal/startfd"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/workflows"
)

// experimentOptions are one experiment command's flags.
type experimentOptions struct {
	global *globalOptions
	exp    *lab.Experiment
	params lab.Params
	seed   int64
	// seedSet is false when --seed was not given: a random seed is drawn
	// and printed.
	seedSet bool
	// faults is --faults; schedule its parse; drawing the fault knobs
	// given with a probability strictly between 0 and 1, which a schedule
	// replaces: a probability of 0 or 1 decides nothing, so it stays.
	faults   string
	schedule *lab.Schedule
	drawing  []string
	// newRun: --new, start a new workflow even where one was left pending.
	newRun bool
	// given tells whether a flag was on the command line.
	given func(flag string) bool
	// outageTimeout is --outage-timeout: how long an unreachable database
	// is waited out before the process stops with exit 4.
	outageTimeout time.Duration
}

// randomKnobs are the fault knobs a --faults schedule replaces, unless 1.
var randomKnobs = []lab.Knob{lab.KnobFailProb, lab.KnobGenFailProb, lab.KnobCrashProb, lab.KnobCommitCrashProb}

func experimentCommands(g *globalOptions) []*cobra.Command {
	var cmds []*cobra.Command
	for _, exp := range workflows.Experiments() {
		if exp == workflows.Profile {
			continue // newProfileCmd: the experiment's flags plus the profiles
		}
		cmds = append(cmds, newExperimentCmd(g, exp, nil))
	}
	return cmds
}

// newExperimentCmd builds the command of one experiment. runF replaces the
// run in parsing tests.
func newExperimentCmd(g *globalOptions, exp *lab.Experiment, runF func(*experimentOptions) error) *cobra.Command {
	opts := &experimentOptions{global: g, exp: exp, params: exp.Defaults}
	c := &cobra.Command{
		Use:   exp.Name,
		Short: exp.Short,
		Long:  exp.Long + "\n\n" + originText(exp),
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts.seedSet, opts.given = c.Flags().Changed("seed"), c.Flags().Changed
			opts.drawing = nil
			for _, k := range randomKnobs {
				f := c.Flags().Lookup(string(k))
				if f == nil || !f.Changed {
					continue
				}
				if p, _ := strconv.ParseFloat(f.Value.String(), 64); p > 0 && p < 1 {
					opts.drawing = append(opts.drawing, "--"+string(k)+" "+f.Value.String())
				}
			}
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runExperiment(c.Context(), opts)
		},
	}
	addExperimentFlags(c.Flags(), exp, &opts.params, &opts.seed)
	c.Flags().StringVar(&opts.faults, "faults", "", "inject exactly these faults instead of the random ones, once each: fail@STEP#ATTEMPT, crash@SITE, crash@point:K, comma-separated, or none (a report's faults replay it)")
	c.Flags().BoolVar(&opts.newRun, "new", false, "start a new workflow even if an earlier process left one pending; it stays PENDING for a later run")
	c.Flags().DurationVar(&opts.outageTimeout, "outage-timeout", lab.DefaultOutageTimeout, "how long to wait for an unreachable database (an outage, a restart) before stopping with exit 4, the workflow left PENDING; under run, counted from the outage's start across restarts")
	c.Flags().StringVar(&opts.params.WorkflowID, "workflow-id", "", "run the main workflow under this ID: the workflow of that ID if it exists (resumed, or reported if it ended), a new one under that ID if not")
	return c
}

// originText says where the experiment comes from, for its help.
func originText(exp *lab.Experiment) string {
	if exp.Origin == "" {
		return "Not among the Python originals (ricleal/dbos_experiments, folder exp13): none of them commits a write together with its checkpoint."
	}
	return fmt.Sprintf("Ported from the Python experiment %s (ricleal/dbos_experiments, folder exp13, %s.py).", exp.Origin, exp.Origin)
}

// addExperimentFlags binds the flags that exp takes into p.
func addExperimentFlags(f *pflag.FlagSet, exp *lab.Experiment, p *lab.Params, seed *int64) {
	f.Int64Var(seed, "seed", 0, "seed of every fault decision (default: random, and printed)")
	d := exp.Defaults
	for _, k := range exp.Knobs {
		switch k {
		case lab.KnobPages:
			f.IntVar(&p.Pages, string(k), d.Pages, "pages per batch")
		case lab.KnobPageSize:
			f.IntVar(&p.PageSize, string(k), d.PageSize, "users per page")
		case lab.KnobBatches:
			f.IntVar(&p.Batches, string(k), d.Batches, "batch child workflows")
		case lab.KnobFailProb:
			f.Float64Var(&p.FailProb, string(k), d.FailProb, "probability that a step fails after its write")
		case lab.KnobGenFailProb:
			f.Float64Var(&p.GenFailProb, string(k), d.GenFailProb, "probability that the generate step fails")
		case lab.KnobCrashProb:
			f.Float64Var(&p.CrashProb, string(k), d.CrashProb, "probability of a crash (SIGKILL) at each crash point")
		case lab.KnobCommitCrashProb:
			f.Float64Var(&p.CommitCrashProb, string(k), d.CommitCrashProb, "probability of a crash right after an insert commits")
		case lab.KnobCrashAfter:
			f.IntVar(&p.CrashAfterBatch, string(k), d.CrashAfterBatch, "crash points start after this batch")
		case lab.KnobAttempts:
			f.IntVar(&p.Attempts, string(k), d.Attempts, "attempts allowed to the retried step")
		case lab.KnobBackoff:
			f.Float64Var(&p.Backoff, string(k), d.Backoff, "factor of the wait between the insert's retries: 0.1 s, then 0.1 s x backoff, ... (ex6's backoff_rate is 0.1: 0.1 s, 0.01 s, ...)")
		case lab.KnobMaxRecoveryAttempts:
			f.IntVar(&p.MaxRecoveryAttempts, string(k), d.MaxRecoveryAttempts, "recoveries DBOS allows before dead-lettering the workflow")
		case lab.KnobWait:
			f.DurationVar(&p.Wait, string(k), d.Wait, "how long to wait for a pending workflow of another executor before starting a new one")
		case lab.KnobQueue:
			f.StringVar(&p.Queue, string(k), d.Queue, "enqueue batch workflows on this DBOS queue for durlab worker processes (this process runs them itself while no worker serves the queue)")
		}
	}
}

func (o *experimentOptions) validate() error {
	p := &o.params
	if o.outageTimeout <= 0 {
		return usagef("--outage-timeout must be positive, got %s", o.outageTimeout)
	}
	for _, f := range []struct {
		name  string
		value int
		taken bool
	}{
		{"--pages", p.Pages, true},
		{"--page-size", p.PageSize, true},
		{"--batches", p.Batches, o.exp.Has(lab.KnobBatches)},
		{"--attempts", p.Attempts, o.exp.Has(lab.KnobAttempts)},
	} {
		if f.taken && f.value <= 0 {
			return usagef("%s must be at least 1, got %d", f.name, f.value)
		}
	}
	if err := checkUsersInMemory(o.exp, p.Input); err != nil {
		return err
	}
	if err := checkProbs(probFlag{"--fail-prob", p.FailProb}, probFlag{"--gen-fail-prob", p.GenFailProb},
		probFlag{"--crash-prob", p.CrashProb}, probFlag{"--commit-crash-prob", p.CommitCrashProb}); err != nil {
		return err
	}
	if o.exp.Has(lab.KnobBackoff) && !(p.Backoff > 0) {
		return usagef("--backoff must be more than 0, got %v", p.Backoff)
	}
	if p.MaxRecoveryAttempts < 0 {
		return usagef("--max-recovery-attempts must not be negative, got %d", p.MaxRecoveryAttempts)
	}
	if p.CrashAfterBatch < 0 {
		return usagef("--crash-after must not be negative, got %d", p.CrashAfterBatch)
	}
	if p.Wait < 0 {
		return usagef("--wait must not be negative, got %s", p.Wait)
	}
	if p.Queue != "" {
		if err := lab.CheckQueueName(p.Queue); err != nil {
			return usageError{err}
		}
	}
	if o.seedSet {
		p.Seed = o.seed
	} else {
		p.Seed = rand.Int64N(1 << 31)
	}
	if p.WorkflowID != "" {
		if err := lab.CheckWorkflowID(p.WorkflowID); err != nil {
			return usageError{err}
		}
		if o.newRun {
			return usagef("--new starts a new workflow and --workflow-id names one: give one of them")
		}
	}
	o.schedule = nil
	if o.faults != "" {
		if len(o.drawing) > 0 {
			return usagef("--faults replaces the random fault knobs: drop %s (a probability of 0 or 1 may stay)", strings.Join(o.drawing, ", "))
		}
		s, err := lab.ParseFaults(o.faults)
		if err != nil {
			return usageError{err}
		}
		o.schedule = s
	}
	return nil
}

// openRuntime opens the experiment's runtime with DBOS's start-up lines held
// back (see logGate); closeRuntime quiets DBOS's shutdown errors, then
// closes it.
func (o *experimentOptions) openRuntime(ctx context.Context, cfg resolved, progress func(done, total int)) (rt *lab.Runtime, closeRuntime func(), err error) {
	cfg.hold()
	rt, err = lab.Open(ctx, lab.Config{
		SystemDB:      cfg.systemDB,
		Store:         cfg.store,
		ExecutorID:    o.global.executor("durlab-" + o.exp.Name),
		Logger:        cfg.logger,
		Notices:       o.global.io.Err,
		Stream:        cfg.stream,
		Faults:        o.params.Faults,
		Schedule:      o.schedule,
		Experiments:   workflows.Experiments(),
		Progress:      progress,
		New:           o.newRun,
		OutageTimeout: o.outageTimeout,
	})
	if err != nil {
		return nil, nil, err
	}
	cfg.flush()
	return rt, func() { cfg.quiet(); rt.Close() }, nil
}

// noteSeed prints the seed drawn for this run, where it decides anything.
func (o *experimentOptions) noteSeed(prefix string) {
	if !o.seedSet && seedDecides(o.params.Faults) {
		fmt.Fprintf(o.global.io.Err, "%s: %s with seed %d (replay with --seed %d)\n", prefix, o.exp.Name, o.params.Seed, o.params.Seed)
	}
}

// onStart is told how the run began: for a new workflow it prints the seed
// drawn; for a resumed one, which runs with its own input, one line per
// flag whose value is not used, and the value that is.
func (o *experimentOptions) onStart(s lab.Start) {
	startfd.Tell(s.WorkflowID)
	if !s.Attached {
		o.noteSeed("durlab")
		return
	}
	for _, line := range o.overridden(s) {
		fmt.Fprintln(o.global.io.Err, "durlab: "+line)
	}
}

// overridden says, for each input flag whose value differs from the
// resumed workflow's own, which value is used.
func (o *experimentOptions) overridden(s lab.Start) []string {
	mine, theirs := o.params.Input, s.Input
	fields := []struct {
		flag         string
		mine, theirs any
		taken        bool
	}{
		{"seed", mine.Seed, theirs.Seed, true},
		{"batches", mine.Batches, theirs.Batches, o.exp.Has(lab.KnobBatches)},
		{"pages", mine.Pages, theirs.Pages, true},
		{"page-size", mine.PageSize, theirs.PageSize, true},
		{"queue", mine.Queue, theirs.Queue, o.exp.Has(lab.KnobQueue)},
	}
	id := s.WorkflowID[:min(len(s.WorkflowID), 8)]
	var lines []string
	for _, f := range fields {
		if !f.taken || f.mine == f.theirs {
			continue
		}
		ours := fmt.Sprintf("--%s %v", f.flag, f.mine)
		switch {
		case f.flag == "seed" && !o.seedSet:
			ours = fmt.Sprintf("the seed drawn (%v)", f.mine)
		case f.flag == "queue" && f.mine == "":
			ours = "running the batches here (no --queue)"
		case o.given == nil || !o.given(f.flag):
			ours += " (the default)"
		}
		used := fmt.Sprintf("--%s %v", f.flag, f.theirs)
		if f.flag == "queue" && f.theirs == "" {
			used = "no --queue"
		}
		if o.params.WorkflowID != "" {
			lines = append(lines, fmt.Sprintf("%s not used: workflow %s, which --workflow-id names, has %s, its own input", ours, id, used))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s not used: resumed workflow %s runs with %s, its own input (--new starts a new workflow with this command's flags)", ours, id, used))
	}
	return lines
}

// checkUsersInMemory refuses what would not fit in memory: a page is
// generated, checkpointed by DBOS as its step's output and written in
// memory, and a batch experiment's insert step holds its batch's pages.
func checkUsersInMemory(e *lab.Experiment, in lab.Input) error {
	if in.PageSize > lab.MaxUsersInMemory {
		return usagef("--page-size %d: at most %d users per page (a page is generated, checkpointed and written in memory, about %s per user at peak)",
			in.PageSize, lab.MaxUsersInMemory, lab.MemoryPerUser)
	}
	if e.Has(lab.KnobBatches) && int64(in.Pages)*int64(in.PageSize) > lab.MaxUsersInMemory {
		return usagef("--pages %d x --page-size %d: at most %d users per batch (a batch's insert holds its pages in memory, about %s per user at peak); use more --batches",
			in.Pages, in.PageSize, lab.MaxUsersInMemory, lab.MemoryPerUser)
	}
	return nil
}

// probFlag is a probability flag and its value.
type probFlag struct {
	name  string
	value float64
}

// checkProbs checks, in order, that each probability is in [0, 1].
func checkProbs(flags ...probFlag) error {
	for _, f := range flags {
		if math.IsNaN(f.value) || f.value < 0 || f.value > 1 {
			return usagef("%s must be between 0 and 1, got %v", f.name, f.value)
		}
	}
	return nil
}

func runExperiment(ctx context.Context, o *experimentOptions) error {
	g := o.global
	cfg, err := g.resolve()
	if err != nil {
		return err
	}
	rt, closeRuntime, err := o.openRuntime(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer closeRuntime()
	o.params.OnStart = o.onStart
	o.params.OnNewID = startfd.Tell
	if o.params.Queue != "" && o.exp.HasFaults() {
		fmt.Fprintf(g.io.Err, "durlab: the batches run on the workers of queue %s and obey the workers' fault flags; this command's --fail-prob, --gen-fail-prob and --commit-crash-prob apply only to batches it runs itself, its --crash-prob to the main workflow\n", o.params.Queue)
	}
	start := time.Now()
	rep, err := rt.Run(ctx, o.exp, o.params)
	if err != nil {
		return err
	}
	if err := printReport(g.io, cfg.json, rep, time.Since(start), seedDecides(o.params.Faults)); err != nil {
		return err
	}
	if !rep.AsExpected {
		return errNotAsExpected
	}
	return nil
}

// seedDecides tells whether a process with faults f decides anything by
// the seed: some fault may fire.
func seedDecides(f lab.Faults) bool {
	return f.FailProb > 0 || f.GenFailProb > 0 || f.CrashProb > 0 || f.CommitCrashProb > 0
}

// printReport prints rep; seeded says whether the seed decided anything,
// else the report says it did not.
func printReport(io IOStreams, asJSON bool, rep lab.Report, elapsed time.Duration, seeded bool) error {
	if asJSON {
		enc := json.NewEncoder(io.Out)
		return enc.Encode(rep)
	}
	w := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	verdict := "as expected"
	if !rep.AsExpected {
		verdict = "NOT as expected"
	}
	how := "started"
	if rep.Attached {
		how = "resumed"
	}
	seed := fmt.Sprintf("seed %d", rep.Seed)
	if !seeded {
		seed = "no faults: the seed decides nothing"
	}
	if elapsed > 0 {
		fmt.Fprintf(w, "experiment\t%s (%s, %s)\n", rep.Experiment, seed, elapsed.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "experiment\t%s (%s)\n", rep.Experiment, seed)
	}
	fmt.Fprintf(w, "workflow\t%s %s (%s, %d recover%s)\n", rep.WorkflowID, rep.Status, how, rep.Recoveries, plural(rep.Recoveries, "y", "ies"))
	fmt.Fprintf(w, "result\t%d: %s\n", rep.Result, verdict)
	fmt.Fprintf(w, "expected\t%s\n", rep.Expected)
	if note := rep.ForkNote(); note != "" {
		fmt.Fprintf(w, "fork\t%s\n", note)
	}
	fmt.Fprintf(w, "rows\t%d rows, %d unique users, %s", rep.Rows, rep.UniqueUsers, lab.Count(rep.Duplicates, "duplicate", "duplicates"))
	if rep.Duplicates > 0 {
		fmt.Fprintf(w, ": %s", rep.DuplicateCauses())
	}
	fmt.Fprintln(w)
	if e, ok := workflows.Lookup(rep.Experiment); ok && rep.TableRows > 0 {
		fmt.Fprintf(w, "table\t%s in %s, all runs' (ex5 and ex6 log it as \"Total users in database\")\n",
			lab.Count(rep.TableRows, "row", "rows"), e.Table.Table())
	}
	fmt.Fprintf(w, "steps\t%s, %s injected (%s, %s), %s\n", lab.Count(rep.StepAttempts, "attempt", "attempts"),
		lab.Count(rep.InjectedFailures, "fault", "faults"), lab.Count(rep.Failures(), "failure", "failures"),
		lab.Count(rep.InjectedCrashes, "crash", "crashes"), lab.Count(rep.UniqueViolations, "UNIQUE violation", "UNIQUE violations"))
	fmt.Fprintf(w, "crashes\t%s (%d injected, %d killed from outside), %d right after a commit\n",
		lab.Count(rep.Crashes, "process died", "processes died"), rep.InjectedCrashes, rep.KilledFromOutside, rep.CommitCrashes)
	if rep.Error != "" {
		fmt.Fprintf(w, "error\t%s\n", oneLine(dburl.Redact(rep.Error)))
	}
	if rep.Faults != "" {
		fmt.Fprintf(w, "faults\treplay with --faults %s\n", rep.Faults)
	}
	fmt.Fprintf(w, "lesson\t%s\n", rep.Lesson)
	if id := rep.WorkflowID; id != "" && !strings.HasPrefix(id, lab.PlainRunPrefix) {
		fmt.Fprintf(w, "trace\tdurlab workflow trace %s\n", id[:min(len(id), 8)])
	}
	return w.Flush()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
