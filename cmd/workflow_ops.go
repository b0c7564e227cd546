package cmd

// cancel, resume and fork write to the system database, and only there:
// resume and fork enqueue a workflow on DBOS's internal queue, and the next
// durlab process that serves the queues runs it.

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/internal/shell"
	"github.com/durlab/durlab/lab"
)

// workflowOpOptions are the arguments of cancel, resume and fork.
type workflowOpOptions struct {
	global *globalOptions
	id     string
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
	return newOpCmd("cancel ID", "Cancel a workflow that has not finished",
		`Set a workflow that has not finished to CANCELLED, and take it off its queue.
A step in progress is not interrupted; the workflow stops before its next step.
A finished workflow (SUCCESS, ERROR, CANCELLED) is left as it is.
durlab workflow resume restarts a cancelled workflow.`,
		opts, runWorkflowCancel, runF)
}

func newWorkflowResumeCmd(g *globalOptions, runF func(*workflowOpOptions) error) *cobra.Command {
	opts := &workflowOpOptions{global: g}
	return newOpCmd("resume ID", "Enqueue a cancelled, dead-lettered or pending workflow to run again",
		`Enqueue a workflow that has not finished (CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED,
PENDING, ENQUEUED) on DBOS's internal queue, with its recovery attempts reset.
It continues from its last recorded step. Nothing runs it here: the next durlab
process of the same application version that serves the queues runs it, whatever
its executor ID: the experiment's command while it runs, or durlab worker.
A workflow that ended in SUCCESS or ERROR cannot be resumed: fork it.`,
		opts, runWorkflowResume, runF)
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
		switch before.Status {
		case dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError, dbos.WorkflowStatusCancelled:
			res.Note = fmt.Sprintf("workflow %s is already %s: nothing to cancel", o.id, before.Status)
			return res, nil
		}
		if err := dbos.CancelWorkflow(in.client, o.id); err != nil {
			return res, fmt.Errorf("cancelling workflow %s: %w", o.id, notFound(o.id, err))
		}
		after, err := in.lookup(o.id, false)
		if err != nil {
			return res, err
		}
		res.Status, res.Changed = string(after.Status), after.Status != before.Status
		res.Note = fmt.Sprintf("workflow %s cancelled (was %s): a step in progress finishes, the workflow stops before its next step; `%s` restarts it",
			o.id, before.Status, shell.Join("durlab", "workflow", "resume", o.id))
		return res, nil
	})
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
		if _, err := dbos.ResumeWorkflow[any](in.client, o.id); err != nil {
			return opResult{}, fmt.Errorf("resuming workflow %s: %w", o.id, notFound(o.id, err))
		}
		after, err := in.lookup(o.id, false)
		if err != nil {
			return opResult{}, err
		}
		res := opResult{Action: "resume", WorkflowID: o.id, StatusBefore: string(before.Status), Status: string(after.Status),
			Changed: true, QueueName: after.QueueName, AppVersion: after.ApplicationVersion}
		res.Note = fmt.Sprintf("workflow %s resumed (was %s): %s on queue %s; %s",
			o.id, before.Status, after.Status, dash(after.QueueName), whereItRuns(after))
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
		if shared := sharedChildren(steps, step); shared > 0 {
			// What the fork's report will say (lab/fork.go).
			reuse += fmt.Sprintf(" (it shares %s with %s: %s once, and %s rows stay under %s's ID)",
				lab.Count(shared, "child workflow", "child workflows"), orig.ID, plural(shared, "it ran", "they ran"), plural(shared, "its", "their"), orig.ID)
		}
		res.Note = fmt.Sprintf("forked workflow %s into %s, which %s: %s on queue %s; %s",
			orig.ID, forked.ID, reuse, forked.Status, dash(forked.QueueName), whereItRuns(forked))
		return res, nil
	})
}

// sharedChildren counts the child workflows a fork from step copies: the
// ones started by the steps before it.
func sharedChildren(steps []dbos.StepInfo, step int) int {
	n := 0
	for _, s := range steps {
		if s.StepID < step && s.ChildWorkflowID != "" && s.StepName != "DBOS.getResult" {
			n++
		}
	}
	return n
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
