// Package trace is what `durlab workflow trace` shows of a run: the tree of
// its workflows, each with its executions, the child workflows each
// execution started, and the steps each ran with every attempt, built from
// a ledger.Run; rendered as text, JSON, JSON lines, or a self-contained
// HTML timeline.
package trace

import (
	"cmp"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/durlab/durlab/ledger"
)

// Trace is one run, as read at TakenAt. The JSON names are an interface.
type Trace struct {
	Root    *Workflow `json:"workflow"`
	Summary Summary   `json:"summary"`
	TakenAt time.Time `json:"taken_at"`
	// Finished: the main workflow will not run again by itself.
	Finished bool `json:"finished"`
}

// Summary is what the run's report counts, from the ledger and the users
// table: Rows and UniqueUsers are set by the caller, who reads the table.
type Summary struct {
	Rows                        int64 `json:"rows"`
	UniqueUsers                 int64 `json:"unique_users"`
	Duplicates                  int64 `json:"duplicates"`
	DuplicatesFromRetries       int64 `json:"duplicates_from_retries"`
	DuplicatesFromRecoveries    int64 `json:"duplicates_from_recoveries"`
	DuplicatesFromCommitCrashes int64 `json:"duplicates_from_commit_crashes"`
	StepAttempts                int64 `json:"step_attempts"`
	InjectedFailures            int64 `json:"injected_failures"`
	InjectedCrashes             int64 `json:"injected_crashes"`
	Crashes                     int64 `json:"crashes"`
	KilledFromOutside           int64 `json:"killed_from_outside"`
	CommitCrashes               int64 `json:"commit_crashes"`
	Recoveries                  int   `json:"recoveries"`
	UniqueViolations            int64 `json:"unique_violations"`
}

// Workflow is one workflow of the run.
type Workflow struct {
	ID     string `json:"workflow_id"`
	Name   string `json:"name"`
	Status string `json:"status"` // DBOS's, "" when DBOS was not asked
	// Batch is the batch number of a batch child workflow, 0 otherwise.
	Batch      int          `json:"batch,omitempty"`
	Executions []*Execution `json:"executions"`
}

