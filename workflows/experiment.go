package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
	KnobMaxRecoveryAttempts Knob = "max-recovery-attempts"
	KnobWait                Knob = "wait"
	KnobQueue               Knob = "queue"
)

// Params are everything one run of an experiment is given.
type Params struct {
	Input
	Faults
	Wait time.Duration // how long to give a pending workflow of another executor
}

// Experiment describes one experiment for the command line.
type Experiment struct {
	Name     string
	Seed     string // the Python original it comes from
	Short    string
	Long     string
	Knobs    []Knob
	Defaults Params
	// Expected says in words what a correct run produces.
	Expected func(p Params) string
	run      func(ctx context.Context, l *Lab, p Params) (Report, error)
}

// Has tells whether the experiment takes knob k.
func (e Experiment) Has(k Knob) bool { return slices.Contains(e.Knobs, k) }

// HasFaults tells whether the experiment injects faults, so that its seed
// decides anything.
func (e Experiment) HasFaults() bool {
	return e.Has(KnobFailProb) || e.Has(KnobCrashProb) || e.Has(KnobGenFailProb) || e.Has(KnobCommitCrashProb)
}

// Run runs the experiment on l.
func (e Experiment) Run(ctx context.Context, l *Lab, p Params) (Report, error) {
	return e.run(ctx, l, p)
}

// Experiments lists the experiments in the order of the seed.
func Experiments() []Experiment {
	return []Experiment{basicExperiment, retryBadExperiment, recoverExperiment, splitStepsExperiment,
		profileExperiment, dedupExperiment, exactlyOnceExperiment}
}

// Lookup finds an experiment by name.
func Lookup(name string) (Experiment, bool) {
	for _, e := range Experiments() {
		if e.Name == name {
			return e, true
		}
	}
	return Experiment{}, false
}

// Report is what an experiment tells the user. The JSON field names are an
// interface: scripts depend on them.
type Report struct {
	Experiment       string `json:"experiment"`
	WorkflowID       string `json:"workflow_id"`
	Status           string `json:"status"`
	Result           int64  `json:"result"`
	Expected         string `json:"expected"`
	AsExpected       bool   `json:"as_expected"`
	Rows             int64  `json:"rows"`
	UniqueUsers      int64  `json:"unique_users"`
	Duplicates       int64  `json:"duplicates"`
	StepAttempts     int64  `json:"step_attempts"`
	InjectedFailures int64  `json:"injected_failures"`
	Crashes          int64  `json:"crashes"`
	CommitCrashes    int64  `json:"commit_crashes"`
	Recoveries       int    `json:"recoveries"`
	UniqueViolations int64  `json:"unique_violations"`
	Seed             int64  `json:"seed"`
	Attached         bool   `json:"attached"`
	Error            string `json:"error"`
	// Lesson is one sentence on what this run shows.
	Lesson string `json:"lesson"`

	input Input // the workflow's own input
}

// RunInput is the input the reported workflow ran with: a resumed workflow
// keeps the one it was started with.
func (r Report) RunInput() Input { return r.input }

