// Package ledger reads what happened to a run: it assembles the attempt
// ledger's events (package store) and DBOS's records of the run's
// workflows into executions, attempts, writes and faults, derives how the
// ones that left no end ended, and counts. Reports, `durlab workflow
// trace` and `durlab explore` read runs through it.
//
// How an execution or attempt with no recorded end ended is derived, never
// guessed:
//   - an execution with a later execution of the same workflow, or whose
//     workflow DBOS knows as finished, was killed from outside, unless it
//     is the last and its process is alive: then it ended as DBOS recorded,
//     and its end waits for that process's next write; one with neither is
//     still running if its process is alive, killed otherwise;
//   - an attempt with no end whose step DBOS checkpointed, with no later
//     attempt at that step, is the attempt DBOS checkpointed: it ended as
//     DBOS recorded (its end was waiting for the next write when the
//     process died); any other attempt with no end died mid-attempt, after
//     committing the rows its write events say.
//
// A duplicate row is a page written again. Each later write of a page is
// attributed to how the write before it ended: an attempt that failed and
// was retried (a retry), an attempt that died after its write committed,
// before its checkpoint (a crash right after a commit), or a write that
// ended well, whose workflow body a recovered execution ran again (a
// recovery).
package ledger

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// Outcomes the ledger derives, beside those the runtime records.
const (
	OutcomeKilled  = "killed"  // an execution whose process died with no record of why
	OutcomeRunning = "running" // an execution or attempt still under way
	OutcomeDied    = "died"    // an attempt whose process died during it
)

// Run is what happened to one run: its main workflow and its descendants.
type Run struct {
	Root *Workflow
	// Workflows are the run's workflows by ID.
	Workflows map[string]*Workflow
	// Writes are every page write of the run, in the order they committed.
	Writes []*Write
	Faults []*Fault
}

// Workflow is one workflow of a run.
type Workflow struct {
	ID       string
	Name     string
	Status   string // as DBOS records it now; "" when DBOS does not know it
	Parent   *Workflow
	Children []*Workflow
	// Executions in the order they started.
	Executions []*Execution
	// Steps are DBOS's step records, by step ID.
	Steps map[int]dbos.StepInfo
	// DBOS is the workflow's status record, when DBOS knows it.
	DBOS dbos.WorkflowStatus
}

// Execution is one execution of a workflow.
type Execution struct {
	ID         string
	Workflow   *Workflow
	Number     int // DBOS's attempts counter when it started
	ExecutorID string
	PID        int
	Host       string
	Start, End time.Time // End is zero when no end was recorded
	// LastSeen is the time of its last record: for one with no end (killed
	// from outside), when it was last known to run.
	LastSeen time.Time
	// Role is the workflow's place in its run: "main", "batch-3".
	Role    string
	Outcome string
	Site    string // where an injected crash hit
	Error   string
	// Derived is set when the outcome was derived rather than recorded.
	Derived  bool
	Attempts []*Attempt
	// Replayed are the steps this execution took from their checkpoints.
	Replayed []Replay
	Faults   []*Fault
}

// Replay is a step an execution took from its checkpoint.
type Replay struct {
	StepID int
	Step   string
	At     time.Time
}

// Attempt is one attempt at a step, or one write from a workflow body
// (StepID -1).
type Attempt struct {
	ID         string
	Execution  *Execution
	StepID     int
	Step       string
	N          int
	Start, End time.Time
	Outcome    string
	Site       string
	Error      string
	Derived    bool
	Writes     []*Write
	Faults     []*Fault
}

// Rows is what the attempt's writes committed.
func (a *Attempt) Rows() int {
	n := 0
	for _, w := range a.Writes {
		n += w.Rows
	}
	return n
}

// Body tells whether the attempt is a write from a workflow body.
func (a *Attempt) Body() bool { return a.StepID < 0 }

// Write is one page an attempt committed.
type Write struct {
	Attempt *Attempt
	Page    int
	Rows    int
	At      time.Time
	// Duplicate is set on a write of a page already written: the cause.
	Duplicate Cause
}

