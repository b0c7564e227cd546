package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/google/uuid"

	"github.com/durlab/durlab/internal/shell"
	"github.com/durlab/durlab/ledger"
	"github.com/durlab/durlab/store"
)

// Report is what an experiment tells the user. The JSON field names are an
// interface: scripts depend on them.
type Report struct {
	Experiment  string `json:"experiment"`
	WorkflowID  string `json:"workflow_id"`
	Status      string `json:"status"`
	Result      int64  `json:"result"`
	Expected    string `json:"expected"`
	AsExpected  bool   `json:"as_expected"`
	Rows        int64  `json:"rows"`
	UniqueUsers int64  `json:"unique_users"`
	Duplicates  int64  `json:"duplicates"`
	// The duplicates by cause, from the attempt ledger; they sum to
	// Duplicates.
	DuplicatesFromRetries       int64 `json:"duplicates_from_retries"`
	DuplicatesFromRecoveries    int64 `json:"duplicates_from_recoveries"`
	DuplicatesFromCommitCrashes int64 `json:"duplicates_from_commit_crashes"`
	// The counts below come from the attempt ledger (see package ledger).
	StepAttempts     int64 `json:"step_attempts"`
	InjectedFailures int64 `json:"injected_failures"` // every injected fault, crashes included
	InjectedCrashes  int64 `json:"injected_crashes"`
	// Crashes are the processes that died while running the workflow:
	// by an injected crash, or killed from outside.
	Crashes           int64 `json:"crashes"`
	KilledFromOutside int64 `json:"killed_from_outside"`
	// CommitCrashes are the processes that died right after a write
	// committed, before its step was checkpointed.
	CommitCrashes int64 `json:"commit_crashes"`
	// Recoveries are the main workflow's executions after the first.
	Recoveries       int   `json:"recoveries"`
	UniqueViolations int64 `json:"unique_violations"`
	// RetriedWriteAttempts are the failed attempts whose rows a retry
	// wrote again.
	RetriedWriteAttempts int `json:"retried_write_attempts"`
	// Faults are the faults injected, in the --faults syntax: pasted back
	// as --faults, they replay the run.
	Faults   string `json:"faults"`
	Seed     int64  `json:"seed"`
	Attached bool   `json:"attached"`
	Error    string `json:"error"`
	// Lesson is one sentence on what this run shows.
	Lesson string `json:"lesson"`
	// TableRows counts every row of the experiment's table at the end, all
	// runs' (the batch experiments: ex5 and ex6 log it as "Total users in
	// database").
	TableRows int64 `json:"table_rows,omitempty"`
	// ForkedFrom is the workflow this one was forked from, and
	// CopiedBatches the batches it copied from there (see fork.go).
	ForkedFrom    string `json:"forked_from,omitempty"`
	CopiedBatches []int  `json:"copied_batches,omitempty"`
	// CopiedPages are the pages a fork of a one-workflow experiment copied.
	CopiedPages []int `json:"copied_pages,omitempty"`

	input Input  // the workflow's own input
	own   *Input // a fork's: the batches or pages it ran itself
}

// RunInput is the input the reported workflow ran with: a resumed workflow
// keeps the one it was started with.
func (r *Report) RunInput() Input { return r.input }

// OwnInput is what the workflow's own rows are of: its input, but for a
// fork the batches or pages it ran itself, which may be none.
func (r *Report) OwnInput() Input {
	if r.own != nil {
		return *r.own
	}
	return r.input
}

// WantUsers is how many unique users the workflow's own rows should hold.
func (r *Report) WantUsers() int64 {
	in := r.OwnInput()
	if r.input.Batches > 0 {
		return int64(in.Batches) * int64(in.Pages) * int64(in.PageSize) // a fork may have run no batch
	}
	return in.Users()
}

// Succeeded: the workflow ended in SUCCESS with every user written.
func (r *Report) Succeeded() bool {
	return r.Status == string(dbos.WorkflowStatusSuccess) && r.UniqueUsers == r.WantUsers()
}