// startOrAttach implements the seed's start-up for a named workflow: a
// PENDING or ENQUEUED workflow of that name is attached to instead of
// starting another. Launch has already recovered the ones of this executor;
// one owned by another executor gets p.Wait to finish, then a new workflow
// starts beside it. A workflow this process's Launch dead-lettered is
// returned as it is, so the report says so.
func startOrAttach[R any](ctx context.Context, l *Lab, name string, wf dbos.Workflow[Input, R], p Params, beforeStart func() error) (dbos.WorkflowHandle[R], bool, error) {
	if ids := l.leftPending[name]; len(ids) > 0 {
		// What this executor left behind is what the user restarted for,
		// whether Launch recovered it or dead-lettered it.
		id := ids[0]
		l.leftPending[name] = ids[1:]
		fmt.Fprintf(l.notices, "durlab: resuming workflow %s, left pending by an earlier process\n", id)
		h, err := dbos.RetrieveWorkflow[R](l.dbos, id)
		return h, true, err
	}
	pending, err := dbos.ListWorkflows(l.dbos, dbos.WithFilterName(name),
		dbos.WithFilterStatus(dbos.WorkflowStatusPending, dbos.WorkflowStatusEnqueued),
		dbos.WithFilterSortDesc(), dbos.WithFilterLimit(1),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, false, err
	}
	if len(pending) > 0 {
		w := pending[0]
		h, err := dbos.RetrieveWorkflow[R](l.dbos, w.ID)
		if err != nil {
			return nil, false, err
		}
		if w.ExecutorID == dbos.GetExecutorID(l.dbos) && w.ApplicationVersion == AppVersion {
			fmt.Fprintf(l.notices, "durlab: resuming pending workflow %s\n", w.ID)
			return h, true, nil
		}
		fmt.Fprintf(l.notices, "durlab: workflow %s is %s on executor %s; waiting %s for it\n", w.ID, w.Status, w.ExecutorID, p.Wait)
		if _, err := awaitResult(ctx, h, p.Wait); err == nil || !errors.Is(err, errWaitTimeout) {
			return h, true, nil
		}
		fmt.Fprintf(l.notices, "durlab: workflow %s is still %s; starting a new one\n", w.ID, w.Status)
	}
	if beforeStart != nil {
		if err := beforeStart(); err != nil {
			return nil, false, err
		}
	}
	h, err := dbos.RunWorkflow(l.dbos, wf, p.Input)
	return h, false, err
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

// startAndReport starts (or attaches to) an experiment's main workflow,
// which writes to the users table of variant v, waits for it, and returns
// the common part of its report.
func startAndReport(ctx context.Context, l *Lab, p Params, exp, name string, wf dbos.Workflow[Input, store.Counts], v store.Variant) (Report, error) {
	t := l.table(v)
	h, attached, err := startOrAttach(ctx, l, name, wf, p, func() error { return PrepareStore(ctx, l.dbos, t) })
	if err != nil {
		return Report{}, err
	}
	return finish(ctx, l, exp, h, attached, p, t)
}

// finish waits for h and builds the report's common part: status, counts,
// stats and recoveries. The counts come from the workflow's output; a
// workflow that failed has none, and its rows in t are counted instead.
func finish(ctx context.Context, l *Lab, exp string, h dbos.WorkflowHandle[store.Counts], attached bool, p Params, t store.Table) (Report, error) {
	out, runErr := awaitResult(ctx, h, 0)
	if errors.Is(runErr, ErrInterrupted) {
		return Report{}, runErr
	}
	rep := Report{Experiment: exp, WorkflowID: h.GetWorkflowID(), Attached: attached}
	st, err := l.status(rep.WorkflowID, dbos.WithFilterLoadInput(true), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return rep, err
	}
	rep.Status = string(st.Status)
	rep.Recoveries = max(st.Attempts-1, 0)
	if st.Status == dbos.WorkflowStatusMaxRecoveryAttemptsExceeded {
		rep.Recoveries-- // the last dispatch was refused, not run
	}
	// A resumed workflow runs with the input it was started with, which
	// may differ from this command's flags.
	in, ok := inputOf(st)
	if !ok {
		in = p.Input
	}
	rep.Seed, rep.input = in.Seed, in
	if err := l.flush(ctx, rep.WorkflowID); err != nil {
		return rep, err
	}
	c := out
	if runErr != nil {
		rep.Error = runErr.Error()
		if c, err = t.Counts(ctx, rep.WorkflowID); err != nil {
			return rep, err
		}
	} else if t.Variant() == store.Ledger {
		rep.Result = c.Latest
	} else {
		rep.Result = c.Rows
	}
	rep.Rows, rep.UniqueUsers, rep.Duplicates = c.Rows, c.UniqueUsers, c.Rows-c.UniqueUsers
	s, err := l.store.Stats(ctx, rep.WorkflowID)
	if err != nil {
		return rep, err
	}
	rep.StepAttempts, rep.InjectedFailures = s.StepAttempts, s.InjectedFailures
	rep.Crashes, rep.CommitCrashes, rep.UniqueViolations = s.Crashes, s.CommitCrashes, s.UniqueViolations
	return rep, nil
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
func PrepareStore(ctx context.Context, c dbos.Client, t store.Table) error {
	ids, err := t.WorkflowIDs(ctx)
	if err != nil || len(ids) == 0 {
		return err
	}
	wfs, err := dbos.ListWorkflows(c, dbos.WithFilterWorkflowIDs(ids...),
		dbos.WithFilterStatus(dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return err
	}
	_, err = t.Delete(ctx, idsOf(wfs))
	return err
}
