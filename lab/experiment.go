package lab

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// Input is a workflow's input: what the run is, not the environment it runs in.
type Input struct {
	Seed     int64  `json:"seed"`
	Pages    int    `json:"pages"`
	PageSize int    `json:"page_size"`
	Batches  int    `json:"batches,omitempty"`
	Queue    string `json:"queue,omitempty"`
}

// Users is the number of users the input generates.
func (in Input) Users() int64 {
	return int64(max(in.Batches, 1)) * int64(in.Pages) * int64(in.PageSize)
}

// BatchInput is a batch child workflow's input.
type BatchInput struct {
	Input
	Root  string `json:"root"`  // the main workflow's ID
	Batch int    `json:"batch"` // 1-based
}

// PageNumber numbers pages from 1 across batches, as the Python original
// does.
func (in BatchInput) PageNumber(p int) int { return p + (in.Batch-1)*in.Pages }

// mainRole names a run's main workflow in fault decisions.
const mainRole = "main"

// A workflow's input says where the workflow stands in its run: its seed,
// its root workflow and its role, which fault decisions use in place of its
// workflow ID so that a seed replays in a new workflow.
type runInput interface {
	runSeed() int64
	rootOf(workflowID string) string
	role() string
}

func (in Input) runSeed() int64            { return in.Seed }
func (in Input) rootOf(id string) string   { return id }
func (in Input) role() string              { return mainRole }
func (in BatchInput) rootOf(string) string { return in.Root }
func (in BatchInput) role() string         { return fmt.Sprintf("batch-%d", in.Batch) }

// Knob names a flag an experiment takes.
type Knob string

const (
	KnobPages               Knob = "pages"
	KnobPageSize            Knob = "page-size"
	KnobBatches             Knob = "batches"
	KnobFailProb            Knob = "fail-prob"
	KnobGenFailProb         Knob = "gen-fail-prob"
	KnobCrashProb           Knob = "crash-prob"
	KnobCommitCrashProb     Knob = "commit-crash-prob"
	KnobCrashAfter          Knob = "crash-after"
	KnobAttempts            Knob = "attempts"
	KnobBackoff             Knob = "backoff"
	KnobMaxRecoveryAttempts Knob = "max-recovery-attempts"
	KnobWait                Knob = "wait"
	KnobQueue               Knob = "queue"
)

// Faults are the fault knobs of this process. They belong to the process,
// not to the workflow: a recovered workflow obeys the knobs of the process
// that recovers it.
type Faults struct {
	FailProb            float64 // a step fails after its write (retry-bad, dedup, exactly-once insert)
	GenFailProb         float64 // the generate step fails (dedup, exactly-once)
	CrashProb           float64 // the process dies at a crash point
	CommitCrashProb     float64 // the process dies right after an insert commits (dedup, exactly-once)
	CrashAfterBatch     int     // batch crash points start after this batch
	Attempts            int     // attempts allowed to a retried step
	Backoff             float64 // the factor by which the wait grows between the insert's retries (dedup, exactly-once)
	MaxRecoveryAttempts int     // recoveries allowed to a workflow
}

// Params are everything one run of an experiment is given.
type Params struct {
	Input
	Faults
	Wait time.Duration // how long to give a pending workflow of another executor
	// WorkflowID, if set, is the main workflow's ID: a run finds the
	// workflow of that ID if it exists, whatever its status, and starts it
	// under that ID if not. A supervisor gives each of its restarts the
	// same ID, so that a process killed after its workflow ended restarts
	// into a report of that workflow, not into a second run.
	WorkflowID string
	// OnStart, if set, is told how the run began, before Run waits for it.
	OnStart func(Start)
	// OnNewID, if set, is told the ID of a new main workflow before it
	// starts: a supervisor that learns it only once the workflow runs may
	// lose it to a crash in between (package startfd).
	OnNewID func(id string)
}

// DefaultWait is the Python original's pause before deciding about a
// pending workflow.
const DefaultWait = 5 * time.Second

// Experiment describes one experiment: what the command line shows, the
// workflows DBOS runs, and how a run is judged.
type Experiment struct {
	Name   string
	Origin string // the Python original it is ported from ("ex6"), "" for none
	Short  string
	Long   string
	Knobs  []Knob
	// Defaults are the knobs' values, the Python original's.
	Defaults Params
	// Table is the users table the workflows write.
	Table store.Variant
	// Main is the workflow a run starts; Children are the workflows it
	// starts in turn. Their DBOS names are "<experiment>.<local name>".
	Main     *Workflow[Input, store.Counts]
	Children []ChildWorkflow
	// Expected says in words what a correct run of input in produces.
	Expected func(in Input) string
	// Guarantee is what durlab explore checks, against the databases, after
	// any fault: what the experiment promises however its run was hurt.
	Guarantee Guarantee
	// PageNumbers are the pages a run of input in writes.
	PageNumbers func(in Input) []int
	// Judge sets the report's verdict (AsExpected) and its Lesson.
	Judge func(rep *Report)
}

// MaxUsersInMemory bounds the users one step holds: a page, or a batch
// experiment's batch. Memory is bounded by it, not by the run: measured at
// about MemoryPerUser per user at peak (dedup, one batch of 100,000 users:
// 178 MB, against 52 MB for 10,000).
const (
	MaxUsersInMemory = 100_000
	MemoryPerUser    = "1.3 KB"
)

// PagesFrom0 numbers a one-workflow run's pages from 0.
func PagesFrom0(in Input) []int {
	pages := make([]int, in.Pages)
	for i := range pages {
		pages[i] = i
	}
	return pages
}

