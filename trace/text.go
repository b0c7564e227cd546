package trace

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fatih/color"
)

// TextOptions shape the text tree.
type TextOptions struct {
	// Depth is how many levels of child workflows are shown; 0: all.
	Depth int
	// Expand shows every subtree; otherwise a child workflow that
	// finished in one execution with nothing failing is folded to a line.
	Expand bool
	// Color uses colour (a terminal, without NO_COLOR).
	Color bool
}

type painter struct {
	ok, bad, warn, dim, bold *color.Color
}

func newPainter(on bool) painter {
	p := painter{color.New(color.FgGreen), color.New(color.FgRed), color.New(color.FgYellow),
		color.New(color.Faint), color.New(color.Bold)}
	for _, c := range []*color.Color{p.ok, p.bad, p.warn, p.dim, p.bold} {
		if on {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
	}
	return p
}

// WriteText writes the trace as a tree.
func WriteText(w io.Writer, t *Trace, opts TextOptions) error {
	r := textRenderer{w: w, t: t, opts: opts, p: newPainter(opts.Color)}
	r.summary()
	r.workflow(t.Root, "", "", 0)
	return r.err
}

type textRenderer struct {
	w    io.Writer
	t    *Trace
	opts TextOptions
	p    painter
	err  error
}

// count is n with its noun, singular or plural: "1 crash", "2 crashes".
func count[N int | int64](n N, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (r *textRenderer) line(format string, args ...any) {
	if r.err == nil {
		_, r.err = fmt.Fprintf(r.w, format+"\n", args...)
	}
}

func (r *textRenderer) summary() {
	s := r.t.Summary
	r.line("%s %s, %s, %s (%d from retries, %d from recoveries, %d from crashes right after a commit)",
		r.p.bold.Sprint("run"), count(s.Rows, "row", "rows"), count(s.UniqueUsers, "unique user", "unique users"), count(s.Duplicates, "duplicate", "duplicates"),
		s.DuplicatesFromRetries, s.DuplicatesFromRecoveries, s.DuplicatesFromCommitCrashes)
	r.line("%s %s, %s (%s), %s (%d killed from outside, %d right after a commit), %s",
		r.p.bold.Sprint("   "), count(s.StepAttempts, "step attempt", "step attempts"), count(s.InjectedFailures, "fault", "faults")+" injected",
		count(s.InjectedCrashes, "crash", "crashes"), count(s.Crashes, "process died", "processes died"), s.KilledFromOutside, s.CommitCrashes,
		count(s.UniqueViolations, "UNIQUE violation", "UNIQUE violations"))
}

// label names a workflow in the tree.
func (r *textRenderer) label(wf *Workflow) string {
	if wf.Batch > 0 {
		return fmt.Sprintf("batch %d", wf.Batch)
	}
	return "workflow"
}

func (r *textRenderer) status(s string) string {
	switch s {
	case "SUCCESS":
		return r.p.ok.Sprint(s)
	case "":
		return r.p.dim.Sprint("(status unknown)")
	case "PENDING", "ENQUEUED":
		return r.p.warn.Sprint(s)
	}
	return r.p.bad.Sprint(s)
}

// workflow writes a workflow's line and, unless folded, its executions.
// lead prefixes this line, pad the lines below it.
func (r *textRenderer) workflow(wf *Workflow, lead, pad string, level int) {
	head := fmt.Sprintf("%s %s %s %s", r.p.bold.Sprint(r.label(wf)), wf.ID, wf.Name, r.status(wf.Status))
	if level > 0 && (r.folds(wf) || r.opts.Depth > 0 && level > r.opts.Depth) {
		steps, attempts := countSteps(wf)
		r.line("%s%s · %s · %s, %s", lead, head, dur(workflowDuration(wf, r.t.TakenAt)),
			plural(steps, "step"), plural(attempts, "attempt"))
		return
	}
	r.line("%s%s", lead, head)
	for i, x := range wf.Executions {
		last := i == len(wf.Executions)-1
		r.execution(x, pad+branch(last), pad+stem(last), level)
	}
}

// folds tells whether a finished child shows as one line.
func (r *textRenderer) folds(wf *Workflow) bool {
	if r.opts.Expand || len(wf.Executions) != 1 || wf.Executions[0].Outcome != "ok" {
		return false
	}
	for _, s := range wf.Executions[0].Steps {
		if len(s.Attempts) != 1 || s.Attempts[0].Outcome != "ok" || s.Attempts[0].Duplicates > 0 {
			return false
		}
	}
	return len(wf.Executions[0].Children) == 0 && len(wf.Executions[0].Faults) == 0
}

func (r *textRenderer) execution(x *Execution, lead, pad string, level int) {
	where := fmt.Sprintf("pid %d on %s", x.PID, x.Host)
	if x.PID == 0 {
		where = "no record of its process"
	}
	number := "execution"
	if x.Number > 0 {
		number = fmt.Sprintf("execution %d", x.Number)
	}
	r.line("%s%s · %s · executor %s · %s · %s · %s", lead, r.p.bold.Sprint(number), where, dash(x.ExecutorID),
		r.p.dim.Sprint(clock(x.Start)), dur(x.Duration(r.t.TakenAt)), r.executionOutcome(x))
	type item struct {
		at   time.Time
		step *Step // set for a step, so that clean runs of steps fold
		draw func(lead, pad string)
	}
	var items []item
	if len(x.Replayed) > 0 {
		items = append(items, item{x.Start, nil, func(lead, _ string) {
			r.line("%s%s", lead, r.p.dim.Sprintf("took %s from checkpoints: %s", plural(len(x.Replayed), "step"), replayed(x.Replayed)))
		}})
	}
	for _, s := range x.Steps {
		items = append(items, item{s.Attempts[0].Start, s, func(lead, pad string) { r.step(s, lead, pad) }})
	}
	for _, f := range x.Faults {
		items = append(items, item{f.At, nil, func(lead, _ string) {
			r.line("%s%s", lead, r.p.bad.Sprintf("injected %s at %s (%s)", f.Kind, f.Site, f.DecidedBy))
		}})
	}
	for _, c := range x.Children {
		at := time.Time{}
		if len(c.Executions) > 0 {
			at = c.Executions[0].Start
		}
		items = append(items, item{at, nil, func(lead, pad string) { r.workflow(c, lead, pad, level+1) }})
	}
	slices.SortStableFunc(items, func(a, b item) int { return laterZero(a.at).Compare(laterZero(b.at)) })
	// Three or more clean steps in a row fold into one line.
	var folded []item
	for i := 0; i < len(items); {
		j := i
		for j < len(items) && items[j].step != nil && r.clean(items[j].step) {
			j++
		}
		if j-i < 3 {
			folded = append(folded, items[i])
			i++
			continue
		}
		run := items[i:j]
		first, last := run[0].step, run[len(run)-1].step
		var total time.Duration
		for _, it := range run {
			total += it.step.Attempts[0].Duration(r.t.TakenAt)
		}
		folded = append(folded, item{first.Attempts[0].Start, nil, func(lead, _ string) {
			r.line("%s%s ... %s · %s, one attempt each · %s · %s", lead, first.Name, last.Name,
				plural(len(run), "step"), dur(total), r.p.ok.Sprint("ok"))
		}})
		i = j
	}
	items = folded
	for i, it := range items {
		last := i == len(items)-1
		it.draw(pad+branch(last), pad+stem(last))
	}
}

func (r *textRenderer) executionOutcome(x *Execution) string {
	var s string
	switch x.Outcome {
	case "ok":
		s = r.p.ok.Sprint("finished")
	case "error":
		s = r.p.bad.Sprint("failed: " + firstLine(x.Error))
	case "crashed":
		s = r.p.bad.Sprint("crashed at " + x.Site)
	case "killed":
		s = r.p.bad.Sprint("killed from outside")
	case "stopped":
		s = r.p.warn.Sprint("stopped by a signal")
	case "environment":
		s = r.p.warn.Sprint("stopped: a database failed (unreachable, corrupt or full); left PENDING")
	case "cancelled":
		s = r.p.warn.Sprint("cancelled")
	case "running":
		s = r.p.warn.Sprint("still running")
	default:
		s = x.Outcome
	}
	if x.Derived {
		s += r.p.dim.Sprint(" (no end recorded)")
	}
	return s
}

// clean tells whether a step ran once, wrote nothing and succeeded: such
// steps fold into one line when three or more come in a row (unless
// Expand).
func (r *textRenderer) clean(s *Step) bool {
	return !r.opts.Expand && len(s.Attempts) == 1 && s.Attempts[0].Outcome == "ok" && s.Attempts[0].Rows == 0 && !s.Body
}

func (r *textRenderer) step(s *Step, lead, pad string) {
	name := s.Name
	if s.Body {
		name += r.p.dim.Sprint(" (workflow body)")
	}
	if len(s.Attempts) == 1 {
		a := s.Attempts[0]
		r.line("%s%s · %s · %s", lead, name, dur(a.Duration(r.t.TakenAt)), r.attemptOutcome(a))
		return
	}
	r.line("%s%s · %s", lead, name, plural(len(s.Attempts), "attempt"))
	for i, a := range s.Attempts {
		last := i == len(s.Attempts)-1
		r.line("%s%sattempt %d · %s · %s", pad, branch(last), a.N, dur(a.Duration(r.t.TakenAt)), r.attemptOutcome(a))
	}
}

func (r *textRenderer) attemptOutcome(a *Attempt) string {
	var wrote string
	if a.Rows > 0 {
		wrote = "wrote " + count(a.Rows, "row", "rows")
		if a.Duplicates > 0 {
			wrote += r.p.warn.Sprintf(" (%d again: %s)", a.Duplicates, causeText(a.Cause))
		}
	}
	var s string
	switch a.Outcome {
	case "ok":
		s = r.p.ok.Sprint("ok")
	case "injected":
		s = r.p.warn.Sprint("failed (injected)")
	case "unique":
		s = r.p.bad.Sprint("failed: UNIQUE violation")
	case "error":
		s = r.p.bad.Sprint("failed: " + firstLine(a.Error))
	case "died":
		s = r.p.bad.Sprint("died mid-attempt")
	case "crashed":
		s = r.p.bad.Sprint("crashed at " + a.Site)
	case "stopped":
		s = r.p.warn.Sprint("stopped by a signal")
	case "environment":
		s = r.p.warn.Sprint("stopped: a database failed (unreachable, corrupt or full); left PENDING")
	case "running":
		s = r.p.warn.Sprint("running")
	default:
		s = a.Outcome
	}
	if a.Derived && a.Outcome == "ok" {
		s += r.p.dim.Sprint(" (as DBOS checkpointed it)")
	}
	if wrote != "" {
		if a.Outcome == "ok" {
			return wrote + ", " + s
		}
		return wrote + ", then " + s
	}
	return s
}

func causeText(c string) string {
	switch c {
	case "retry":
		return "a retry"
	case "recovery":
		return "a recovery"
	case "commit-crash":
		return "a crash right after a commit"
	}
	return c
}

func replayed(rs []Replay) string {
	if len(rs) <= 3 {
		var names []string
		for _, r := range rs {
			names = append(names, r.Name)
		}
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s ... %s", rs[0].Name, rs[len(rs)-1].Name)
}

func countSteps(wf *Workflow) (steps, attempts int) {
	for _, x := range wf.Executions {
		for _, s := range x.Steps {
			steps++
			attempts += len(s.Attempts)
		}
	}
	return steps, attempts
}

func workflowDuration(wf *Workflow, until time.Time) time.Duration {
	if len(wf.Executions) == 0 {
		return 0
	}
	first, last := wf.Executions[0], wf.Executions[len(wf.Executions)-1]
	end := last.End
	if end.IsZero() {
		end = until
	}
	return max(end.Sub(first.Start), 0)
}

func branch(last bool) string {
	if last {
		return "└─ "
	}
	return "├─ "
}

func stem(last bool) string {
	if last {
		return "   "
	}
	return "│  "
}

func plural(n int, noun string) string { return count(n, noun, noun+"s") }

func dur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return "<1µs"
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05.000")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return first
}

// laterZero orders what never happened (a child that never ran) last.
func laterZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(1<<40, 0)
	}
	return t
}