// Fault is one fault the lab injected.
type Fault struct {
	Kind      string // fail, crash, commit-crash
	Site      string
	DecidedBy string
	At        time.Time
	Execution *Execution
	Attempt   *Attempt // nil for a crash between steps
}

// Spec is the fault in the --faults syntax (see package lab): kind, site,
// and the execution of the site's workflow when it is not the first.
func (f *Fault) Spec() string {
	kind := f.Kind
	if kind == "commit-crash" {
		kind = "crash"
	}
	s := kind + "@" + f.Site
	if n := f.Execution.Number; n > 1 {
		s += "/" + strconv.Itoa(n)
	}
	return s
}

// Schedule is every fault the run injected, in the --faults syntax, in the
// order they fired: pasted back as --faults it replays the run.
func (r *Run) Schedule() string { return schedule(r.Faults) }

func schedule(faults []*Fault) string {
	faults = slices.Clone(faults)
	slices.SortStableFunc(faults, func(a, b *Fault) int { return a.At.Compare(b.At) })
	var specs []string
	for _, f := range faults {
		specs = append(specs, f.Spec())
	}
	return strings.Join(specs, ",")
}

// Cause is why a page was written again.
type Cause string

const (
	CauseNone        Cause = ""
	CauseRetry       Cause = "retry"
	CauseRecovery    Cause = "recovery"
	CauseCommitCrash Cause = "commit-crash"
)

// Source is what a run is assembled from.
type Source struct {
	Root   string
	Events []store.Event
	// Statuses reads DBOS's records of the run's workflows. Unless Full is
	// set it is called only when the events leave an execution's end to
	// derive: a run whose every end was recorded is told by its events.
	Statuses func() ([]dbos.WorkflowStatus, error)
	Full     bool
	// Steps reads DBOS's step records of a workflow; it is called only
	// for the workflows that have an attempt with no recorded end.
	Steps func(workflowID string) ([]dbos.StepInfo, error)
	// Alive tells whether the process of an execution with no end and no
	// successor still runs; nil: none does.
	Alive func(executorID string, pid int, host string) bool
	// Crashes, when Events hold only part of the run (Summarize), are the
	// run's injected crashes: the executions of a crashed process crashed
	// with it, whichever workflow recorded the crash.
	Crashes []store.Crash
}

// finished are the statuses of a workflow that will not run again by itself.
var finished = []dbos.WorkflowStatusType{dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError,
	dbos.WorkflowStatusCancelled, dbos.WorkflowStatusMaxRecoveryAttemptsExceeded}

