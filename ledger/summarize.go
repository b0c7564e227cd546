package ledger

import (
	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// StreamSource is a run read one workflow at a time, for Summarize.
type StreamSource struct {
	Root string
	// RootEvents returns the main workflow's events, earliest first; with
	// lean, without its plain successes, which it counts instead
	// (store.Store.WorkflowEvents).
	RootEvents func(lean bool) ([]store.Event, int, error)
	// EachWorkflow calls fn with the events of each other workflow of the
	// run, earliest first (store.Store.EachWorkflow).
	EachWorkflow func(fn func(events []store.Event) error) error
	// Crashes are the run's injected crashes (store.Store.Crashes).
	Crashes []store.Crash
	// Statuses reads DBOS's records of the given workflows.
	Statuses func(ids ...string) ([]dbos.WorkflowStatus, error)
	// Children calls fn with DBOS's records of the run's child workflows,
	// a page at a time.
	Children func(fn func(page []dbos.WorkflowStatus) error) error
	Steps    func(workflowID string) ([]dbos.StepInfo, error)
	Alive    func(executorID string, pid int, host string) bool
}

// Summarize counts a run as Assemble and Run.Summary do, and gives its
// fault schedule as Run.Schedule does, one workflow at a time: a report's
// memory is then bounded by the largest workflow (a batch, or the main
// workflow's record per batch) instead of growing with the run. What a
// workflow's summary needs of the others is what Source.Crashes carries:
// which processes an injected crash killed. Duplicates are attributed
// within a workflow, which writes its own pages.
func Summarize(src StreamSource) (Summary, string, error) {
	total := newTally()
	seen := map[string]bool{}
	part := func(events []store.Event, statuses []dbos.WorkflowStatus) error {
		// Only this workflow's record: the root's, in a child's part,
		// would make reconcile take the root's steps for an unrecorded
		// execution of it.
		ids := []string{src.Root}
		if len(events) > 0 {
			ids = []string{events[0].Workflow}
		}
		r, err := Assemble(Source{Root: src.Root, Events: events, Steps: src.Steps, Alive: src.Alive, Crashes: src.Crashes,
			Full: statuses != nil,
			Statuses: func() ([]dbos.WorkflowStatus, error) {
				if statuses != nil {
					return statuses, nil
				}
				return src.Statuses(ids...)
			}})
		if err != nil {
			return err
		}
		for id := range r.Workflows {
			seen[id] = true
		}
		total.add(r.tally())
		return nil
	}
	// The main workflow of a batch run records a plain success per batch:
	// they are counted, not held, unless some record of it was lost, when
	// the derivations need every attempt.
	events, plain, err := src.RootEvents(true)
	if err != nil {
		return Summary{}, "", err
	}
	lean, err := assembleRoot(src, events)
	if err != nil {
		return Summary{}, "", err
	}
	if plain > 0 && lean.Root.derived() {
		if events, plain, err = src.RootEvents(false); err != nil {
			return Summary{}, "", err
		}
		if lean, err = assembleRoot(src, events); err != nil {
			return Summary{}, "", err
		}
	}
	seen[src.Root] = true
	root := lean.tally()
	root.StepAttempts += int64(plain)
	total.add(root)
	events = nil
	if err := src.EachWorkflow(func(events []store.Event) error { return part(events, nil) }); err != nil {
		return Summary{}, "", err
	}
	// A child DBOS knows and the ledger does not was killed before its
	// first record: what DBOS checkpointed of it counts too.
	if src.Children != nil {
		err := src.Children(func(page []dbos.WorkflowStatus) error {
			for _, st := range page {
				if seen[st.ID] {
					continue
				}
				if err := part(nil, []dbos.WorkflowStatus{st}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return Summary{}, "", err
		}
	}
	return total.summary(), schedule(total.faults), nil
}

func assembleRoot(src StreamSource, events []store.Event) (*Run, error) {
	return Assemble(Source{Root: src.Root, Events: events, Steps: src.Steps, Alive: src.Alive, Crashes: src.Crashes,
		Statuses: func() ([]dbos.WorkflowStatus, error) { return src.Statuses(src.Root) }})
}

// derived tells whether anything of w's was derived rather than recorded.
func (w *Workflow) derived() bool {
	for _, x := range w.Executions {
		if x.Derived {
			return true
		}
		for _, a := range x.Attempts {
			if a.Derived {
				return true
			}
		}
	}
	return false
}
