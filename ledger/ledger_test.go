package ledger

import (
	"errors"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// events builds a run's events one process at a time, as the runtime
// appends them.
type events struct {
	t0  time.Time
	seq int64
	evs []store.Event
}

func (b *events) add(kind store.EventKind, wf, exec string, f func(e *store.Event)) {
	b.seq++
	e := store.Event{Root: "root", Workflow: wf, Execution: exec, Seq: b.seq, Kind: kind,
		At: b.t0.Add(time.Duration(b.seq) * time.Millisecond), StepID: -1}
	if f != nil {
		f(&e)
	}
	b.evs = append(b.evs, e)
}

func (b *events) begin(wf, exec string, pid, number int) {
	b.add(store.ExecutionBegan, wf, exec, func(e *store.Event) { e.PID, e.Host, e.Number, e.Detail = pid, "h", number, "main" })
}

func (b *events) attempt(wf, exec, id string, step, n int, outcome string, pages ...int) {
	b.add(store.AttemptBegan, wf, exec, func(e *store.Event) { e.Attempt, e.StepID, e.StepName, e.AttemptNo = id, step, "insert", n })
	for _, p := range pages {
		b.add(store.PageWritten, wf, exec, func(e *store.Event) { e.Attempt, e.Page, e.Rows = id, p, 10 })
	}
	if outcome != "" {
		b.add(store.AttemptEnded, wf, exec, func(e *store.Event) { e.Attempt, e.Outcome = id, outcome })
	}
}

func (b *events) end(wf, exec, outcome, site string) {
	b.add(store.ExecutionEnded, wf, exec, func(e *store.Event) { e.Outcome, e.Site = outcome, site })
}

func assemble(t *testing.T, b *events, status dbos.WorkflowStatusType, steps []dbos.StepInfo, alive bool) (*Run, Summary) {
	t.Helper()
	r, err := Assemble(Source{Root: "root", Events: b.evs,
		Statuses: func() ([]dbos.WorkflowStatus, error) {
			return []dbos.WorkflowStatus{{ID: "root", Status: status}}, nil
		},
		Steps: func(string) ([]dbos.StepInfo, error) { return steps, nil },
		Alive: func(string, int, string) bool { return alive },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, r.Summary()
}

// A retried write, a write that died after its commit, and a body write a
// recovery ran again: each duplicate gets its cause, and they sum up.
func TestAttribution(t *testing.T) {
	b := &events{t0: time.Now()}
	b.begin("root", "x1", 1, 1)
	b.attempt("root", "x1", "a1", 1, 1, "injected", 1)
	b.attempt("root", "x1", "a2", 1, 2, "ok", 1)
	b.attempt("root", "x1", "a3", 2, 1, "", 2) // killed right after its commit
	b.begin("root", "x2", 2, 2)
	b.attempt("root", "x2", "a4", 2, 1, "ok", 2)
	b.attempt("root", "x2", "b1", -1, 1, "ok", 3) // a body write
	b.end("root", "x2", "crashed", "after page 3")
	b.begin("root", "x3", 3, 3)
	b.attempt("root", "x3", "b2", -1, 1, "ok", 3) // the recovery wrote it again
	b.end("root", "x3", "ok", "")
	r, s := assemble(t, b, dbos.WorkflowStatusSuccess, []dbos.StepInfo{{StepID: 1}, {StepID: 2}}, false)
	if s.DuplicatesFromRetries != 10 || s.DuplicatesFromCommitCrashes != 10 || s.DuplicatesFromRecoveries != 10 || s.Duplicates() != 30 {
		t.Errorf("duplicates %+v, want 10 of each cause", s)
	}
	if s.Written != 60 || s.RetriedWrites != 1 {
		t.Errorf("written %d, retried writes %d; want 60 and 1", s.Written, s.RetriedWrites)
	}
	x1 := r.Root.Executions[0]
	if x1.Outcome != OutcomeKilled || !x1.Derived {
		t.Errorf("execution 1: %s (derived %v), want killed, derived", x1.Outcome, x1.Derived)
	}
	if a3 := x1.Attempts[2]; a3.Outcome != OutcomeDied || a3.Rows() != 10 {
		t.Errorf("attempt a3: %s, %d rows; want died after 10 rows", a3.Outcome, a3.Rows())
	}
	// Three processes: 1 killed from outside (and right after a commit), 2
	// crashed by an injected crash, 3 finished.
	if s.Crashes != 2 || s.Killed != 1 || s.CommitCrashes != 1 || s.Recoveries != 2 || s.StepAttempts != 4 {
		t.Errorf("summary %+v", s)
	}
}

// An attempt whose end was waiting for a write when its process died ended
// as DBOS checkpointed its step; a step DBOS checkpointed that no recorded
// attempt ran is taken from DBOS too.
func TestLostEndsComeFromDBOS(t *testing.T) {
	b := &events{t0: time.Now()}
	b.begin("root", "x1", 1, 1)
	b.attempt("root", "x1", "a1", 0, 1, "") // its end died with the process
	b.begin("root", "x2", 2, 2)
	b.end("root", "x2", "ok", "")
	done := b.t0.Add(2500 * time.Microsecond) // before execution 2 began
	steps := []dbos.StepInfo{
		{StepID: 0, StepName: "generate_page_1", StartedAt: b.t0, CompletedAt: done},
		{StepID: 1, StepName: "generate_page_2", StartedAt: done, CompletedAt: done.Add(time.Microsecond)},
		{StepID: 2, StepName: "failed_step", StartedAt: done, CompletedAt: done.Add(time.Microsecond), Error: errors.New("boom")},
	}
	r, s := assemble(t, b, dbos.WorkflowStatusSuccess, steps, false)
	x1 := r.Root.Executions[0]
	if a := x1.Attempts[0]; a.Outcome != "ok" || !a.Derived || !a.End.Equal(done) {
		t.Errorf("attempt with no end: %s derived %v end %v; want ok from DBOS at %v", a.Outcome, a.Derived, a.End, done)
	}
	if len(x1.Attempts) != 3 || x1.Attempts[1].Step != "generate_page_2" || x1.Attempts[2].Outcome != "error" {
		t.Errorf("execution 1 attempts %+v; want the two steps DBOS checkpointed added", x1.Attempts)
	}
	if s.StepAttempts != 3 {
		t.Errorf("step attempts %d, want 3", s.StepAttempts)
	}
}

// An execution with no end and no successor is running while its process
// lives, killed once it does not; the other executions an injected crash
// took down with its process crashed with it.
func TestRunningKilledAndCrashedWithItsProcess(t *testing.T) {
	b := &events{t0: time.Now()}
	b.begin("root", "x1", 1, 1)
	r, _ := assemble(t, b, dbos.WorkflowStatusPending, nil, true)
	if got := r.Root.Executions[0].Outcome; got != OutcomeRunning {
		t.Errorf("alive: %s, want running", got)
	}
	r, _ = assemble(t, b, dbos.WorkflowStatusPending, nil, false)
	if got := r.Root.Executions[0].Outcome; got != OutcomeKilled {
		t.Errorf("dead: %s, want killed", got)
	}

	b.begin("child", "c1", 1, 1)
	b.end("child", "c1", "crashed", "after committing batch 1")
	r, s := assemble(t, b, dbos.WorkflowStatusPending, nil, false)
	if x := r.Root.Executions[0]; x.Outcome != "crashed" || x.Site != "after committing batch 1" {
		t.Errorf("the parent in the crashed process: %s at %q, want crashed at the child's site", x.Outcome, x.Site)
	}
	if s.Crashes != 1 || s.Killed != 0 {
		t.Errorf("%d processes died, %d killed; want 1 and 0", s.Crashes, s.Killed)
	}
}

// A step whose recorded attempts all failed, but which DBOS checkpointed as
// a success, had one more attempt, whose record died with its process; and
// an execution DBOS numbered 2 with no record of 1 means 1 was killed before
// its first record: the steps DBOS checkpointed then are its attempts. Such
// an unrecorded execution's process is unknown and counted by no one.
func TestLostSuccessesAndExecutionsComeFromDBOS(t *testing.T) {
	b := &events{t0: time.Now()}
	b.begin("root", "x2", 2, 2) // execution 1 left no record
	b.attempt("root", "x2", "a1", 1, 1, "injected")
	b.end("root", "x2", "ok", "")
	early := b.t0.Add(-time.Millisecond) // before execution 2 began
	steps := []dbos.StepInfo{
		{StepID: 0, StepName: "generate_page_1", StartedAt: early.Add(-time.Millisecond), CompletedAt: early},
		{StepID: 1, StepName: "generate_page_2", StartedAt: b.t0.Add(2 * time.Millisecond), CompletedAt: b.t0.Add(3500 * time.Microsecond)},
	}
	r, s := assemble(t, b, dbos.WorkflowStatusSuccess, steps, false)
	if len(r.Root.Executions) != 2 {
		t.Fatalf("%d executions, want the unrecorded one added before execution 2", len(r.Root.Executions))
	}
	x1, x2 := r.Root.Executions[0], r.Root.Executions[1]
	if len(x1.Attempts) != 1 || x1.Attempts[0].Step != "generate_page_1" || x1.Attempts[0].Outcome != "ok" || x1.Outcome != OutcomeKilled {
		t.Errorf("the unrecorded execution: %s with %d attempts; want killed, with generate_page_1 ok", x1.Outcome, len(x1.Attempts))
	}
	if len(x2.Attempts) != 2 || x2.Attempts[1].N != 2 || x2.Attempts[1].Outcome != "ok" || !x2.Attempts[1].Derived {
		t.Errorf("execution 2's attempts at generate_page_2: %d; want the injected one and a derived 2nd that succeeded", len(x2.Attempts))
	}
	if s.Crashes != 0 || s.Killed != 0 || s.StepAttempts != 3 {
		t.Errorf("%d processes died (%d killed), %d step attempts; want 0, 0, 3", s.Crashes, s.Killed, s.StepAttempts)
	}
}
