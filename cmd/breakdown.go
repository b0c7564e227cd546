package cmd

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/durlab/durlab/profiling"
)

// profileHelp is profile's help beyond the experiment's: what the profiles
// are and how to read the breakdown printBreakdown prints.
const profileHelp = `
--out is the CPU profile and --wall-out the wall-clock profile of the run,
both in pprof format. After the report, a breakdown says where the time went:

  wall time       the run, from starting the workflow to the final counts;
                  DBOS start-up (migrating, launching) is shown apart
  workflows       the main workflow and its batch children
  step records    step outputs DBOS recorded: one per page, plus the
                  count (the report's "steps" line counts attempts at
                  steps, which retries make more)
  checkpoints     every record DBOS wrote to make the run durable, read back
                  from the system database: the step records of each
                  workflow (dbos.GetWorkflowSteps; a parent also records
                  each child it starts and awaits) plus one status record
                  per workflow
  business logic  fake generation, which a program with no DBOS does too
  store writes    inserting the pages into the users table, with the
                  attempt ledger's events that ride in their transactions
  ledger          durlab's own bookkeeping: the attempt ledger's commits
                  (each execution's begin and end, the end of each failed
                  attempt before DBOS retries it) and the read of the run's
                  status before each write attempt (a cancelled run stops)
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

// printBreakdown prints where the time went, after the report.
func printBreakdown(out io.Writer, bd profiling.Breakdown) error {
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
		fmt.Fprintf(w, "step records\t%d\n", bd.Steps)
		fmt.Fprintf(w, "checkpoints\t%d\n", bd.Checkpoints)
	} else {
		fmt.Fprintf(w, "durability\tnone: no workflow, step or checkpoint\n")
	}
	rest := "the loop, emptying finished runs' rows and the final counts"
	if durable {
		rest = "DBOS orchestration and checkpoints, emptying finished runs' rows and the final counts"
	}
	fmt.Fprintf(w, "business logic\t%s  %s  fake generation\n", fmtMs(bd.BusinessMs), share(bd.BusinessMs))
	fmt.Fprintf(w, "store writes\t%s  %s  inserting the pages, with the ledger's events that ride in them\n", fmtMs(bd.StoreMs), share(bd.StoreMs))
	if durable {
		fmt.Fprintf(w, "ledger\t%s  %s  the attempt ledger's own commits (executions begun and ended, failures) and the run's status read before each write\n", fmtMs(bd.LedgerMs), share(bd.LedgerMs))
	}
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