// DeadLetterLesson explains a dead-lettered workflow, or returns "".
func (r *Report) DeadLetterLesson() string {
	if r.Status != string(dbos.WorkflowStatusMaxRecoveryAttemptsExceeded) {
		return ""
	}
	return fmt.Sprintf("the workflow crashed in every execution; after %s DBOS dead-lettered it and will not run it again by itself (`%s` forces it)", Count(r.Recoveries, "recovery", "recoveries"), shell.Join("durlab", "workflow", "resume", r.WorkflowID))
}

// PagesExpected is the Expected text of the one-workflow experiments.
func PagesExpected(in Input) string {
	return fmt.Sprintf("%d unique users (%s of %d)", in.Users(), Count(in.Pages, "page", "pages"), in.PageSize)
}

// BatchesExpected is the Expected text of the batch experiments.
func BatchesExpected(in Input) string {
	// A fork may have run no batch of its own (fork.go).
	return fmt.Sprintf("%d unique users (%d batches x %d pages x %d)", int64(in.Batches)*int64(in.Pages)*int64(in.PageSize), in.Batches, in.Pages, in.PageSize)
}

// Run runs experiment e with p: it starts its main workflow, or attaches to
// one an earlier process left pending, waits for it and reports on it. It
// returns ErrInterrupted when ctx is cancelled first; the workflow then
// stays PENDING.
func (rt *Runtime) Run(ctx context.Context, e *Experiment, p Params) (Report, error) {
	t := rt.store.Table(e.Table)
	name := e.WorkflowName(e.Main.local())
	h, attached, err := startOrAttach(ctx, rt, name, e.Main, p, func() error {
		unknown, err := PrepareStore(ctx, rt.dbos, t)
		rt.noticeUnknown(ctx, t, unknown)
		return err
	})
	if err != nil {
		return Report{}, err
	}
	if err := rt.started(name, h.GetWorkflowID(), attached, p); err != nil {
		return Report{}, err
	}
	rep, err := rt.finish(ctx, e, h, attached, p, t)
	if err != nil {
		return rep, err
	}
	e.Judge(&rep)
	if rep.AsExpected && rep.ForkedFrom != "" && rep.WantUsers() == 0 {
		rep.Lesson = "a fork takes a copied step's recorded output and does not run the step again: every write was copied, so this fork wrote no row of its own"
	}
	rep.Expected = e.Expected(rep.OwnInput())
	return rep, nil
}

// startOrAttach implements the Python original's start-up for a named
// workflow: a PENDING or ENQUEUED workflow of that name is attached to
// instead of starting another. Launch has already recovered the ones of
// this executor; one owned by another executor gets p.Wait to finish, then
// a new workflow starts beside it. A workflow this process's Launch
// dead-lettered is returned as it is, so the report says so.
func startOrAttach[R any](ctx context.Context, rt *Runtime, name string, wf *Workflow[Input, R], p Params, beforeStart func() error) (dbos.WorkflowHandle[R], bool, error) {
	if p.WorkflowID != "" {
		return startOrAttachID(rt, name, wf, p, beforeStart)
	}
	if rt.newRun {
		return startNew(rt, name, wf, p, beforeStart)
	}
	if ids := rt.leftPending[name]; len(ids) > 0 {
		// What this executor left behind is what the user restarted for,
		// whether Launch recovered it or dead-lettered it.
		id := ids[0]
		rt.leftPending[name] = ids[1:]
		fmt.Fprintf(rt.notices, "durlab: resuming workflow %s, left pending by an earlier process\n", id)
		h, err := dbos.RetrieveWorkflow[R](rt.dbos, id)
		return h, true, err
	}
	pending, err := dbos.ListWorkflows(rt.dbos, dbos.WithFilterName(name),
		dbos.WithFilterStatus(dbos.WorkflowStatusPending, dbos.WorkflowStatusEnqueued),
		dbos.WithFilterSortDesc(), dbos.WithFilterLimit(1),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, false, err
	}
	if len(pending) > 0 {
		w := pending[0]
		h, err := dbos.RetrieveWorkflow[R](rt.dbos, w.ID)
		if err != nil {
			return nil, false, err
		}
		if w.ExecutorID == rt.ExecutorID() && w.ApplicationVersion == AppVersion {
			fmt.Fprintf(rt.notices, "durlab: resuming pending workflow %s\n", w.ID)
			return h, true, nil
		}
		fmt.Fprintf(rt.notices, "durlab: workflow %s is %s on executor %s; waiting %s for it\n", w.ID, w.Status, w.ExecutorID, p.Wait)
		if _, err := awaitResult(ctx, h, p.Wait); err == nil || !errors.Is(err, errWaitTimeout) {
			return h, true, nil
		}
		fmt.Fprintf(rt.notices, "durlab: workflow %s is still %s; starting a new one\n", w.ID, w.Status)
	}
	return startNew(rt, name, wf, p, beforeStart)
}