// PagesFrom1 numbers a one-workflow run's pages from 1, as the Python ex3
// and ex4 do.
func PagesFrom1(in Input) []int {
	pages := PagesFrom0(in)
	for i := range pages {
		pages[i]++
	}
	return pages
}

// BatchPages numbers a batch run's pages from 1 across its batches.
func BatchPages(in Input) []int {
	pages := make([]int, in.Pages*max(in.Batches, 1))
	for i := range pages {
		pages[i] = i + 1
	}
	return pages
}

// Guarantee is what an experiment promises whatever faults hit its run.
type Guarantee struct {
	// Status is the main workflow's final status: SUCCESS, or ERROR for an
	// experiment whose lesson is a failure.
	Status string
	// AllUsers: every user of every page of the input is in the table.
	AllUsers bool
	// LatestExact: the window-function count equals the input's users.
	LatestExact bool
	// NoDuplicates: rows equal unique users.
	NoDuplicates bool
	// Unique: a UNIQUE violation was hit (the lesson of retry-bad);
	// NoUnique: none was.
	Unique, NoUnique bool
}

// String says what the guarantee checks, as explore prints it.
func (g Guarantee) String() string {
	parts := []string{"the workflow ends " + g.Status}
	if g.AllUsers {
		parts = append(parts, "every user of the input is in the table")
	}
	if g.LatestExact {
		parts = append(parts, "the window-function count is exact")
	}
	if g.NoDuplicates {
		parts = append(parts, "no duplicate row")
	}
	if g.Unique {
		parts = append(parts, "a UNIQUE violation is hit")
	}
	if g.NoUnique {
		parts = append(parts, "no UNIQUE violation")
	}
	parts = append(parts, "the ledger explains every duplicate")
	return strings.Join(parts, ", ")
}

// Has tells whether the experiment takes knob k.
func (e *Experiment) Has(k Knob) bool { return slices.Contains(e.Knobs, k) }

// HasFaults tells whether the experiment injects faults, so that its seed
// decides anything.
func (e *Experiment) HasFaults() bool {
	return e.Has(KnobFailProb) || e.Has(KnobCrashProb) || e.Has(KnobGenFailProb) || e.Has(KnobCommitCrashProb)
}

// WorkflowName is the DBOS name of one of the experiment's workflows.
func (e *Experiment) WorkflowName(local string) string { return e.Name + "." + local }

// WorkflowNames are the DBOS names of all the experiment's workflows.
func (e *Experiment) WorkflowNames() []string {
	var names []string
	for _, w := range e.workflows() {
		names = append(names, e.WorkflowName(w.local()))
	}
	return names
}

func (e *Experiment) workflows() []ChildWorkflow {
	return append([]ChildWorkflow{e.Main}, e.Children...)
}

// ChildWorkflow is a Workflow of any type that a main workflow starts.
type ChildWorkflow interface {
	local() string
	register(rt *Runtime, name string, opts ...dbos.WorkflowRegistrationOption)
}

// Workflow is one of an experiment's DBOS workflows: a top-level function
// (DBOS tells registered workflows apart by the function's own name) and
// its name within the experiment.
type Workflow[I, O any] struct {
	name string
	fn   dbos.Workflow[I, O]
	// dbosName is the name it is registered under.
	dbosName string
}

// NewWorkflow names fn, a top-level function, within its experiment.
func NewWorkflow[I, O any](local string, fn dbos.Workflow[I, O]) *Workflow[I, O] {
	return &Workflow[I, O]{name: local, fn: fn}
}

func (w *Workflow[I, O]) local() string { return w.name }

func (w *Workflow[I, O]) register(rt *Runtime, name string, opts ...dbos.WorkflowRegistrationOption) {
	dbos.RegisterWorkflow(rt.dbos, w.fn, append(opts, dbos.WithWorkflowName(name))...)
	w.dbosName = name
	rt.registered[w] = true
}

// Run starts w as a child of the workflow x executes.
func (w *Workflow[I, O]) Run(x *Execution, in I, opts ...dbos.WorkflowOption) (dbos.WorkflowHandle[O], error) {
	if !x.rt.registered[w] {
		return nil, fmt.Errorf("workflow %s is not in its experiment's Children: durlab registers only the workflows its descriptors list", w.name)
	}
	if child, ok := any(in).(runInput); ok {
		x.point(Named("start-" + child.role()))
	}
	return dbos.RunWorkflow(started(x.ctx, w.dbosName, x.id), w.fn, in, opts...)
}

// startedKey marks the context of a dbos.RunWorkflow call made by durlab.
// DBOS runs the workflow function inside that call only when the call
// created the workflow: its first execution, whose number is 1. Execute
// then knows its number and name without reading the system database;
// recoveries and dequeued workflows run with contexts that have no mark.
type startedKey struct{}

type startMark struct{ name, parent string }

func started(ctx dbos.Context, name, parent string) dbos.Context {
	return dbos.WithValue(ctx, startedKey{}, startMark{name, parent})
}

// register registers every workflow of every experiment, so that Launch can
// recover any of them. The workflows of an experiment that takes
// --max-recovery-attempts are dead-lettered after that many recoveries;
// the others after DBOS's default.
func (rt *Runtime) register(exps []*Experiment) {
	n := rt.faults.MaxRecoveryAttempts
	if n <= 0 {
		n = 100 // DBOS's default
	}
	for _, e := range exps {
		var opts []dbos.WorkflowRegistrationOption
		if e.Has(KnobMaxRecoveryAttempts) {
			opts = append(opts, dbos.WithMaxRecoveryAttempts(n))
		}
		for _, w := range e.workflows() {
			w.register(rt, e.WorkflowName(w.local()), opts...)
		}
	}
}
