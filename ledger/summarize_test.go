package ledger

import (
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// streamOf serves a run's events as Summarize reads them: the main
// workflow's (lean: without its plain successes, counted), then each other
// workflow's.
func streamOf(b *events, statuses []dbos.WorkflowStatus) StreamSource {
	plainSuccess := func(e store.Event) bool {
		return e.Kind == store.AttemptEnded && !e.Began.IsZero() && e.Outcome == "ok" && e.StepID >= 0
	}
	return StreamSource{
		Root: "root",
		RootEvents: func(lean bool) ([]store.Event, int, error) {
			var evs []store.Event
			plain := 0
			for _, e := range b.evs {
				switch {
				case e.Workflow != "root":
				case lean && plainSuccess(e):
					plain++
				default:
					evs = append(evs, e)
				}
			}
			return evs, plain, nil
		},
		EachWorkflow: func(fn func([]store.Event) error) error {
			groups := map[string][]store.Event{}
			var order []string
			for _, e := range b.evs {
				if e.Workflow == "root" {
					continue
				}
				if groups[e.Workflow] == nil {
					order = append(order, e.Workflow)
				}
				groups[e.Workflow] = append(groups[e.Workflow], e)
			}
			for _, w := range order {
				if err := fn(groups[w]); err != nil {
					return err
				}
			}
			return nil
		},
		Statuses: func(ids ...string) ([]dbos.WorkflowStatus, error) {
			var out []dbos.WorkflowStatus
			for _, st := range statuses {
				for _, id := range ids {
					if st.ID == id {
						out = append(out, st)
					}
				}
			}
			return out, nil
		},
	}
}

func plainSuccess(b *events, wf, exec, id string, step int) {
	b.add(store.AttemptEnded, wf, exec, func(e *store.Event) {
		e.Attempt, e.StepID, e.StepName, e.AttemptNo, e.Outcome, e.Began = id, step, "batch_done", 1, "ok", e.At.Add(-time.Microsecond)
	})
}

// Read one workflow at a time, with the main workflow's plain successes
// counted rather than held, a run sums to what the whole run assembled at
// once says: with every record there, and with the main workflow's first
// execution killed, where the plain successes are needed after all.
func TestSummarizeAgreesWithTheWholeRun(t *testing.T) {
	for _, killed := range []bool{false, true} {
		b := &events{t0: time.Now()}
		b.begin("root", "m1", 1, 1)
		plainSuccess(b, "root", "m1", "p1", 1)
		b.begin("c1", "x1", 1, 1)
		b.attempt("c1", "x1", "a1", 5, 1, "injected", 1)
		b.attempt("c1", "x1", "a2", 5, 2, "ok", 1)
		b.end("c1", "x1", "ok", "")
		plainSuccess(b, "root", "m1", "p2", 3)
		if killed {
			b.begin("root", "m2", 2, 2) // m1 was killed: no end
		} else {
			b.end("root", "m1", "ok", "")
		}
		b.begin("c2", "x2", 2, 1)
		b.attempt("c2", "x2", "a3", 5, 1, "", 2) // died after writing: no end
		b.begin("c2", "x3", 2, 2)
		b.attempt("c2", "x3", "a4", 5, 1, "ok", 2)
		b.end("c2", "x3", "ok", "")
		if killed {
			b.end("root", "m2", "ok", "")
		}
		statuses := []dbos.WorkflowStatus{{ID: "root", Status: dbos.WorkflowStatusSuccess},
			{ID: "c1", Status: dbos.WorkflowStatusSuccess, ParentWorkflowID: "root"},
			{ID: "c2", Status: dbos.WorkflowStatusSuccess, ParentWorkflowID: "root"}}
		stepsOf := func(id string) ([]dbos.StepInfo, error) {
			if id != "c2" {
				return nil, nil
			}
			return []dbos.StepInfo{{StepID: 5, StepName: "insert", StartedAt: b.t0, CompletedAt: b.t0.Add(time.Hour)}}, nil
		}
		whole, err := Assemble(Source{Root: "root", Events: b.evs, Statuses: func() ([]dbos.WorkflowStatus, error) { return statuses, nil },
			Steps: stepsOf})
		if err != nil {
			t.Fatal(err)
		}
		src := streamOf(b, statuses)
		src.Steps = stepsOf
		src.Crashes = nil
		got, faults, err := Summarize(src)
		if err != nil {
			t.Fatal(err)
		}
		want := whole.Summary()
		if got != want {
			t.Errorf("killed %v: one workflow at a time %+v\nthe whole run %+v", killed, got, want)
		}
		if faults != whole.Schedule() {
			t.Errorf("killed %v: schedule %q, want %q", killed, faults, whole.Schedule())
		}
		killedWant := int64(1) // c2's first execution
		if killed {
			killedWant = 2 // and the main's
		}
		if want.StepAttempts != 6 || want.Killed != killedWant || want.Recoveries != int(killedWant-1) || want.DuplicatesFromRetries != 10 ||
			want.DuplicatesFromRecoveries+want.DuplicatesFromCommitCrashes != 10 {
			t.Errorf("killed %v: the whole run counts %+v", killed, want)
		}
	}
}
