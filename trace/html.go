package trace

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

// timelineHTML is the page: html/template escapes every value the trace
// puts in it, in text, attributes and the JSON copy of the trace in its
// script tag, so no workflow data can end an element or a script.
//
//go:embed timeline.html
var timelineHTML string

var timelineTmpl = template.Must(template.New("timeline").Parse(timelineHTML))

// WriteHTML writes the trace as one self-contained HTML page that fetches
// nothing: the run's counts, a lane per execution of the workflow on one
// time axis with its steps' attempts as bars, retries as ticks and
// injected faults, crashes and kills as markers, and each child workflow,
// folded, under the execution that started it, with lanes of its own.
// Every bar and marker says what it is on hover. The page also carries
// the trace as JSON (script#trace-data).
func WriteHTML(w io.Writer, t *Trace) error {
	return timelineTmpl.Execute(w, newPage(t))
}

// page is what the template draws.
type page struct {
	T    *Trace
	S    Summary
	Root *block
	// Taken is when the trace was read; Zone the time zone of the clock
	// times shown.
	Taken, Zone string
}

// block is a workflow with its lanes on an axis of its own.
type block struct {
	Anchor, ID, Name, Status, StatusClass, Label string
	Info                                         string // its span, executions, steps, attempts, retries, faults
	Trouble                                      bool   // something failed, retried or ran again in it
	AxisNote                                     string
	Axis                                         []tick
	Lanes                                        []*lane
	Groups                                       []*group
}

// group is the child workflows one execution started.
type group struct {
	Title string
	Kids  []*block
}

type tick struct {
	Style template.CSS
	Label string
}

// lane is one execution.
type lane struct {
	Number                                int
	Workflow                              string
	Name, Where, Outcome, OutClass, Title string
	Head                                  string // Outcome, short
	From, To                              string // its own span, in % of the axis, to fit it
	Fit                                   string
	Items                                 []item
}

// item is a bar, tick or marker in a lane.
type item struct {
	Class   string
	Style   template.CSS
	Title   string
	Href    string // a child workflow's bar links to its block
	Attempt int    // data-attempt on a step's attempt (not a body write)
	Fault   string // data-fault: the kind of the injected fault it shows
	Inner   []item // drawn inside it, placed on its own span
}

// timeline builds blocks.
type timeline struct {
	taken, runStart time.Time
	text            textRenderer // for outcome texts, without colour
	anchors         int
}

func newPage(t *Trace) *page {
	tl := &timeline{taken: t.TakenAt, text: textRenderer{p: newPainter(false)}}
	if len(t.Root.Executions) > 0 {
		tl.runStart = tl.start(t.Root.Executions[0])
	}
	zone, _ := time.Now().Zone()
	if !t.TakenAt.IsZero() {
		zone, _ = t.TakenAt.Local().Zone()
	}
	return &page{T: t, S: t.Summary, Root: tl.block(t.Root), Taken: t.TakenAt.Local().Format("2006-01-02 15:04:05"), Zone: zone}
}

// axis maps times to percentages of a lane's width.
type axis struct{ lo, hi time.Time }

func (a axis) at(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	p := float64(t.Sub(a.lo)) / float64(a.hi.Sub(a.lo)) * 100
	return min(max(p, 0), 100)
}

func (a axis) style(from, to time.Time) template.CSS {
	l := a.at(from)
	if to.IsZero() {
		return template.CSS("left:" + pct(l))
	}
	return template.CSS("left:" + pct(l) + ";width:" + pct(max(a.at(to)-l, 0)))
}

func pct(p float64) string { return strconv.FormatFloat(p, 'f', 3, 64) + "%" }