// Execution is one execution of a workflow.
type Execution struct {
	ID         string    `json:"execution_id"`
	Number     int       `json:"execution"` // DBOS's attempts counter when it started; 0 unknown
	ExecutorID string    `json:"executor_id"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	Start      time.Time `json:"started_at"`
	End        time.Time `json:"ended_at,omitzero"`
	// LastSeen is the time of its last record; for an execution killed
	// with no end recorded, its duration runs to it.
	LastSeen time.Time `json:"last_seen_at,omitzero"`
	// Outcome: ok, error, cancelled, stopped (a signal), crashed (an
	// injected crash, at Site), killed (from outside), running.
	Outcome string `json:"outcome"`
	Site    string `json:"site,omitempty"`
	Error   string `json:"error,omitempty"`
	// Derived: the outcome was derived (see package ledger), not recorded.
	Derived bool `json:"derived,omitempty"`
	// Replayed are the steps this execution took from their checkpoints.
	Replayed []Replay `json:"replayed,omitempty"`
	// Steps are the steps this execution ran, in the order they started.
	Steps  []*Step  `json:"steps"`
	Faults []*Fault `json:"faults,omitempty"`
	// Children are the child workflows this execution started.
	Children []*Workflow `json:"children,omitempty"`
}

// Replay is a step taken from its checkpoint.
type Replay struct {
	StepID int    `json:"step_id"`
	Name   string `json:"name"`
}

// Step is one step an execution ran: a DBOS step (StepID >= 0) or a write
// from the workflow body (StepID -1, Body).
type Step struct {
	StepID   int        `json:"step_id"`
	Name     string     `json:"name"`
	Body     bool       `json:"body,omitempty"`
	Attempts []*Attempt `json:"attempts"`
}

// Attempt is one attempt at a step.
type Attempt struct {
	N     int       `json:"attempt"`
	Start time.Time `json:"started_at"`
	End   time.Time `json:"ended_at,omitzero"`
	// Outcome: ok, injected, unique, error, crashed, stopped, died,
	// running.
	Outcome string `json:"outcome"`
	Site    string `json:"site,omitempty"`
	Error   string `json:"error,omitempty"`
	Derived bool   `json:"derived,omitempty"`
	// Rows is what its writes committed; Duplicates how many of them
	// wrote a page again, and Cause why (retry, recovery, commit-crash).
	Rows       int      `json:"rows"`
	Duplicates int      `json:"duplicates,omitempty"`
	Cause      string   `json:"cause,omitempty"`
	Faults     []*Fault `json:"faults,omitempty"`
}

// Fault is one injected fault.
type Fault struct {
	Kind      string    `json:"kind"` // fail, crash, commit-crash
	Site      string    `json:"site"`
	DecidedBy string    `json:"decided_by"`
	At        time.Time `json:"at"`
}

// Find is the workflow of the trace whose ID is id, nil if none.
func (t *Trace) Find(id string) *Workflow {
	var find func(wf *Workflow) *Workflow
	find = func(wf *Workflow) *Workflow {
		if wf.ID == id {
			return wf
		}
		for _, x := range wf.Executions {
			for _, c := range x.Children {
				if f := find(c); f != nil {
					return f
				}
			}
		}
		return nil
	}
	return find(t.Root)
}

// Duration is how long an execution ran: up to until while it runs, and,
// when it died with no end recorded, up to its last record.
func (x *Execution) Duration(until time.Time) time.Duration {
	end := x.End
	switch {
	case !end.IsZero():
	case x.Outcome != "running" && !x.LastSeen.IsZero():
		end = x.LastSeen
	default:
		end = until
	}
	return max(end.Sub(x.Start), 0)
}

// Duration is how long an attempt ran, up to until when it has no end.
func (a *Attempt) Duration(until time.Time) time.Duration {
	end := a.End
	if end.IsZero() {
		end = until
	}
	return max(end.Sub(a.Start), 0)
}

// batchRole is a batch workflow's role in its run.
var batchRole = regexp.MustCompile(`^batch-(\d+)$`)

// Build makes the trace of run. finished says whether the main workflow
// will not run again by itself; taken is when the run was read.
func Build(run *ledger.Run, s ledger.Summary, finished bool, taken time.Time) *Trace {
	t := &Trace{Root: buildWorkflow(run, run.Root), TakenAt: taken, Finished: finished}
	t.Summary = Summary{
		DuplicatesFromRetries: s.DuplicatesFromRetries, DuplicatesFromRecoveries: s.DuplicatesFromRecoveries,
		DuplicatesFromCommitCrashes: s.DuplicatesFromCommitCrashes, Duplicates: s.Duplicates(),
		StepAttempts: s.StepAttempts, InjectedFailures: s.InjectedFailures, InjectedCrashes: s.InjectedCrashes,
		Crashes: s.Crashes, KilledFromOutside: s.Killed, CommitCrashes: s.CommitCrashes,
		Recoveries: s.Recoveries, UniqueViolations: s.UniqueViolations,
	}
	return t
}

func buildWorkflow(run *ledger.Run, w *ledger.Workflow) *Workflow {
	tw := &Workflow{ID: w.ID, Name: w.Name, Status: w.Status, Executions: []*Execution{}}
	for _, x := range w.Executions {
		tw.Executions = append(tw.Executions, buildExecution(x))
	}
	// A child goes under the execution that started it: the last one that
	// began before the child first ran.
	for _, c := range w.Children {
		tc := buildWorkflow(run, c)
		tc.Batch = batchOf(c)
		var under *Execution
		first := time.Time{}
		if len(c.Executions) > 0 {
			first = c.Executions[0].Start
		}
		for _, x := range tw.Executions {
			if first.IsZero() || !x.Start.After(first) {
				under = x
			}
		}
		if under == nil && len(tw.Executions) > 0 {
			under = tw.Executions[len(tw.Executions)-1]
		}
		if under == nil { // DBOS knows the child, the ledger no execution of the parent
			under = &Execution{ID: "unrecorded:" + w.ID, Outcome: ledger.OutcomeKilled, Derived: true, Steps: []*Step{}}
			tw.Executions = append(tw.Executions, under)
		}
		under.Children = append(under.Children, tc)
	}
	return tw
}

// batchOf is a batch child's number, from the role its executions
// recorded ("batch-3"); 0 when it is no batch or never ran.
func batchOf(w *ledger.Workflow) int {
	for _, x := range w.Executions {
		if m := batchRole.FindStringSubmatch(x.Role); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

func buildExecution(x *ledger.Execution) *Execution {
	tx := &Execution{ID: x.ID, Number: x.Number, ExecutorID: x.ExecutorID, Host: x.Host, PID: x.PID,
		Start: x.Start, End: x.End, LastSeen: x.LastSeen, Outcome: x.Outcome, Site: x.Site, Error: x.Error, Derived: x.Derived, Steps: []*Step{}}
	for _, r := range x.Replayed {
		tx.Replayed = append(tx.Replayed, Replay{StepID: r.StepID, Name: r.Step})
	}
	byKey := map[string]*Step{}
	for _, a := range x.Attempts {
		key := a.Step + "#" + strconv.Itoa(a.StepID)
		s := byKey[key]
		if s == nil {
			s = &Step{StepID: a.StepID, Name: a.Step, Body: a.Body()}
			byKey[key] = s
			tx.Steps = append(tx.Steps, s)
		}
		ta := &Attempt{N: a.N, Start: a.Start, End: a.End, Outcome: a.Outcome, Site: a.Site, Error: a.Error,
			Derived: a.Derived, Rows: a.Rows()}
		for _, w := range a.Writes {
			if w.Duplicate != ledger.CauseNone {
				ta.Duplicates += w.Rows
				ta.Cause = string(w.Duplicate)
			}
		}
		for _, f := range a.Faults {
			ta.Faults = append(ta.Faults, &Fault{Kind: f.Kind, Site: f.Site, DecidedBy: f.DecidedBy, At: f.At})
		}
		s.Attempts = append(s.Attempts, ta)
	}
	for _, s := range tx.Steps {
		slices.SortStableFunc(s.Attempts, func(a, b *Attempt) int { return cmp.Compare(a.N, b.N) })
	}
	for _, f := range x.Faults {
		if f.Attempt == nil {
			tx.Faults = append(tx.Faults, &Fault{Kind: f.Kind, Site: f.Site, DecidedBy: f.DecidedBy, At: f.At})
		}
	}
	return tx
}