// startOrAttachID runs the workflow of ID p.WorkflowID: the one that
// exists, or a new one under that ID.
func startOrAttachID[R any](rt *Runtime, name string, wf *Workflow[Input, R], p Params, beforeStart func() error) (dbos.WorkflowHandle[R], bool, error) {
	wfs, err := dbos.ListWorkflows(rt.dbos, dbos.WithFilterWorkflowIDs(p.WorkflowID),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, false, err
	}
	if len(wfs) == 0 {
		return startNew(rt, name, wf, p, beforeStart)
	}
	w := wfs[0]
	if w.Name != name {
		return nil, false, fmt.Errorf("%w: workflow %s is a %s, not a %s", ErrWrongWorkflow, w.ID, w.Name, name)
	}
	// Launch may have recovered it: it is the one this run attaches to,
	// not a leftover beside it.
	rt.leftPending[name] = slices.DeleteFunc(rt.leftPending[name], func(id string) bool { return id == w.ID })
	switch w.Status {
	case dbos.WorkflowStatusPending, dbos.WorkflowStatusEnqueued:
		fmt.Fprintf(rt.notices, "durlab: resuming workflow %s\n", w.ID)
	default:
		fmt.Fprintf(rt.notices, "durlab: workflow %s has already ended %s; reporting it\n", w.ID, w.Status)
	}
	h, err := dbos.RetrieveWorkflow[R](rt.dbos, w.ID)
	return h, true, err
}

// ErrWrongWorkflow: --workflow-id names a workflow of another experiment.
var ErrWrongWorkflow = errors.New("wrong workflow")

// startNew starts a new workflow named name; with Config.New it first says
// which of this executor's leftovers stay pending.
func startNew[R any](rt *Runtime, name string, wf *Workflow[Input, R], p Params, beforeStart func() error) (dbos.WorkflowHandle[R], bool, error) {
	if ids := rt.leftPending[name]; rt.newRun && len(ids) > 0 {
		fmt.Fprintf(rt.notices, "durlab: --new: starting a new workflow; %s left pending by an earlier process (%s) %s PENDING, untouched, for a run without --new\n",
			Count(len(ids), "workflow", "workflows"), strings.Join(ids, ", "), plural(len(ids), "stays", "stay"))
	}
	if beforeStart != nil {
		if err := beforeStart(); err != nil {
			return nil, false, err
		}
	}
	id := p.WorkflowID
	if id == "" {
		id = uuid.NewString() // as DBOS would, but known before it starts
	}
	if p.OnNewID != nil {
		p.OnNewID(id)
	}
	h, err := dbos.RunWorkflow(started(rt.dbos, name, ""), wf.fn, p.Input, dbos.WithWorkflowID(id))
	return h, false, err
}

// started tells p.OnStart how the run began, with the attached workflow's
// own input, and says what the other leftovers do.
func (rt *Runtime) started(name, id string, attached bool, p Params) error {
	s := Start{WorkflowID: id, Attached: attached, Input: p.Input}
	if attached {
		rt.sayLeftovers(name)
		st, err := rt.status(id, dbos.WithFilterLoadInput(true), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return err
		}
		if in, ok := inputOf(st); ok {
			s.Input = in
		}
	}
	if p.OnStart != nil {
		p.OnStart(s)
	}
	return nil
}

