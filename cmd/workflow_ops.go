package cmd

// cancel, resume and fork write to the system database, and only there:
// resume and fork enqueue a workflow on DBOS's internal queue, and the next
// durlab process that serves the queues runs it.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/internal/shell"
	"github.com/durlab/durlab/lab"
)

// workflowOpOptions are the arguments of cancel, resume and fork.
type workflowOpOptions struct {
	global     *globalOptions
	id         string
	noChildren bool // cancel and resume
	// fork only
	step       int
	appVersion string
}

// opResult is the JSON of cancel, resume and fork. The names are an interface.
type opResult struct {
	Action       string `json:"action"`
	WorkflowID   string `json:"workflow_id"`
	ForkedFrom   string `json:"forked_from,omitempty"`
	StartStep    *int   `json:"start_step,omitempty"`
	StatusBefore string `json:"status_before,omitempty"`
	Status       string `json:"status"`
	Changed      bool   `json:"changed"`
	QueueName    string `json:"queue_name,omitempty"`
	AppVersion   string `json:"app_version,omitempty"`
	Note         string `json:"note,omitempty"`
	// Children counts the workflow's descendants, for cancel and resume
	// without --no-children.
	Children *childCounts `json:"children,omitempty"`
}

func newOpCmd(use, short, long string, opts *workflowOpOptions, run func(context.Context, *workflowOpOptions) error, runF func(*workflowOpOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long + "\n\nID may be a unique prefix of a workflow ID, as in git.",
		Args:  oneWorkflowID,
		RunE: func(c *cobra.Command, args []string) error {
			opts.id = args[0]
			if opts.step < 0 {
				return usagef("--step must be 0 or more, got %d", opts.step)
			}
			if runF != nil {
				return runF(opts)
			}
			return run(c.Context(), opts)
		},
	}
}

func newWorkflowCancelCmd(g *globalOptions, runF func(*workflowOpOptions) error) *cobra.Command {
	opts := &workflowOpOptions{global: g}
	c := newOpCmd("cancel ID", "Cancel a workflow and its child workflows",
		`Set a workflow that has not finished, and every workflow it started that has
not finished (its batches, queued or running), to CANCELLED, and take them off
their queues. A step in progress is not interrupted, but no attempt writes
after it: each checks its workflow and its run's main workflow before its
first write. A finished workflow (SUCCESS, ERROR, CANCELLED) is left as it is.
Cancelling a batch alone fails its parent when the parent awaits it.
durlab workflow resume restarts a cancelled workflow with its descendants.`,
		opts, runWorkflowCancel, runF)
	c.Flags().BoolVar(&opts.noChildren, "no-children", false, "cancel this workflow only; its children stop before their next write all the same")
	return c
}

func newWorkflowResumeCmd(g *globalOptions, runF func(*workflowOpOptions) error) *cobra.Command {
	opts := &workflowOpOptions{global: g}
	c := newOpCmd("resume ID", "Enqueue a cancelled, dead-lettered or pending workflow to run again",
		`Enqueue a workflow that has not finished (CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED,
PENDING, ENQUEUED) on DBOS's internal queue, with its recovery attempts reset.
It continues from its last recorded step; its cancelled descendants are resumed
with it. Nothing runs it here: the next durlab process of the same application
version that serves the queues runs it, whatever its executor ID: the
experiment's command while it runs, or durlab worker.
A workflow that ended in SUCCESS or ERROR cannot be resumed: fork it.`,
		opts, runWorkflowResume, runF)
	c.Flags().BoolVar(&opts.noChildren, "no-children", false, "resume this workflow only, not its cancelled descendants")
	return c
}

func newWorkflowForkCmd(g *globalOptions, runF func(*workflowOpOptions) error) *cobra.Command {
	opts := &workflowOpOptions{global: g}
	c := newOpCmd("fork ID --step N", "Start a copy of a workflow from one of its steps",
		`Create a new workflow with the same input as ID, that reuses the recorded
outputs of ID's steps before --step N and runs step N onwards again (step
numbers as in durlab workflow steps; 0 runs everything again). The new workflow
is enqueued on DBOS's internal queue: the next durlab process of its application
version that serves the queues runs it (the experiment's command, or durlab worker).`,
		opts, runWorkflowFork, runF)
	c.Flags().IntVar(&opts.step, "step", 0, "first step to run again; the steps before it reuse the original's outputs")
	c.Flags().StringVar(&opts.appVersion, "app-version", "", "application version of the new workflow (default: the original's)")
	return c
}

