package cmd

// workflow adopt is a worker's adoption (lab/adopt.go) by hand, for one
// executor, from any process. Unlike the other workflow commands it
// launches DBOS: it runs what it adopted.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/workflows"
)

// workflowAdoptOptions are the arguments of `durlab workflow adopt`.
type workflowAdoptOptions struct {
	global   *globalOptions
	executor string
}

// adoptResult is workflow adopt's JSON. The names are an interface.
type adoptResult struct {
	ExecutorID string                `json:"executor_id"`
	AdoptedBy  string                `json:"adopted_by"`
	Workflows  []lab.AdoptedWorkflow `json:"workflows"`
	// Finished: every adopted workflow ended (in any status).
	Finished bool   `json:"finished"`
	Note     string `json:"note"`
	// HandedBack are the other workflows this process dequeued and did
	// not finish, resumed for another process (lab.CloseHandingBack).
	HandedBack []string `json:"handed_back,omitempty"`
}

func newWorkflowAdoptCmd(g *globalOptions, runF func(*workflowAdoptOptions) error) *cobra.Command {
	opts := &workflowAdoptOptions{global: g}
	return &cobra.Command{
		Use:   "adopt EXECUTOR_ID",
		Short: "Finish the pending workflows of a dead executor",
		Long: `Adopt a dead executor, as a worker does after --adopt-after: take its claim,
put its PENDING workflows of this application version back on their queues,
run them in this process (or let any worker of their queue run them), and
hold the claim until they have all finished; then print how each ended.

It is refused (exit 2) while the executor is alive: a live durlab process
holds its claim, and adopting it would run its workflows twice. A process
started with the adopted ID meanwhile waits for the claim, then finds nothing
to recover.

This process runs under its own executor ID (--executor-id, default
durlab-adopt-EXECUTOR_ID): if it is stopped, what it was running stays PENDING
there, and the same command run again, or a worker, takes it up. When it
finishes, any other workflow it took from the queues and did not finish is
resumed on DBOS's internal queue, for the next durlab process. Exit 0 when
every adopted workflow ended in SUCCESS, 1 otherwise.`,
		Example: `  durlab workflow adopt w1
  durlab workflow adopt durlab-dedup --output json`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
				return usagef("%s needs exactly one executor ID, got %d argument(s) (see %s --help)", c.CommandPath(), len(args), c.CommandPath())
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			opts.executor = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runWorkflowAdopt(c.Context(), opts)
		},
	}
}

func runWorkflowAdopt(ctx context.Context, o *workflowAdoptOptions) error {
	g := o.global
	cfg, err := g.resolveFor(false)
	if err != nil {
		return err
	}
	// Adopting from a system database that does not exist must not create
	// it on the way to finding nothing.
	if exists, err := lab.SystemDBExists(ctx, cfg.systemDB); err != nil {
		return err
	} else if !exists {
		return usageError{errNoSystemDB{dburl.Redacted(cfg.systemDB)}}
	}
	if cfg, err = g.resolve(); err != nil {
		return err
	}
	self := g.executor("durlab-adopt-" + o.executor)
	if self == o.executor {
		return usagef("--executor-id %s is the executor to adopt: this process needs an ID of its own", self)
	}
	cfg.hold() // DBOS's own lines for an error Open returns anyway
	rt, err := lab.Open(ctx, lab.Config{
		SystemDB:    cfg.systemDB,
		Store:       cfg.store,
		ExecutorID:  self,
		Logger:      cfg.logger,
		Notices:     g.io.Err,
		Stream:      cfg.stream,
		Faults:      lab.Faults{Attempts: 10},
		Experiments: workflows.Experiments(),
	})
	if err != nil {
		return err
	}
	cfg.flush()
	closed := false
	defer func() {
		if !closed {
			cfg.quiet()
			rt.Close()
		}
	}()
	a, err := rt.Adopt(ctx, o.executor)
	switch {
	case errors.Is(err, lab.ErrExecutorInUse), errors.Is(err, lab.ErrAdoptSelf):
		return usageError{err}
	case err != nil:
		return err
	}
	res := adoptResult{ExecutorID: o.executor, AdoptedBy: self, Workflows: a.Workflows, Finished: true}
	if len(a.Workflows) == 0 {
		res.Workflows = []lab.AdoptedWorkflow{}
		res.Note = fmt.Sprintf("executor %s has no live claim and no PENDING workflow of version %s: nothing to adopt", o.executor, lab.AppVersion)
		return printAdopt(g.io, cfg.json, res)
	}
	fmt.Fprintf(g.io.Err, "durlab: adopted executor %s: %s; running them, and holding %s's claim until they finish\n",
		o.executor, a.Describe(), o.executor)
	wfs, err := a.Wait(ctx)
	res.Workflows = wfs
	if ctxErr := ctx.Err(); ctxErr != nil {
		stopped := fmt.Errorf("stopped before the workflows adopted from executor %s finished; they stay on their queues or PENDING on executor %s, where a worker or this command run again finishes them", o.executor, self)
		var se signalError
		if errors.As(context.Cause(ctx), &se) {
			return fmt.Errorf("%w: %w", se, stopped)
		}
		return fmt.Errorf("%w: %w", lab.ErrInterrupted, stopped)
	}
	if err != nil {
		return fmt.Errorf("adopting executor %s: %w", o.executor, err)
	}
	ok := 0
	for _, w := range wfs {
		if w.Status == string(dbos.WorkflowStatusSuccess) {
			ok++
		}
	}
	res.Note = fmt.Sprintf("the %s adopted from executor %s finished: %d in SUCCESS", lab.Count(len(wfs), "workflow", "workflows"), o.executor, ok)
	cfg.quiet()
	closed = true
	handed, err := rt.CloseHandingBack(ctx)
	if err != nil {
		return fmt.Errorf("handing back the workflows this process took from their queues: %w", err)
	}
	if len(handed) > 0 {
		res.HandedBack = handed
		fmt.Fprintf(g.io.Err, "durlab: %s this process took from the queues beside the adopted %s not finished here: resumed on DBOS's internal queue, for the next durlab process (%s)\n",
			lab.Count(len(handed), "workflow", "workflows"), plural(len(handed), "one is", "ones are"), strings.Join(handed, ", "))
	}
	if err := printAdopt(g.io, cfg.json, res); err != nil {
		return err
	}
	if ok != len(wfs) {
		return errNotAsExpected
	}
	return nil
}

// printAdopt prints the adopted workflows as a table and the note, or JSON.
func printAdopt(io IOStreams, asJSON bool, res adoptResult) error {
	if asJSON {
		return json.NewEncoder(io.Out).Encode(res)
	}
	if len(res.Workflows) > 0 {
		tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tQUEUE\tSTATUS")
		for _, w := range res.Workflows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.ID, w.Name, dash(w.Queue), w.Status)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(io.Out, oneLine(dburl.Redact(res.Note)))
	return err
}