var errWaitTimeout = errors.New("timed out waiting for workflow")

// awaitResult waits for a workflow's result, for at most timeout (0: no
// limit), and returns early with ErrInterrupted when ctx is cancelled.
func awaitResult[R any](ctx context.Context, h dbos.WorkflowHandle[R], timeout time.Duration) (R, error) {
	type outcome struct {
		r   R
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		opts := []dbos.GetResultOption{dbos.WithHandlePollingInterval(pollInterval)}
		if timeout > 0 {
			opts = append(opts, dbos.WithHandleTimeout(timeout))
		}
		r, err := h.GetResult(opts...)
		done <- outcome{r, err}
	}()
	var timer <-chan time.Time
	if timeout > 0 {
		timer = time.After(timeout + time.Second)
	}
	select {
	case o := <-done:
		if timeout > 0 && o.err != nil && errors.Is(o.err, context.DeadlineExceeded) {
			return o.r, errWaitTimeout
		}
		return o.r, o.err
	case <-timer:
		var zero R
		return zero, errWaitTimeout
	case <-ctx.Done():
		var zero R
		return zero, ErrInterrupted
	}
}

// finish waits for h and builds the report's common part: status, counts,
// stats and recoveries. The counts come from the workflow's output; a
// workflow that failed has none, and its rows in t are counted instead.
func (rt *Runtime) finish(ctx context.Context, e *Experiment, h dbos.WorkflowHandle[store.Counts], attached bool, p Params, t store.Table) (Report, error) {
	out, runErr := awaitResult(ctx, h, 0)
	if errors.Is(runErr, ErrInterrupted) {
		return Report{}, runErr
	}
	if store.Classify(runErr) != store.FaultNone {
		// DBOS could not record the outcome (a full or broken system
		// database): the workflow is still PENDING, for the run after
		// the repair, and there is nothing to report yet.
		return Report{}, store.Environment("system database", rt.systemDB, runErr)
	}
	rep := Report{Experiment: e.Name, WorkflowID: h.GetWorkflowID(), Attached: attached,
		Status: string(dbos.WorkflowStatusSuccess), Seed: p.Seed, input: p.Input}
	// A workflow this process started and saw succeed is told by its
	// result; any other may have been dead-lettered, and a resumed one runs
	// with the input it was started with, which may differ from this
	// command's flags.
	if attached || runErr != nil {
		st, err := rt.status(rep.WorkflowID, dbos.WithFilterLoadInput(true), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return rep, err
		}
		rep.Status = string(st.Status)
		rep.Recoveries = max(st.Attempts-1, 0)
		if st.Status == dbos.WorkflowStatusMaxRecoveryAttemptsExceeded {
			rep.Recoveries-- // the last dispatch was refused, not run
		}
		if in, ok := inputOf(st); ok {
			rep.Seed, rep.input = in.Seed, in
		}
		if err := rt.forkReport(ctx, &rep, st, len(e.Children) > 0); err != nil {
			return rep, err
		}
	}
	c := out
	if runErr != nil {
		rep.Error = runErr.Error()
		// A stopped main workflow may leave batches mid-attempt: the
		// report counts what they wrote once they stopped (tree.go).
		if err := rt.awaitTreeStopped(ctx, rep.WorkflowID, rep.Status); err != nil {
			return rep, err
		}
		var err error
		if c, err = t.Counts(ctx, rep.WorkflowID); err != nil {
			return rep, err
		}
	} else if t.Variant() == store.Ledger {
		rep.Result = c.Latest
	} else {
		rep.Result = c.Rows
	}
	rep.Rows, rep.UniqueUsers, rep.Duplicates = c.Rows, c.UniqueUsers, c.Rows-c.UniqueUsers
	if len(e.Children) > 0 {
		var err error
		if rep.TableRows, err = t.TotalRows(ctx); err != nil {
			return rep, err
		}
	}
	sum, faults, err := rt.Summarize(ctx, rep.WorkflowID, rep.Status != string(dbos.WorkflowStatusSuccess))
	if err != nil {
		return rep, err
	}
	rep.setSummary(sum)
	rep.Faults = faults
	return rep, nil
}