// onWorkflow opens the system database, finds the workflow o.id names (an
// ID or a unique prefix; o.id becomes the full ID), runs op on it and
// prints the result.
func onWorkflow(ctx context.Context, o *workflowOpOptions, op func(in *inspector, before dbos.WorkflowStatus) (opResult, error)) error {
	in, err := openInspector(ctx, o.global)
	if err != nil {
		return err
	}
	defer in.Close()
	before, err := in.resolve(o.id)
	if err != nil {
		return err
	}
	o.id = before.ID
	res, err := op(in, before)
	if err != nil {
		return err
	}
	return printOp(in, res)
}

func runWorkflowCancel(ctx context.Context, o *workflowOpOptions) error {
	return onWorkflow(ctx, o, func(in *inspector, before dbos.WorkflowStatus) (opResult, error) {
		res := opResult{Action: "cancel", WorkflowID: o.id, StatusBefore: string(before.Status), Status: string(before.Status)}
		var live []dbos.WorkflowStatus // the descendants cancel takes with it
		if !o.noChildren {
			all, err := descendants(in.client, o.id)
			if err != nil {
				return res, err
			}
			for _, d := range all {
				if !finished(d.Status) {
					live = append(live, d)
				}
			}
			res.Children = &childCounts{All: len(all)}
		}
		if finished(before.Status) && len(live) == 0 {
			res.Note = fmt.Sprintf("workflow %s is already %s: nothing to cancel", o.id, before.Status)
			return res, nil
		}
		ids := []string{o.id}
		for _, d := range live {
			ids = append(ids, d.ID)
		}
		// One statement for all: a worker sees the whole tree cancelled
		// at once, never a parent cancelled beside children still queued.
		if err := dbos.CancelWorkflows(in.client, ids); err != nil {
			return res, fmt.Errorf("cancelling workflow %s: %w", o.id, notFound(o.id, err))
		}
		// Read again, in one query: a descendant that ended between the
		// listing and the cancel was left as it ended.
		now, err := dbos.ListWorkflows(in.client, dbos.WithFilterWorkflowIDs(ids...),
			dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return res, fmt.Errorf("reading workflow %s and its descendants: %w", o.id, err)
		}
		after, cancelled := before, 0
		for _, w := range now {
			switch {
			case w.ID == o.id:
				after = w
			case w.Status == dbos.WorkflowStatusCancelled:
				cancelled++
			}
		}
		res.Status, res.Changed = string(after.Status), after.Status != before.Status || cancelled > 0
		if res.Children != nil {
			res.Children.Cancelled = cancelled
		}
		what := fmt.Sprintf("workflow %s cancelled (was %s)", o.id, before.Status)
		if finished(before.Status) {
			what = fmt.Sprintf("workflow %s is already %s", o.id, before.Status)
		}
		switch {
		case o.noChildren:
		case res.Children.All == 0:
		default:
			what += fmt.Sprintf(", with %s of its %s", lab.Count(cancelled, "descendant", "descendants"), lab.Count(res.Children.All, "child workflow", "child workflows and their children"))
			if done := res.Children.All - cancelled; done > 0 {
				what += fmt.Sprintf(" (%d had ended)", done)
			}
		}
		res.Note = what + ": a step in progress finishes, and every attempt about to write stops first; "
		switch before.Status {
		case dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError:
			res.Note += fmt.Sprintf("a workflow that ended %s cannot be resumed, nor can its descendants run on: `%s --step N` runs it again from a step",
				before.Status, shell.Join("durlab", "workflow", "fork", o.id))
		default:
			res.Note += "`" + shell.Join("durlab", "workflow", "resume", o.id) + "` restarts " + plural(cancelled+1, "it", "them all")
		}
		if o.noChildren && before.ParentWorkflowID == "" {
			res.Note += "; its child workflows were not cancelled, but each cancels itself before its next write"
		}
		if before.ParentWorkflowID != "" {
			note, err := parentNote(in, before)
			if err != nil {
				return res, err
			}
			res.Note += "; " + note
		}
		return res, nil
	})
}

// parentNote says what cancelling child does to its parent, and what to do
// about it: DBOS fails a parent that awaits a cancelled child.
func parentNote(in *inspector, child dbos.WorkflowStatus) (string, error) {
	parent, err := in.lookup(child.ParentWorkflowID, false)
	if err != nil {
		return "", err
	}
	if finished(parent.Status) {
		return fmt.Sprintf("its parent %s is already %s", parent.ID, parent.Status), nil
	}
	return fmt.Sprintf("its parent %s is %s and fails when it awaits this cancelled workflow: `%s` before then lets it go on, `%s` stops the whole run instead",
		parent.ID, parent.Status, shell.Join("durlab", "workflow", "resume", child.ID), shell.Join("durlab", "workflow", "cancel", parent.ID)), nil
}

