package cmd

import (
	"context"
	"fmt"
	"strings"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/workflows"
)

// listPendingOptions are the flags of `durlab list-pending`.
type listPendingOptions struct {
	global *globalOptions
	names  []string
}

func newListPendingCmd(g *globalOptions) *cobra.Command {
	return newListPendingCmdF(g, nil)
}

// newListPendingCmdF builds list-pending; runF replaces the run in parsing tests.
func newListPendingCmdF(g *globalOptions, runF func(*listPendingOptions) error) *cobra.Command {
	opts := &listPendingOptions{global: g}
	c := &cobra.Command{
		Use:   "list-pending",
		Short: "List PENDING and ENQUEUED workflows (read only)",
		Long: `List the PENDING and ENQUEUED workflows of the system database, newest first.
It only reads: it uses a DBOS client and never launches DBOS, so it recovers
and executes nothing.

CHILDREN counts the child workflows each started, and BATCH is a batch
child's number in its run. RECOVERY ATTEMPTS counts the executions after
the first. DBOS recovers a
PENDING workflow when a process with the same executor ID and application
version launches: run its experiment again. durlab workflow resume lets any
durlab process take it.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkNotEmpty(c, "name", opts.names); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runListPending(c.Context(), opts)
		},
	}
	c.Flags().StringSliceVar(&opts.names, "name", nil, "only workflows of this name, e.g. "+workflows.Recover.WorkflowNames()[0]+" (repeatable)")
	return c
}

func runListPending(ctx context.Context, o *listPendingOptions) error {
	in, err := openInspector(ctx, o.global)
	if err != nil {
		return noWorkflowsYet(err, o.global.io.Out, o.global.output == "json")
	}
	defer in.Close()
	filters := []dbos.ListWorkflowsOption{
		dbos.WithFilterStatus(dbos.WorkflowStatusPending, dbos.WorkflowStatusEnqueued),
		// A child's input holds its batch number.
		dbos.WithFilterSortDesc(), dbos.WithFilterLoadInput(true), dbos.WithFilterLoadOutput(false),
	}
	if len(o.names) > 0 {
		filters = append(filters, dbos.WithFilterName(o.names...))
	}
	wfs, err := dbos.ListWorkflows(in.client, filters...)
	if err != nil {
		return fmt.Errorf("listing pending workflows: %w", err)
	}
	empty := "no PENDING or ENQUEUED workflows"
	if len(o.names) > 0 {
		empty += " named " + strings.Join(o.names, " or ")
	}
	rows, err := in.rows(wfs)
	if err != nil {
		return err
	}
	return printWorkflowRows(in.io.Out, in.cfg.json, rows, empty)
}