// Assemble builds the run from its source.
func Assemble(src Source) (*Run, error) {
	r := &Run{Workflows: map[string]*Workflow{}}
	wf := func(id string) *Workflow {
		w := r.Workflows[id]
		if w == nil {
			w = &Workflow{ID: id}
			r.Workflows[id] = w
		}
		return w
	}
	var statuses []dbos.WorkflowStatus
	if src.Full || needsDBOS(src.Events) {
		var err error
		if statuses, err = src.Statuses(); err != nil {
			return nil, err
		}
	}
	for _, st := range statuses {
		w := wf(st.ID)
		w.Name, w.Status, w.DBOS = st.Name, string(st.Status), st
	}
	execs := map[string]*Execution{}
	attempts := map[string]*Attempt{}
	var parents = map[string]string{}
	for _, e := range src.Events {
		switch e.Kind {
		case store.ExecutionBegan:
			w := wf(e.Workflow)
			if w.Name == "" {
				w.Name = e.Name
			}
			if e.Parent != "" && e.Parent != e.Workflow {
				parents[e.Workflow] = e.Parent
			}
			x := &Execution{ID: e.Execution, Workflow: w, Number: e.Number, ExecutorID: e.ExecutorID, PID: e.PID, Host: e.Host,
				Start: e.At, Role: e.Detail}
			execs[e.Execution] = x
			w.Executions = append(w.Executions, x)
		}
	}
	for _, e := range src.Events {
		x := execs[e.Execution]
		if x == nil {
			continue // an execution whose begin was lost: nothing to hang it on
		}
		if e.At.After(x.LastSeen) {
			x.LastSeen = e.At
		}
		switch e.Kind {
		case store.ExecutionEnded:
			x.End, x.Outcome, x.Site, x.Error = e.At, e.Outcome, e.Site, e.Detail
		case store.AttemptBegan:
			a := &Attempt{ID: e.Attempt, Execution: x, StepID: e.StepID, Step: e.StepName, N: e.AttemptNo, Start: e.At}
			attempts[e.Attempt] = a
			x.Attempts = append(x.Attempts, a)
		case store.AttemptEnded:
			a := attempts[e.Attempt]
			if a == nil && !e.Began.IsZero() { // the attempt's only event
				a = &Attempt{ID: e.Attempt, Execution: x, StepID: e.StepID, Step: e.StepName, N: e.AttemptNo, Start: e.Began}
				attempts[e.Attempt] = a
				x.Attempts = append(x.Attempts, a)
			}
			if a != nil {
				a.End, a.Outcome, a.Site, a.Error = e.At, e.Outcome, e.Site, e.Detail
			}
		case store.PageWritten:
			a := attempts[e.Attempt]
			if a == nil && !e.Began.IsZero() { // a write from a workflow body, its only event
				a = &Attempt{ID: e.Attempt, Execution: x, StepID: -1, Step: e.StepName, N: 1, Start: e.Began, End: e.At, Outcome: "ok"}
				attempts[e.Attempt] = a
				x.Attempts = append(x.Attempts, a)
			}
			if a != nil {
				w := &Write{Attempt: a, Page: e.Page, Rows: e.Rows, At: e.At}
				a.Writes = append(a.Writes, w)
				r.Writes = append(r.Writes, w)
			}
		case store.FaultInjected:
			f := &Fault{Kind: e.Outcome, Site: e.Site, DecidedBy: e.Detail, At: e.At, Execution: x, Attempt: attempts[e.Attempt]}
			x.Faults = append(x.Faults, f)
			if f.Attempt != nil {
				f.Attempt.Faults = append(f.Attempt.Faults, f)
			}
			r.Faults = append(r.Faults, f)
		case store.StepReplayed:
			x.Replayed = append(x.Replayed, Replay{StepID: e.StepID, Step: e.StepName, At: e.At})
		}
	}
	for id, parent := range parents {
		w, p := r.Workflows[id], wf(parent)
		w.Parent = p
	}
	for _, st := range statuses {
		if st.ParentWorkflowID != "" && r.Workflows[st.ParentWorkflowID] != nil {
			r.Workflows[st.ID].Parent = r.Workflows[st.ParentWorkflowID]
		}
	}
	for _, w := range r.Workflows {
		if w.Parent != nil {
			w.Parent.Children = append(w.Parent.Children, w)
		}
		slices.SortStableFunc(w.Executions, func(a, b *Execution) int { return a.Start.Compare(b.Start) })
	}
	for _, w := range r.Workflows {
		slices.SortStableFunc(w.Children, func(a, b *Workflow) int { return cmp.Compare(a.firstStart(), b.firstStart()) })
	}
	r.Root = wf(src.Root)
	if err := r.derive(src); err != nil {
		return nil, err
	}
	if err := r.reconcile(src); err != nil {
		return nil, err
	}
	r.attribute()
	return r, nil
}

// needsDBOS tells whether some execution's end is missing from the events.
func needsDBOS(events []store.Event) bool {
	ended := map[string]bool{}
	for _, e := range events {
		if e.Kind == store.ExecutionEnded {
			ended[e.Execution] = true
		}
	}
	for _, e := range events {
		if e.Kind == store.ExecutionBegan && !ended[e.Execution] {
			return true
		}
	}
	return false
}

// firstStart orders children by when they first ran (never-run ones last).
func (w *Workflow) firstStart() int64 {
	if len(w.Executions) == 0 {
		return 1<<63 - 1
	}
	return w.Executions[0].Start.UnixNano()
}