// setSummary takes the report's counts from the ledger's summary.
func (r *Report) setSummary(s ledger.Summary) {
	r.StepAttempts, r.InjectedFailures, r.InjectedCrashes = s.StepAttempts, s.InjectedFailures, s.InjectedCrashes
	r.UniqueViolations, r.RetriedWriteAttempts = s.UniqueViolations, s.RetriedWrites
	r.Crashes, r.KilledFromOutside, r.CommitCrashes = s.Crashes, s.Killed, s.CommitCrashes
	r.DuplicatesFromRetries = s.DuplicatesFromRetries
	r.DuplicatesFromRecoveries = s.DuplicatesFromRecoveries
	r.DuplicatesFromCommitCrashes = s.DuplicatesFromCommitCrashes
	if s.Executions > 0 {
		r.Recoveries = s.Recoveries
	}
}

// ReadRun reads what happened to the run whose main workflow is root, from
// the ledger and the system database, once this process's waiting events
// are written.
func (rt *Runtime) ReadRun(ctx context.Context, root string) (*ledger.Run, error) {
	if err := rt.rec.now(ctx); err != nil {
		return nil, err
	}
	// A worker's end of an execution waits for its next write: only a
	// live process's can be told from a killed one's.
	l := NewLiveness(ctx, rt.systemDB)
	defer l.Close()
	return ReadRun(ctx, rt.dbos, rt.store, root, false, l.Alive)
}

// Summarize counts what happened to the run whose main workflow is root,
// as ReadRun's Summary and Schedule would, once this process's waiting
// events are written, one workflow at a time (ledger.Summarize): a
// report's memory does not grow with the run.
//
// With unfinished, DBOS's list of the child workflows is read too, for a
// child the ledger has no record of: one killed before its first write
// and never run again. A run that succeeded has none: each of its
// children finished, and wrote.
func (rt *Runtime) Summarize(ctx context.Context, root string, unfinished bool) (ledger.Summary, string, error) {
	if err := rt.rec.now(ctx); err != nil {
		return ledger.Summary{}, "", err
	}
	l := NewLiveness(ctx, rt.systemDB)
	defer l.Close()
	return Summarize(ctx, rt.dbos, rt.store, root, l.Alive, unfinished)
}

// summaryPage is how many child workflows' records Summarize reads at once.
const summaryPage = 500