// start is when an execution began: recorded, or its first trace.
func (tl *timeline) start(x *Execution) time.Time {
	if !x.Start.IsZero() {
		return x.Start
	}
	first := time.Time{}
	for _, t := range evidence(x) {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first
}

// end is when an execution ended: recorded; the trace's time for one
// still running; else (killed, no end recorded) the last thing it left.
func (tl *timeline) end(x *Execution) time.Time {
	switch {
	case !x.End.IsZero():
		return x.End
	case x.Outcome == "running":
		return tl.taken
	}
	last := tl.start(x)
	for _, t := range evidence(x) {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// evidence is every time an execution recorded, itself or in the children
// it ran.
func evidence(x *Execution) []time.Time {
	var ts []time.Time
	add := func(t time.Time) {
		if !t.IsZero() {
			ts = append(ts, t)
		}
	}
	for _, s := range x.Steps {
		for _, a := range s.Attempts {
			add(a.Start)
			add(a.End)
			for _, f := range a.Faults {
				add(f.At)
			}
		}
	}
	for _, f := range x.Faults {
		add(f.At)
	}
	// What the children ran in the same process shows it was alive.
	for _, c := range x.Children {
		for _, cx := range c.Executions {
			if cx.PID == x.PID && cx.Host == x.Host {
				add(cx.Start)
				add(cx.End)
				ts = append(ts, evidence(cx)...)
			}
		}
	}
	return ts
}

// kidBar is a child workflow's execution drawn in a lane of its parent.
type kidBar struct {
	wf    *Workflow
	x     *Execution
	block *block
}

func (tl *timeline) block(wf *Workflow) *block {
	tl.anchors++
	b := &block{Anchor: fmt.Sprintf("wf-%d", tl.anchors), ID: wf.ID, Name: wf.Name, Status: wf.Status,
		StatusClass: statusClass(wf.Status), Label: "workflow"}
	if wf.Batch > 0 {
		b.Label = fmt.Sprintf("batch %d", wf.Batch)
	}
	if b.Status == "" {
		b.Status = "status unknown"
	}
	// A child's execution is drawn in the lane of the parent's execution
	// that ran in the same process, else of the one running when it
	// began, else of the one that started the child.
	kids := make([][]kidBar, len(wf.Executions))
	for i, x := range wf.Executions {
		var g *group
		for _, c := range x.Children {
			cb := tl.block(c)
			if g == nil {
				g = &group{}
				b.Groups = append(b.Groups, g)
			}
			g.Kids = append(g.Kids, cb)
			for _, cx := range c.Executions {
				j := tl.laneOf(wf, cx, i)
				kids[j] = append(kids[j], kidBar{c, cx, cb})
			}
		}
		if g != nil {
			g.Title = fmt.Sprintf("%s started %s", executionName(x), plural(len(g.Kids), "child workflow"))
		}
	}
	// The axis spans every execution and what is drawn in their lanes.
	var ax axis
	widen := func(t time.Time) {
		if t.IsZero() {
			return
		}
		if ax.lo.IsZero() || t.Before(ax.lo) {
			ax.lo = t
		}
		if t.After(ax.hi) {
			ax.hi = t
		}
	}
	for i, x := range wf.Executions {
		widen(tl.start(x))
		widen(tl.end(x))
		for _, k := range kids[i] {
			widen(tl.start(k.x))
			widen(tl.end(k.x))
		}
	}
	span := ax.hi.Sub(ax.lo)
	if ax.lo.IsZero() {
		ax.lo = tl.taken
	}
	// A margin, so that a marker at an end shows whole.
	ax.hi = ax.lo.Add(max(span, time.Microsecond)*51/50 + 1)
	b.Axis = ticks(ax, span)
	b.AxisNote = "since the run began"
	if !tl.runStart.IsZero() && !ax.lo.Equal(tl.runStart) {
		b.AxisNote = fmt.Sprintf("from +%s into the run", dur(ax.lo.Sub(tl.runStart)))
	}
	steps, attempts := countSteps(wf)
	info := []string{dur(span), plural(len(wf.Executions), "execution"), plural(steps, "step") + ", " + plural(attempts, "attempt")}
	r, faults := countTrouble(wf, false)
	if r > 0 {
		info = append(info, count(r, "retry", "retries"))
	}
	if faults > 0 {
		info = append(info, plural(faults, "fault")+" injected")
	}
	b.Info = strings.Join(info, " · ")
	deepRetries, deepFaults := countTrouble(wf, true)
	b.Trouble = deepRetries > 0 || deepFaults > 0 || len(wf.Executions) != 1 || wf.Status != "SUCCESS"
	for i, x := range wf.Executions {
		var next *Execution
		if i+1 < len(wf.Executions) {
			next = wf.Executions[i+1]
		}
		b.Lanes = append(b.Lanes, tl.lane(ax, wf, x, next, kids[i]))
	}
	return b
}

// laneOf is the index of the execution of wf whose lane shows the child
// execution cx, which the execution at index started started.
func (tl *timeline) laneOf(wf *Workflow, cx *Execution, started int) int {
	for j, x := range wf.Executions {
		if cx.PID != 0 && x.PID == cx.PID && x.Host == cx.Host {
			return j
		}
	}
	at := tl.start(cx)
	for j, x := range wf.Executions {
		if !at.IsZero() && !at.Before(tl.start(x)) && !at.After(tl.end(x)) {
			return j
		}
	}
	return started
}

func (tl *timeline) lane(ax axis, wf *Workflow, x *Execution, next *Execution, kids []kidBar) *lane {
	l := &lane{Number: x.Number, Workflow: wf.ID, Name: executionName(x), Outcome: tl.text.executionOutcome(x), OutClass: x.Outcome}
	head := *x
	head.Derived = false // the tooltip says so
	l.Head = tl.text.executionOutcome(&head)
	start, end := tl.start(x), tl.end(x)
	where := fmt.Sprintf("pid %d on %s", x.PID, dash(x.Host))
	if x.PID == 0 {
		where = "no record of its process"
	}
	ran := dur(max(end.Sub(start), 0))
	if x.Outcome == "killed" && x.End.IsZero() {
		ran = "≥" + ran // to the last thing it recorded
	}
	l.Where = where + " · " + ran
	title := []string{l.Name + " · " + l.Outcome, where + " · executor " + dash(x.ExecutorID),
		"began " + clock(start) + tl.since(start) + " · ran " + ran}
	if x.Error != "" {
		title = append(title, "error: "+x.Error)
	}
	if len(x.Replayed) > 0 {
		title = append(title, fmt.Sprintf("took %s from checkpoints: %s", plural(len(x.Replayed), "step"), replayed(x.Replayed)))
	}
	l.Title = strings.Join(title, "\n") + "\n(click: fit the lane to its own span)"
	if start.IsZero() {
		return l
	}
	from, to := ax.at(start), ax.at(end)
	l.From, l.To = strconv.FormatFloat(from, 'f', 3, 64), strconv.FormatFloat(max(to, from+0.001), 'f', 3, 64)
	l.Fit = "fitted to its own " + dur(max(end.Sub(start), 0))
	add := func(class string, from, to time.Time, title string) *item {
		l.Items = append(l.Items, item{Class: class, Style: ax.style(from, to), Title: title})
		return &l.Items[len(l.Items)-1]
	}
	cls := "x " + x.Outcome
	if x.Derived {
		cls += " derived"
	}
	add(cls, start, end, strings.Join(title, "\n"))
	if x.Outcome == "killed" && x.End.IsZero() && next != nil && tl.start(next).After(end) {
		add("x unsure", end, tl.start(next), "killed from outside somewhere between "+clock(end)+
			" (the last thing it recorded) and "+clock(tl.start(next))+" (when "+executionName(next)+" began)")
	}
	if len(x.Replayed) > 0 {
		add("mark replay", start, time.Time{}, fmt.Sprintf("took %s from their checkpoints instead of running them again:\n%s",
			plural(len(x.Replayed), "step"), replayedAll(x.Replayed)))
	}
	// The fault that ended a crashed execution shows as the marker at its end.
	var ending *Fault
	for _, f := range tl.faults(x) {
		if x.Outcome == "crashed" && f.Kind != "fail" {
			ending = f
		}
	}
	for _, s := range x.Steps {
		tl.step(ax, l, x, s, ending)
	}
	for _, f := range x.Faults {
		if f != ending {
			it := add("mark "+faultClass(f.Kind), f.At, time.Time{}, faultText(f))
			it.Fault = f.Kind
		}
	}
	for _, k := range kids {
		tl.kid(ax, l, k)
	}
	// How it ended, at its end.
	var mark, why string
	switch x.Outcome {
	case "crashed":
		mark, why = "crash", "crashed "+x.Site
		if ending != nil {
			mark, why = faultClass(ending.Kind), "ended by an "+faultText(ending)
		}
	case "killed":
		mark, why = "killed", "killed from outside: its process died with no record of why"
		if x.End.IsZero() {
			why += "; the last thing it recorded was at " + clock(end)
		}
		if next != nil {
			why += "; " + executionName(next) + " recovered the workflow at " + clock(tl.start(next))
		}
	case "stopped", "environment", "error", "cancelled":
		mark, why = x.Outcome, l.Outcome
		if x.Error != "" {
			why += "\nerror: " + x.Error
		}
	default:
		return l
	}
	it := add("mark "+mark, end, time.Time{}, l.Name+" "+why)
	if ending != nil {
		it.Fault = ending.Kind
	}
	return l
}

// faults are the faults injected in an execution, in its attempts or not.
func (tl *timeline) faults(x *Execution) []*Fault {
	var fs []*Fault
	for _, s := range x.Steps {
		for _, a := range s.Attempts {
			fs = append(fs, a.Faults...)
		}
	}
	return append(fs, x.Faults...)
}

// step draws a step's attempts, its retries as ticks, and the faults
// injected in them.
func (tl *timeline) step(ax axis, l *lane, x *Execution, s *Step, ending *Fault) {
	if len(s.Attempts) == 0 {
		return
	}
	name := s.Name
	if s.Body {
		name += " (a write from the workflow body)"
	}
	first, last := s.Attempts[0], s.Attempts[len(s.Attempts)-1]
	if len(s.Attempts) > 1 {
		l.Items = append(l.Items, item{Class: "env", Style: ax.style(first.Start, tl.attemptEnd(x, last)),
			Title: fmt.Sprintf("%s · %s · %s from the first start to the last end", name,
				plural(len(s.Attempts), "attempt"), dur(tl.attemptEnd(x, last).Sub(first.Start)))})
	}
	var prev *Attempt
	for _, a := range s.Attempts {
		end := tl.attemptEnd(x, a)
		cls := "bar a " + a.Outcome
		if s.Body {
			cls += " body"
		}
		if a.Duplicates > 0 {
			cls += " dup"
		}
		title := []string{fmt.Sprintf("%s · attempt %d of %d", name, a.N, len(s.Attempts)),
			dur(max(end.Sub(a.Start), 0)) + " · " + tl.text.attemptOutcome(a)}
		if a.N > 1 {
			title[0] += " (a retry)"
		}
		if a.Duplicates > 0 {
			title = append(title, fmt.Sprintf("%d of its %d rows were written again: %s", a.Duplicates, a.Rows, causeText(a.Cause)))
		}
		if a.Error != "" {
			title = append(title, "error: "+a.Error)
		}
		if a.Site != "" {
			title = append(title, "site: "+a.Site)
		}
		for _, f := range a.Faults {
			title = append(title, faultText(f))
		}
		title = append(title, "began "+clock(a.Start)+tl.since(a.Start)+" · ended "+clock(a.End))
		it := item{Class: cls, Style: ax.style(a.Start, end), Title: strings.Join(title, "\n")}
		if !s.Body {
			it.Attempt = a.N
		}
		l.Items = append(l.Items, it)
		if prev != nil {
			wait := a.Start.Sub(tl.attemptEnd(x, prev))
			l.Items = append(l.Items, item{Class: "tick", Style: ax.style(a.Start, time.Time{}),
				Title: fmt.Sprintf("retry: %s attempt %d began %s after attempt %d ended (%s)", name, a.N, dur(max(wait, 0)),
					prev.N, tl.text.attemptOutcome(prev))})
		}
		prev = a
		for _, f := range a.Faults {
			if f == ending {
				continue
			}
			l.Items = append(l.Items, item{Class: "mark " + faultClass(f.Kind), Style: ax.style(f.At, time.Time{}),
				Title: fmt.Sprintf("%s\nin %s attempt %d", faultText(f), name, a.N), Fault: f.Kind})
		}
	}
}

// attemptEnd is when an attempt ended: recorded, now for one still
// running, else (it died) when its execution was last seen.
func (tl *timeline) attemptEnd(x *Execution, a *Attempt) time.Time {
	switch {
	case !a.End.IsZero():
		return a.End
	case a.Outcome == "running":
		return tl.taken
	}
	if end := tl.end(x); end.After(a.Start) {
		return end
	}
	return a.Start
}

// kid draws a child workflow's execution in its parent's lane, with a
// mark for each fault injected in it.
func (tl *timeline) kid(ax axis, l *lane, k kidBar) {
	steps, attempts, retries := 0, 0, 0
	for _, s := range k.x.Steps {
		steps++
		attempts += len(s.Attempts)
		retries += max(len(s.Attempts)-1, 0)
	}
	start, end := tl.start(k.x), tl.end(k.x)
	faults := tl.faults(k.x)
	title := []string{fmt.Sprintf("%s %s · %s · %s", k.block.Label, k.wf.ID, k.wf.Name, executionName(k.x)),
		dur(end.Sub(start)) + " · " + tl.text.executionOutcome(k.x),
		fmt.Sprintf("%s, %s (%d retried), %s injected", plural(steps, "step"), plural(attempts, "attempt"), retries,
			plural(len(faults), "fault")),
		"(click: show its lanes below)"}
	bar := item{Class: "bar kid " + k.x.Outcome, Style: ax.style(start, end), Title: strings.Join(title, "\n"),
		Href: "#" + k.block.Anchor}
	in := axis{start, end}
	if !end.After(start) {
		in.hi = start.Add(1)
	}
	for _, f := range faults {
		bar.Inner = append(bar.Inner, item{Class: "echo " + faultClass(f.Kind), Style: in.style(f.At, time.Time{}),
			Title: fmt.Sprintf("in %s: %s", k.block.Label, faultText(f))})
	}
	l.Items = append(l.Items, bar)
}

// since is how long after the run began t was.
func (tl *timeline) since(t time.Time) string {
	if tl.runStart.IsZero() || t.IsZero() || !t.After(tl.runStart) {
		return ""
	}
	return " (+" + dur(max(t.Sub(tl.runStart), 0)) + ")"
}

// ticks are the axis's labels at a round interval, from its start.
func ticks(ax axis, span time.Duration) []tick {
	step := roundStep(span / 10)
	var ts []tick
	for d := time.Duration(0); d <= span; d += step {
		label := "+" + d.String()
		if d == 0 {
			label = "0"
		}
		ts = append(ts, tick{Style: ax.style(ax.lo.Add(d), time.Time{}), Label: label})
	}
	return ts
}

// roundStep is the least of 1, 2 and 5 µs times a power of ten that is at
// least d.
func roundStep(d time.Duration) time.Duration {
	for n := time.Microsecond; ; n *= 10 {
		for _, m := range []time.Duration{1, 2, 5} {
			if n*m >= d {
				return n * m
			}
		}
	}
}

func executionName(x *Execution) string {
	if x.Number > 0 {
		return fmt.Sprintf("execution %d", x.Number)
	}
	return "execution (number unknown)"
}

func statusClass(s string) string {
	switch s {
	case "SUCCESS":
		return "ok"
	case "PENDING", "ENQUEUED", "":
		return "warn"
	}
	return "bad"
}

func faultClass(kind string) string {
	switch kind {
	case "crash":
		return "crash"
	case "commit-crash":
		return "commit"
	}
	return "fail"
}

func faultText(f *Fault) string {
	what := map[string]string{"fail": "injected failure", "crash": "injected crash",
		"commit-crash": "injected crash right after a commit"}[f.Kind]
	if what == "" {
		what = "injected " + f.Kind
	}
	return fmt.Sprintf("%s %s, decided by %s, at %s", what, f.Site, dash(f.DecidedBy), clock(f.At))
}

// countTrouble counts a workflow's retries (attempts after a step's
// first) and injected faults, and with deep its children's.
func countTrouble(wf *Workflow, deep bool) (retries, faults int) {
	for _, x := range wf.Executions {
		for _, s := range x.Steps {
			retries += max(len(s.Attempts)-1, 0)
			for _, a := range s.Attempts {
				faults += len(a.Faults)
			}
		}
		faults += len(x.Faults)
		for _, c := range x.Children {
			if deep {
				r, f := countTrouble(c, true)
				retries, faults = retries+r, faults+f
			}
		}
	}
	return retries, faults
}

func replayedAll(rs []Replay) string {
	var names []string
	for i, r := range rs {
		if len(rs) > 40 && i == 20 {
			names = append(names, fmt.Sprintf("... %d more ...", len(rs)-40))
		}
		if len(rs) <= 40 || i < 20 || i >= len(rs)-20 {
			names = append(names, r.Name)
		}
	}
	return strings.Join(names, ", ")
}