// derive sets the outcomes that were not recorded.
func (r *Run) derive(src Source) error {
	// An injected crash kills its whole process: the other executions the
	// process was running died with it, at the same site.
	type process struct {
		host string
		pid  int
	}
	crashedAt := map[process]*Execution{}
	for _, c := range src.Crashes {
		crashedAt[process{c.Host, c.PID}] = &Execution{Outcome: "crashed", Site: c.Site, End: c.At}
	}
	for _, w := range r.Workflows {
		for _, x := range w.Executions {
			if x.Outcome == "crashed" {
				crashedAt[process{x.Host, x.PID}] = x
			}
		}
	}
	for _, w := range r.Workflows {
		done := slices.Contains(finished, dbos.WorkflowStatusType(w.Status))
		for i, x := range w.Executions {
			if !x.End.IsZero() || x.Outcome != "" {
				continue
			}
			x.Derived = true
			crash := crashedAt[process{x.Host, x.PID}]
			switch {
			case crash != nil && !crash.End.Before(x.Start):
				x.Outcome, x.Site, x.End = "crashed", crash.Site, crash.End
			case i == len(w.Executions)-1 && (w.Status == string(dbos.WorkflowStatusSuccess) || w.Status == string(dbos.WorkflowStatusError)) &&
				src.Alive != nil && src.Alive(x.ExecutorID, x.PID, x.Host):
				// It ran the workflow to the end DBOS recorded, in a process
				// that lives on: a worker between batches, whose record of
				// the end waits for its next write.
				x.Outcome = "ok"
				if w.Status == string(dbos.WorkflowStatusError) {
					x.Outcome = "error"
				}
			case i < len(w.Executions)-1 || done:
				x.Outcome = OutcomeKilled
			case src.Alive != nil && src.Alive(x.ExecutorID, x.PID, x.Host):
				x.Outcome = OutcomeRunning
			default:
				x.Outcome = OutcomeKilled
			}
		}
		var endless []*Attempt
		for _, x := range w.Executions {
			for _, a := range x.Attempts {
				if a.End.IsZero() && a.Outcome == "" {
					endless = append(endless, a)
				}
			}
		}
		if len(endless) == 0 {
			continue
		}
		if src.Steps != nil && w.Steps == nil {
			steps, err := src.Steps(w.ID)
			if err != nil {
				return err
			}
			w.Steps = map[int]dbos.StepInfo{}
			for _, s := range steps {
				w.Steps[s.StepID] = s
			}
		}
		for _, a := range endless {
			a.Derived = true
			step, checkpointed := w.Steps[a.StepID]
			switch {
			case a.Execution.Outcome == OutcomeRunning && a == a.Execution.Attempts[len(a.Execution.Attempts)-1]:
				a.Outcome = OutcomeRunning
			case checkpointed && a.lastAt(w):
				a.Outcome, a.End = "ok", step.CompletedAt
				if step.Error != nil {
					a.Outcome, a.Error = "error", step.Error.Error()
				}
			default:
				a.Outcome = OutcomeDied
			}
		}
	}
	return nil
}

