package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/workflows"
)

// comparable are the experiments compare runs: they share dedup's workload,
// knobs and fault schedule, and differ in how the insert is made durable.
func comparable() []*lab.Experiment { return []*lab.Experiment{workflows.Dedup, workflows.ExactlyOnce} }

func comparableNames() []string {
	var names []string
	for _, e := range comparable() {
		names = append(names, e.Name)
	}
	return names
}

type compareSummary struct {
	Seed int64        `json:"seed"`
	Runs []runSummary `json:"runs"`
}

func newCompareCmd(g *globalOptions) *cobra.Command {
	names := comparableNames()
	opts := &runOptions{untilSuccess: true}
	c := newExperimentCmd(g, comparable()[0], func(eo *experimentOptions) error {
		opts.exp = eo
		return nil
	})
	c.Use = fmt.Sprintf("compare [%s %s]", names[0], names[1])
	c.Short = fmt.Sprintf("Run %s and %s under one seed and show them side by side", names[0], names[1])
	c.Long = fmt.Sprintf(`Runs %s, then %s, each as 'durlab run --until-success', with the
same seed and flags, and prints rows, duplicates, attempts, crashes and wall
time side by side: the price of counting duplicates away against the price
of never writing them.`, names[0], names[1])
	c.ValidArgs = names
	c.Args = func(_ *cobra.Command, args []string) error {
		if len(args) != 0 && (len(args) != 2 || args[0] == args[1] || !slices.Contains(names, args[0]) || !slices.Contains(names, args[1])) {
			return usagef("compare takes no argument or two of %v, got %v", names, args)
		}
		return nil
	}
	inner := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := inner(cmd, args); err != nil {
			return err
		}
		run := names
		if len(args) == 2 {
			run = args
		}
		return runCompare(cmd.Context(), cmd, opts, run)
	}
	c.Flags().IntVar(&opts.maxRestarts, "max-restarts", 100, "give up on an experiment after this many restarts")
	c.Flags().DurationVar(&opts.restartDelay, "restart-delay", defaultRestartDelay, "pause before each restart")
	return c
}

func runCompare(ctx context.Context, cmd *cobra.Command, o *runOptions, names []string) error {
	g := o.exp.global
	cfg, err := g.resolve()
	if err != nil {
		return err
	}
	if !o.exp.seedSet {
		fmt.Fprintf(g.io.Err, "durlab compare: seed %d (replay with --seed %d)\n", o.exp.params.Seed, o.exp.params.Seed)
	}
	sum := compareSummary{Seed: o.exp.params.Seed}
	code := exitOK
	for _, name := range names {
		exp, _ := workflows.Lookup(name)
		eo := *o.exp
		eo.exp = exp
		ro := *o
		ro.exp = &eo
		args := childArgs(cmd, &ro)
		rs, err := superviseLoop(ctx, g.io, args, &ro)
		if err != nil {
			return err
		}
		sum.Runs = append(sum.Runs, rs)
		if rs.ExitCode == exitInterrupted || rs.ExitCode == exitTerminated || rs.ExitCode == exitHangup {
			code = rs.ExitCode // stopped by a signal: do not start the next one
			break
		}
		if rs.ExitCode != exitOK {
			code = exitUnexpected
		}
	}
	if cfg.json {
		if err := json.NewEncoder(g.io.Out).Encode(sum); err != nil {
			return err
		}
	} else {
		printComparison(g.io, sum)
	}
	return exitCodeError{code}
}

func printComparison(io IOStreams, sum compareSummary) {
	w := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "seed %d", sum.Seed)
	for _, r := range sum.Runs {
		fmt.Fprintf(w, "\t%s", r.Experiment)
	}
	fmt.Fprintln(w)
	row := func(label string, f func(r runSummary, rep lab.Report) string) {
		fmt.Fprint(w, label)
		for _, r := range sum.Runs {
			rep := lab.Report{}
			if r.Report != nil {
				rep = *r.Report
			}
			fmt.Fprintf(w, "\t%s", f(r, rep))
		}
		fmt.Fprintln(w)
	}
	num := func(n int64) string { return fmt.Sprint(n) }
	row("result", func(_ runSummary, rep lab.Report) string { return num(rep.Result) })
	row("rows", func(_ runSummary, rep lab.Report) string { return num(rep.Rows) })
	row("unique users", func(_ runSummary, rep lab.Report) string { return num(rep.UniqueUsers) })
	row("duplicates", func(_ runSummary, rep lab.Report) string { return num(rep.Duplicates) })
	row("step attempts", func(_ runSummary, rep lab.Report) string { return num(rep.StepAttempts) })
	row("injected failures", func(_ runSummary, rep lab.Report) string { return num(rep.InjectedFailures) })
	row("crashes", func(r runSummary, _ lab.Report) string { return fmt.Sprint(r.Crashes) })
	row("  after a commit", func(_ runSummary, rep lab.Report) string { return num(rep.CommitCrashes) })
	row("processes", func(r runSummary, _ lab.Report) string { return fmt.Sprint(r.Attempts) })
	row("wall time", func(r runSummary, _ lab.Report) string { return r.Elapsed })
	row("as expected", func(_ runSummary, rep lab.Report) string {
		if rep.AsExpected {
			return "yes"
		}
		return "NO"
	})
	w.Flush()
}