// Summarize is Runtime.Summarize for any reader of the databases: the
// store st and the system database c.
func Summarize(ctx context.Context, c dbos.Client, st store.Store, root string, alive func(executorID string, pid int, host string) bool, unfinished bool) (ledger.Summary, string, error) {
	crashes, err := st.Crashes(ctx, root)
	if err != nil {
		return ledger.Summary{}, "", err
	}
	src := ledger.StreamSource{
		Root: root,
		RootEvents: func(lean bool) ([]store.Event, int, error) {
			return st.WorkflowEvents(ctx, root, root, lean)
		},
		EachWorkflow: func(fn func([]store.Event) error) error { return st.EachWorkflow(ctx, root, root, fn) },
		Crashes:      crashes,
		Statuses: func(ids ...string) ([]dbos.WorkflowStatus, error) {
			return dbos.ListWorkflows(c, dbos.WithFilterWorkflowIDs(ids...),
				dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		},
		Children: func(fn func([]dbos.WorkflowStatus) error) error {
			for offset := 0; ; offset += summaryPage {
				page, err := dbos.ListWorkflows(c, dbos.WithFilterParentWorkflowID(root), dbos.WithFilterLimit(summaryPage),
					dbos.WithFilterOffset(offset), dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
				if err != nil {
					return err
				}
				if err := fn(page); err != nil || len(page) < summaryPage {
					return err
				}
			}
		},
		Steps: func(id string) ([]dbos.StepInfo, error) {
			return dbos.GetWorkflowSteps(c, id, dbos.WithStepsLoadOutput(false))
		},
		Alive: alive,
	}
	if !unfinished {
		src.Children = nil
	}
	return ledger.Summarize(src)
}

// ReadRun reads what happened to the run whose main workflow is root, from
// the store's ledger (none with st nil) and the system database c; with
// full, DBOS's records
// of every workflow of the run, not only those the ledger needs. alive tells
// whether the process of an execution with no end still runs (nil: none
// does).
func ReadRun(ctx context.Context, c dbos.Client, st store.Store, root string, full bool, alive func(executorID string, pid int, host string) bool) (*ledger.Run, error) {
	var events []store.Event
	if st != nil {
		var err error
		if events, err = st.Events(ctx, root); err != nil {
			return nil, err
		}
	}
	statuses := func() ([]dbos.WorkflowStatus, error) {
		wfs, err := dbos.ListWorkflows(c, dbos.WithFilterWorkflowIDs(root),
			dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return nil, err
		}
		children, err := dbos.ListWorkflows(c, dbos.WithFilterParentWorkflowID(root),
			dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		return append(wfs, children...), err
	}
	return ledger.Assemble(ledger.Source{
		Root: root, Events: events, Statuses: statuses, Full: full, Alive: alive,
		Steps: func(id string) ([]dbos.StepInfo, error) {
			return dbos.GetWorkflowSteps(c, id, dbos.WithStepsLoadOutput(false))
		},
	})
}

// Failures are the injected failures that were not crashes.
func (r *Report) Failures() int64 { return r.InjectedFailures - r.InjectedCrashes }

// DuplicateCauses says, from the ledger, why the run's duplicate rows were
// written: "all from ..." when one cause wrote them all.
func (r *Report) DuplicateCauses() string {
	type part struct {
		n    int64
		what string
	}
	var parts []part
	if n := r.DuplicatesFromRetries; n > 0 {
		k := r.RetriedWriteAttempts
		parts = append(parts, part{n, fmt.Sprintf("from %d retried %s that had written before failing", k, plural(k, "attempt", "attempts"))})
	}
	if n := r.DuplicatesFromCommitCrashes; n > 0 {
		parts = append(parts, part{n, "from crashes right after a write committed, before its checkpoint (the recovery ran the write again)"})
	}
	if n := r.DuplicatesFromRecoveries; n > 0 {
		parts = append(parts, part{n, "from recovered executions that ran the workflow body's writes again"})
	}
	switch len(parts) {
	case 0:
		return "none"
	case 1:
		return "all " + parts[0].what
	}
	var texts []string
	for _, p := range parts {
		texts = append(texts, fmt.Sprintf("%d %s", p.n, p.what))
	}
	return strings.Join(texts, ", ")
}

func plural[N int | int64](n N, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Count is n with its noun, singular or plural: "1 crash", "2 crashes".
func Count[N int | int64](n N, one, many string) string {
	return fmt.Sprintf("%d %s", n, plural(n, one, many))
}

// inputOf decodes the workflow's recorded input, so that a resumed run
// reports the seed it really runs with.
func inputOf(st dbos.WorkflowStatus) (Input, bool) {
	// DBOS's default serializer hands the recorded input back as JSON text.
	text, ok := st.Input.(string)
	var in Input
	return in, ok && json.Unmarshal([]byte(text), &in) == nil && in.Pages > 0
}

// PrepareStore empties table t for a new run, as the Python originals do,
// workflow by workflow: it deletes the rows of the workflows the system
// database c knows as finished (SUCCESS or ERROR). A pending, cancelled or
// dead-lettered workflow may still run, and its rows are its progress; rows
// of workflows c does not know (another system database, a plain run) are
// not durlab's to judge. Nothing is dropped, so a run that starts beside
// another cannot destroy the other's rows.
//
// It returns those unknown workflows, but for plain runs' (PlainRunPrefix).
func PrepareStore(ctx context.Context, c dbos.Client, t store.Table) (unknown []string, err error) {
	ids, err := t.WorkflowIDs(ctx)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	wfs, err := dbos.ListWorkflows(c, dbos.WithFilterWorkflowIDs(ids...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	var done []string
	for _, w := range wfs {
		known[w.ID] = true
		if w.Status == dbos.WorkflowStatusSuccess || w.Status == dbos.WorkflowStatusError {
			done = append(done, w.ID)
		}
	}
	for _, id := range ids {
		if !known[id] && !strings.HasPrefix(id, PlainRunPrefix) {
			unknown = append(unknown, id)
		}
	}
	_, err = t.Delete(ctx, done)
	return unknown, err
}

// noticeUnknown says, once per workflow, that table t holds rows of
// workflows the system database does not know: it was replaced or lost
// (an empty file, a WAL lost in a crash), and a run started from scratch.
// Those rows are counted in no run and nothing deletes them but
// `durlab clean --unknown`. The ledger keeps a notice event for each, so
// that the next runs do not say it again.
func (rt *Runtime) noticeUnknown(ctx context.Context, t store.Table, unknown []string) {
	if len(unknown) == 0 {
		return
	}
	noticed, err := rt.store.Noticed(ctx, unknown)
	if err != nil {
		return // the notice is a courtesy: never a reason to stop a run
	}
	fresh := slices.DeleteFunc(slices.Clone(unknown), func(id string) bool { return noticed[id] })
	if len(fresh) == 0 {
		return
	}
	shown := fresh[:min(len(fresh), 3)]
	more := ""
	if len(fresh) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(fresh)-len(shown))
	}
	fmt.Fprintf(rt.notices, "durlab: the store's %s table holds rows of %s the system database does not know (%s%s): it was replaced or lost since they ran, so no run counts them; `durlab clean --unknown` removes them\n",
		t.Variant().Table(), Count(len(fresh), "workflow", "workflows"), strings.Join(shown, ", "), more)
	rt.store.MarkNoticed(ctx, fresh)
}

// Checkpoints are what DBOS recorded to make one run durable, read back
// from the system database.
type Checkpoints struct {
	Workflows int // the main workflow and its batch children
	Steps     int // step outputs: generate_page_N and count_users
	// ChildRecords are the parent's records of the child workflows it
	// started and awaited (DBOS.getResult).
	ChildRecords int
	// Total is every checkpoint: Steps + ChildRecords + one status record
	// per workflow (its input, then its final status and result).
	Total int
}

// Checkpoints counts what DBOS recorded for workflow id and its children:
// every step record of each (dbos.GetWorkflowSteps), plus one status record
// per workflow. It reads with the Runtime's own context, outside any
// workflow.
func (rt *Runtime) Checkpoints(id string) (Checkpoints, error) {
	children, err := dbos.ListWorkflows(rt.dbos, dbos.WithFilterParentWorkflowID(id),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return Checkpoints{}, err
	}
	var c Checkpoints
	for _, wf := range append([]string{id}, idsOf(children)...) {
		steps, err := dbos.GetWorkflowSteps(rt.dbos, wf, dbos.WithStepsLoadOutput(false))
		if err != nil {
			return Checkpoints{}, err
		}
		c.Workflows++
		for _, s := range steps {
			if s.ChildWorkflowID != "" {
				c.ChildRecords++
			} else {
				c.Steps++
			}
		}
	}
	c.Total = c.Steps + c.ChildRecords + c.Workflows
	return c, nil
}

func idsOf(wfs []dbos.WorkflowStatus) []string {
	ids := make([]string, len(wfs))
	for i, w := range wfs {
		ids[i] = w.ID
	}
	return ids
}

// PlainRunPrefix starts the run ID of work done with no durability: no
// workflow, nothing to trace.
const PlainRunPrefix = "plain-"

// PlainReport is the report of e's work done with no durability, under run
// ID id, which wrote c: its verdict and lesson are the caller's.
func PlainReport(e *Experiment, in Input, id string, c store.Counts) Report {
	return Report{Experiment: e.Name, WorkflowID: id, Status: string(dbos.WorkflowStatusSuccess), Result: c.Latest,
		Expected: e.Expected(in), Rows: c.Rows, UniqueUsers: c.UniqueUsers, Duplicates: c.Rows - c.UniqueUsers,
		Seed: in.Seed, input: in}
}