// rootOf is the main workflow of w's run: its farthest parent, or the
// farthest found when a parent cannot be read.
func rootOf(in *inspector, w dbos.WorkflowStatus) (dbos.WorkflowStatus, error) {
	for w.ParentWorkflowID != "" {
		parent, err := in.lookup(w.ParentWorkflowID, false)
		if err != nil {
			return w, err
		}
		w = parent
	}
	return w, nil
}

// childCounts is cancel's and resume's count of a workflow's descendants.
type childCounts struct {
	All       int `json:"all"`
	Cancelled int `json:"cancelled,omitempty"`
	Resumed   int `json:"resumed,omitempty"`
}

// finished: DBOS will not run the workflow again by itself.
func finished(s dbos.WorkflowStatusType) bool {
	return s == dbos.WorkflowStatusSuccess || s == dbos.WorkflowStatusError || s == dbos.WorkflowStatusCancelled
}

// descendants lists the workflows started by id, by its children, and so
// on, a generation at a time.
func descendants(c dbos.Client, id string) ([]dbos.WorkflowStatus, error) {
	var all []dbos.WorkflowStatus
	for gen := []string{id}; len(gen) > 0; {
		kids, err := dbos.ListWorkflows(c, dbos.WithFilterParentWorkflowID(gen...),
			dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return nil, fmt.Errorf("listing the child workflows of %s: %w", id, err)
		}
		gen = gen[:0]
		for _, k := range kids {
			all = append(all, k)
			gen = append(gen, k.ID)
		}
	}
	return all, nil
}

func runWorkflowResume(ctx context.Context, o *workflowOpOptions) error {
	return onWorkflow(ctx, o, func(in *inspector, before dbos.WorkflowStatus) (opResult, error) {
		switch before.Status {
		case dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError:
			// DBOS would leave it as it is and report success.
			return opResult{}, usagef("workflow %s ended in %s and cannot be resumed: run it again from a step with `%s --step N`",
				o.id, before.Status, shell.Join("durlab", "workflow", "fork", o.id))
		case dbos.WorkflowStatusPending:
			fmt.Fprintf(in.io.Err, "durlab: workflow %s was PENDING on executor %s; if that process is alive and still running it, it may now run twice\n",
				o.id, dash(before.ExecutorID))
		}
		// A cancelled tree resumes whole: a parent resumed alone would fail
		// at its first cancelled child.
		var cancelled []string
		var children *childCounts
		if !o.noChildren {
			all, err := descendants(in.client, o.id)
			if err != nil {
				return opResult{}, err
			}
			for _, d := range all {
				if d.Status == dbos.WorkflowStatusCancelled {
					cancelled = append(cancelled, d.ID)
				}
			}
			children = &childCounts{All: len(all), Resumed: len(cancelled)}
		}
		// One statement for all: a batch resumed before its main workflow
		// would find the main still CANCELLED at its first write, and
		// cancel itself again (lab/tree.go).
		if len(cancelled) == 0 {
			if _, err := dbos.ResumeWorkflow[any](in.client, o.id); err != nil {
				return opResult{}, fmt.Errorf("resuming workflow %s: %w", o.id, notFound(o.id, err))
			}
		} else if _, err := dbos.ResumeWorkflows[any](in.client, append([]string{o.id}, cancelled...)); err != nil {
			return opResult{}, fmt.Errorf("resuming workflow %s and its cancelled descendants: %w", o.id, notFound(o.id, err))
		}
		after, err := in.lookup(o.id, false)
		if err != nil {
			return opResult{}, err
		}
		res := opResult{Action: "resume", WorkflowID: o.id, StatusBefore: string(before.Status), Status: string(after.Status),
			Changed: true, QueueName: after.QueueName, AppVersion: after.ApplicationVersion, Children: children}
		with := ""
		if len(cancelled) > 0 {
			with = ", with " + lab.Count(len(cancelled), "cancelled descendant", "cancelled descendants")
		}
		res.Note = fmt.Sprintf("workflow %s resumed (was %s)%s: %s on queue %s; %s",
			o.id, before.Status, with, after.Status, dash(after.QueueName), whereItRuns(after))
		if before.ParentWorkflowID != "" {
			root, err := rootOf(in, before)
			if err != nil {
				return opResult{}, err
			}
			if lab.StoppedRoot(root.Status) {
				res.Note += fmt.Sprintf("; but its run's main workflow %s is %s, so it cancels itself again before its first write: resume %s instead",
					root.ID, root.Status, root.ID)
			}
		}
		return res, nil
	})
}