// reconcile takes from DBOS the attempts whose records died with their
// process: a step DBOS checkpointed that no recorded attempt ran was run by
// an attempt whose events were waiting for a write. It looks only at the
// workflows a killed process worked on, whose end it derived, or that the
// ledger never saw.
func (r *Run) reconcile(src Source) error {
	if src.Steps == nil {
		return nil
	}
	for _, w := range r.Workflows {
		suspect := len(w.Executions) == 0 && w.Status != ""
		for i, x := range w.Executions {
			// A live worker's finished execution has its attempts' ends
			// waiting in memory as well. A gap in DBOS's numbering is an
			// execution killed before its first record (a child's first
			// execution is recorded with its first write).
			suspect = suspect || x.Outcome == OutcomeKilled || x.Derived && (x.Outcome == "ok" || x.Outcome == "error") ||
				x.Number > 0 && x.Number != i+1
		}
		if !suspect {
			continue
		}
		if w.Steps == nil {
			steps, err := src.Steps(w.ID)
			if err != nil {
				return err
			}
			w.Steps = map[int]dbos.StepInfo{}
			for _, s := range steps {
				w.Steps[s.StepID] = s
			}
		}
		// A step is accounted for by an attempt that ended as DBOS
		// recorded it; failed attempts alone leave out the one whose
		// success DBOS checkpointed, its record lost with its process.
		ended, tries := map[int]bool{}, map[int]int{}
		for _, x := range w.Executions {
			for _, a := range x.Attempts {
				tries[a.StepID]++
				if s, ok := w.Steps[a.StepID]; ok && (a.Outcome == "ok") == (s.Error == nil) {
					ended[a.StepID] = true
				}
			}
		}
		ids := slices.Sorted(maps.Keys(w.Steps))
		for _, id := range ids {
			s := w.Steps[id]
			if s.ChildWorkflowID != "" || ended[id] {
				continue
			}
			x := w.executionAt(s.CompletedAt)
			if x == nil {
				x = &Execution{ID: "unrecorded:" + w.ID, Workflow: w, Start: s.StartedAt, Outcome: OutcomeKilled, Derived: true}
				w.Executions = append([]*Execution{x}, w.Executions...)
			}
			a := &Attempt{Execution: x, StepID: id, Step: s.StepName, N: tries[id] + 1, Start: s.StartedAt, End: s.CompletedAt, Outcome: "ok", Derived: true}
			if s.Error != nil {
				a.Outcome, a.Error = "error", s.Error.Error()
			}
			x.Attempts = append(x.Attempts, a)
		}
	}
	return nil
}

// executionAt is the execution of w that was running at t, nil if none was.
func (w *Workflow) executionAt(t time.Time) *Execution {
	var found *Execution
	for _, x := range w.Executions {
		if !x.Start.After(t) && (x.End.IsZero() || !x.End.Before(t)) {
			found = x
		}
	}
	return found
}

// lastAt tells whether a is the last attempt at its step in workflow w.
func (a *Attempt) lastAt(w *Workflow) bool {
	for _, x := range w.Executions {
		for _, b := range x.Attempts {
			if b.StepID == a.StepID && b.Start.After(a.Start) {
				return false
			}
		}
	}
	return true
}

// failed tells whether an attempt ended in an error DBOS may retry.
func (a *Attempt) failed() bool {
	switch a.Outcome {
	case "injected", "unique", "error":
		return true
	}
	return false
}

// died tells whether the attempt's process died during it.
func (a *Attempt) died() bool {
	return a.Outcome == OutcomeDied || a.Outcome == "crashed" || a.Outcome == "stopped" || a.Outcome == "environment"
}

// attribute marks every write of a page already written with its cause.
func (r *Run) attribute() {
	slices.SortStableFunc(r.Writes, func(a, b *Write) int { return a.At.Compare(b.At) })
	last := map[int]*Write{}
	for _, w := range r.Writes {
		prev := last[w.Page]
		last[w.Page] = w
		if prev == nil {
			continue
		}
		switch {
		case prev.Attempt.failed():
			w.Duplicate = CauseRetry
		case prev.Attempt.died():
			w.Duplicate = CauseCommitCrash
		default:
			w.Duplicate = CauseRecovery
		}
	}
}

// Summary is what a report counts.
type Summary struct {
	// StepAttempts are the attempts at DBOS steps, replays excluded.
	StepAttempts int64
	// InjectedFailures are the faults the lab injected, crashes included;
	// InjectedCrashes the crashes among them.
	InjectedFailures int64
	InjectedCrashes  int64
	// Crashes are the processes that died while running the run: by an
	// injected crash or killed from outside.
	Crashes int64
	// Killed are the processes among them killed from outside.
	Killed int64
	// CommitCrashes are the processes that died right after a write
	// committed and before its step was checkpointed.
	CommitCrashes    int64
	UniqueViolations int64
	// Executions are the main workflow's executions; Recoveries those after
	// the first.
	Executions int
	Recoveries int
	// Written is every row the writes committed.
	Written int64
	// Duplicates are the rows written again, by cause; they sum to
	// Written minus the distinct pages' rows.
	DuplicatesFromRetries       int64
	DuplicatesFromRecoveries    int64
	DuplicatesFromCommitCrashes int64
	// RetriedWrites are the failed attempts whose rows a retry wrote again.
	RetriedWrites int
}

