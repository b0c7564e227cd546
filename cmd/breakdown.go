package cmd

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/durlab/durlab/profiling"
)

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
	fmt.Fprintf(w, "store writes\t%s  %s  inserting the pages, with the ledger's events that ride in them\n", fmtMs(bd.StoreMs), share(bd.StoreMs))
	if durable {
		fmt.Fprintf(w, "ledger\t%s  %s  the attempt ledger's own commits (executions begun, failures)\n", fmtMs(bd.LedgerMs), share(bd.LedgerMs))
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