func runWorkflowFork(ctx context.Context, o *workflowOpOptions) error {
	return onWorkflow(ctx, o, func(in *inspector, orig dbos.WorkflowStatus) (opResult, error) {
		steps, err := dbos.GetWorkflowSteps(in.client, o.id, dbos.WithStepsLoadOutput(false))
		if err != nil {
			return opResult{}, fmt.Errorf("reading the steps of workflow %s: %w", o.id, notFound(o.id, err))
		}
		next := 0 // the step after the last recorded one
		for _, s := range steps {
			next = max(next, s.StepID+1)
		}
		if o.step > next {
			if next == 0 {
				return opResult{}, usagef("--step %d: workflow %s has no recorded step; use --step 0", o.step, o.id)
			}
			return opResult{}, usagef("--step %d: workflow %s recorded steps 0 to %d; use --step 0 to %d (see %s)",
				o.step, o.id, next-1, next, shell.Join("durlab", "workflow", "steps", o.id))
		}
		shared := sharedChildren(steps, o.step)
		if err := checkSharedChildren(in, o, shared); err != nil {
			return opResult{}, err
		}
		h, err := dbos.ForkWorkflow[any](in.client, dbos.ForkWorkflowInput{
			OriginalWorkflowID: o.id,
			StartStep:          uint(o.step),
			ApplicationVersion: o.appVersion,
		})
		if err != nil {
			return opResult{}, fmt.Errorf("forking workflow %s: %w", o.id, notFound(o.id, err))
		}
		forked, err := in.lookup(h.GetWorkflowID(), false)
		if err != nil {
			return opResult{}, err
		}
		step := o.step
		res := opResult{Action: "fork", WorkflowID: forked.ID, ForkedFrom: orig.ID, StartStep: &step,
			Status: string(forked.Status), Changed: true, QueueName: forked.QueueName, AppVersion: forked.ApplicationVersion}
		reuse := "runs every step again"
		if step > 0 {
			reuse = fmt.Sprintf("reuses the outputs of steps 0 to %d and runs step %d onwards", step-1, step)
		}
		if shared := len(shared); shared > 0 {
			// What the fork's report will say (lab/fork.go).
			reuse += fmt.Sprintf(" (it shares %s with %s: %s once, and %s rows stay under %s's ID)",
				lab.Count(shared, "child workflow", "child workflows"), orig.ID, plural(shared, "it ran", "they ran"), plural(shared, "its", "their"), orig.ID)
		}
		res.Note = fmt.Sprintf("forked workflow %s into %s, which %s: %s on queue %s; %s",
			orig.ID, forked.ID, reuse, forked.Status, dash(forked.QueueName), whereItRuns(forked))
		return res, nil
	})
}

// checkSharedChildren refuses a fork that would share a child workflow
// that was cancelled or failed: the fork awaits the very same child
// (lab/fork.go), and fails with it. From the step that started the first
// such child, the fork starts that child anew.
func checkSharedChildren(in *inspector, o *workflowOpOptions, shared map[string]int) error {
	if len(shared) == 0 {
		return nil
	}
	kids, err := dbos.ListWorkflows(in.client, dbos.WithFilterWorkflowIDs(slices.Collect(maps.Keys(shared))...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return fmt.Errorf("reading the child workflows of %s: %w", o.id, err)
	}
	bad, first := 0, -1
	for _, k := range kids {
		if k.Status == dbos.WorkflowStatusCancelled || k.Status == dbos.WorkflowStatusError {
			bad++
			if at := shared[k.ID]; first < 0 || at < first {
				first = at
			}
		}
	}
	if bad == 0 {
		return nil
	}
	return usagef("--step %d: the fork would share %s of %s that ended CANCELLED or ERROR, and fail awaiting %s; fork with --step %d or lower to start %s anew",
		o.step, lab.Count(bad, "child workflow", "child workflows"), o.id, plural(bad, "it", "them"), first, plural(bad, "it", "them"))
}

// sharedChildren are the child workflows a fork from step copies, each
// with the step that started it: the ones started by the steps before it.
func sharedChildren(steps []dbos.StepInfo, step int) map[string]int {
	shared := map[string]int{}
	for _, s := range steps {
		if s.StepID < step && lab.StartsChild(s) {
			shared[s.ChildWorkflowID] = s.StepID
		}
	}
	return shared
}

// printOp prints an operation's result: JSON, or its note. For fork, stdout
// gets the new workflow ID alone, so that id=$(durlab workflow fork ...)
// works, and the note goes to stderr.
func printOp(in *inspector, res opResult) error {
	if in.cfg.json {
		return json.NewEncoder(in.io.Out).Encode(res)
	}
	if res.Action == "fork" {
		fmt.Fprintln(in.io.Out, res.WorkflowID)
		_, err := fmt.Fprintf(in.io.Err, "durlab: %s\n", res.Note)
		return err
	}
	_, err := fmt.Fprintln(in.io.Out, res.Note)
	return err
}