// Duplicates is the sum of the duplicates by cause.
func (s Summary) Duplicates() int64 {
	return s.DuplicatesFromRetries + s.DuplicatesFromRecoveries + s.DuplicatesFromCommitCrashes
}

// Summary counts the run.
func (r *Run) Summary() Summary { return r.tally().summary() }

// process is a process of the run, as its executions name it.
type process struct {
	host string
	pid  int
}

// tally is a Summary with the processes behind its process counts, so that
// the tallies of the parts of a run add up (Summarize).
type tally struct {
	Summary
	crashed, killed, commit map[process]bool
	faults                  []*Fault
}

func (t *tally) add(u tally) {
	s, o := &t.Summary, u.Summary
	s.StepAttempts += o.StepAttempts
	s.InjectedFailures += o.InjectedFailures
	s.InjectedCrashes += o.InjectedCrashes
	s.UniqueViolations += o.UniqueViolations
	s.Written += o.Written
	s.DuplicatesFromRetries += o.DuplicatesFromRetries
	s.DuplicatesFromRecoveries += o.DuplicatesFromRecoveries
	s.DuplicatesFromCommitCrashes += o.DuplicatesFromCommitCrashes
	s.RetriedWrites += o.RetriedWrites
	if o.Executions > 0 {
		s.Executions, s.Recoveries = o.Executions, o.Recoveries
	}
	for _, m := range []struct{ into, from map[process]bool }{{t.crashed, u.crashed}, {t.killed, u.killed}, {t.commit, u.commit}} {
		maps.Copy(m.into, m.from)
	}
	t.faults = append(t.faults, u.faults...)
}

func (t tally) summary() Summary {
	s := t.Summary
	s.Crashes, s.Killed, s.CommitCrashes = int64(len(t.crashed)), int64(len(t.killed)), int64(len(t.commit))
	return s
}

func newTally() tally {
	return tally{crashed: map[process]bool{}, killed: map[process]bool{}, commit: map[process]bool{}}
}

func (r *Run) tally() tally {
	t := newTally()
	s := &t.Summary
	crashed, killed, commit := t.crashed, t.killed, t.commit
	for _, w := range r.Workflows {
		for _, x := range w.Executions {
			p := process{x.Host, x.PID}
			switch {
			case x.PID == 0:
				// Unrecorded (reconcile): its process is unknown, and
				// counted by the executions it did record.
			case x.Outcome == "crashed":
				crashed[p] = true
			case x.Outcome == OutcomeKilled:
				crashed[p], killed[p] = true, true
			}
			for _, a := range x.Attempts {
				if a.StepID >= 0 {
					s.StepAttempts++
				}
				if a.Outcome == "unique" {
					s.UniqueViolations++
				}
				if a.Outcome == OutcomeDied && a.Rows() > 0 {
					commit[p] = true
				}
			}
			for _, f := range x.Faults {
				s.InjectedFailures++
				switch f.Kind {
				case "commit-crash":
					commit[p] = true
					s.InjectedCrashes++
				case "crash":
					s.InjectedCrashes++
				}
			}
		}
	}
	retried := map[*Attempt]bool{}
	for _, w := range r.Writes {
		s.Written += int64(w.Rows)
	}
	prev := map[int]*Write{}
	for _, w := range r.Writes {
		switch w.Duplicate {
		case CauseRetry:
			s.DuplicatesFromRetries += int64(w.Rows)
			retried[prev[w.Page].Attempt] = true
		case CauseRecovery:
			s.DuplicatesFromRecoveries += int64(w.Rows)
		case CauseCommitCrash:
			s.DuplicatesFromCommitCrashes += int64(w.Rows)
		}
		prev[w.Page] = w
	}
	s.RetriedWrites = len(retried)
	s.Executions = len(r.Root.Executions)
	s.Recoveries = max(s.Executions-1, 0)
	t.faults = r.Faults
	return t
}
