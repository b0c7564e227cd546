package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
	"github.com/durlab/durlab/trace"
	"github.com/durlab/durlab/workflows"
)

// followInterval is how often --follow reads the run again.
const followInterval = 300 * time.Millisecond

// workflowTraceOptions are the flags of `durlab workflow trace`.
type workflowTraceOptions struct {
	global *globalOptions
	id     string
	follow bool
	html   string
	depth  int
	expand bool
}

func newWorkflowTraceCmd(g *globalOptions, runF func(*workflowTraceOptions) error) *cobra.Command {
	opts := &workflowTraceOptions{global: g}
	c := &cobra.Command{
		Use:   "trace ID",
		Short: "Show what happened to a run: executions, child workflows, steps and every attempt",
		Long: `Show the tree of a run: the workflow, each of its executions (process,
executor, start, duration, how it ended), the child workflows each execution
started, and the steps each ran with every attempt (duration, outcome, rows
written, duplicates and why, error). A recovered execution says which steps
it took from their checkpoints. It reads durlab's attempt ledger in the
store and DBOS's records in the system database, and changes nothing.

ID may be a unique prefix of a workflow ID, as in git; a prefix shared by a
run's main workflow and its children means the main workflow. A child's ID
traces that child's part of its run.

A child workflow that finished in one execution with nothing failing is
folded to one line (--expand shows it); --depth limits how many levels of
child workflows are shown. Colour on a terminal, none with NO_COLOR or
when piped. --follow redraws the tree until the workflow ends, whichever
process or machine runs it; Ctrl-C ends the follow and nothing else.
--html writes a self-contained timeline to open in a browser.`,
		Example: `  durlab workflow trace 62e9038a
  durlab workflow trace 62e9038a --follow
  durlab workflow trace 62e9038a --html t.html
  durlab workflow trace 62e9038a -o jsonl | jq 'select(.kind == "attempt" and .outcome != "ok")'`,
		Args: oneWorkflowID,
		RunE: func(c *cobra.Command, args []string) error {
			opts.id = args[0]
			if opts.depth < 0 {
				return usagef("--depth must not be negative, got %d", opts.depth)
			}
			if runF != nil {
				return runF(opts)
			}
			return runWorkflowTrace(c.Context(), opts)
		},
	}
	f := c.Flags()
	f.BoolVarP(&opts.follow, "follow", "f", false, "redraw the tree until the workflow ends")
	f.StringVar(&opts.html, "html", "", "also write a self-contained HTML timeline to this file")
	f.IntVar(&opts.depth, "depth", 0, "levels of child workflows to show (0: all)")
	f.BoolVar(&opts.expand, "expand", false, "show finished child workflows in full instead of one line each")
	return c
}

// tracer reads one run again and again.
type tracer struct {
	in       *inspector
	st       store.Store // nil: no store yet, so no ledger
	live     *lab.Liveness
	root, id string
	table    *store.Variant // the users table of the run's experiment
}

func runWorkflowTrace(ctx context.Context, o *workflowTraceOptions) error {
	o.global.jsonlOK = true
	in, err := openInspector(ctx, o.global)
	if err != nil {
		return err
	}
	defer in.Close()
	tr := &tracer{in: in}
	if tr.id, tr.root, err = in.resolveRun(o.id); err != nil {
		return err
	}
	tr.st, err = store.OpenForReading(ctx, in.cfg.store)
	switch {
	case errors.Is(err, store.ErrNoStore):
		tr.st = nil
	case err != nil:
		return err
	default:
		defer tr.st.Close()
	}
	tr.live = lab.NewLiveness(ctx, in.cfg.systemDB)
	defer tr.live.Close()
	seen := map[string]bool{}
	for {
		t, err := tr.read(ctx)
		if err != nil {
			return err
		}
		if err := o.write(in, t, seen); err != nil {
			return err
		}
		if !o.follow || t.Finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return lab.ErrInterrupted
		case <-time.After(followInterval):
		}
	}
}

// write prints the trace in the chosen form; with --follow on a terminal
// it redraws it.
func (o *workflowTraceOptions) write(in *inspector, t *trace.Trace, seen map[string]bool) error {
	if o.html != "" {
		if err := writeHTMLFile(o.html, t); err != nil {
			return err
		}
		if t.Finished || !o.follow {
			fmt.Fprintf(in.io.Err, "durlab: wrote the timeline of workflow %s to %s; open it in a browser\n", t.Root.ID, o.html)
		}
	}
	switch {
	case in.cfg.jsonl:
		if !o.follow {
			seen = nil
		}
		return trace.WriteJSONL(in.io.Out, t, seen)
	case in.cfg.json:
		if o.follow && !t.Finished {
			return nil // one JSON document, when the run has ended
		}
		return json.NewEncoder(in.io.Out).Encode(t)
	}
	live := o.follow && in.io.OutIsTerminal
	if o.follow && !live && !t.Finished {
		return nil // piped: the tree once, at the end
	}
	if live {
		fmt.Fprint(in.io.Out, "\x1b[H\x1b[2J") // home, clear: redraw
	}
	opts := trace.TextOptions{Depth: o.depth, Expand: o.expand,
		Color: in.io.OutIsTerminal && os.Getenv("NO_COLOR") == ""}
	return trace.WriteText(in.io.Out, t, opts)
}

func writeHTMLFile(path string, t *trace.Trace) error {
	f, err := os.Create(path)
	if err != nil {
		return usagef("cannot write the timeline: %v", unwrapPathError(err))
	}
	if err := trace.WriteHTML(f, t); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// read reads the run as it stands.
func (tr *tracer) read(ctx context.Context) (*trace.Trace, error) {
	taken := time.Now()
	run, err := lab.ReadRun(ctx, tr.in.client, tr.st, tr.root, true, tr.live.Alive)
	if err != nil {
		return nil, fmt.Errorf("reading workflow %s: %w", tr.root, err)
	}
	root := run.Root
	t := trace.Build(run, run.Summary(), slices.Contains(finishedStatuses, dbos.WorkflowStatusType(root.Status)), taken)
	if tr.st != nil {
		if e, ok := workflows.ExperimentOf(root.Name); ok {
			c, err := tr.st.Table(e.Table).Counts(ctx, tr.root)
			if err != nil {
				return nil, err
			}
			t.Summary.Rows, t.Summary.UniqueUsers = c.Rows, c.UniqueUsers
		}
	}
	if tr.id != tr.root {
		if sub := t.Find(tr.id); sub != nil {
			t.Root = sub
		}
	}
	return t, nil
}

// finishedStatuses are those of a workflow that will not run again by
// itself.
var finishedStatuses = []dbos.WorkflowStatusType{dbos.WorkflowStatusSuccess, dbos.WorkflowStatusError,
	dbos.WorkflowStatusCancelled, dbos.WorkflowStatusMaxRecoveryAttemptsExceeded}

// resolveRun finds the workflow idOrPrefix names, and the main workflow of
// its run.
func (in *inspector) resolveRun(idOrPrefix string) (id, root string, err error) {
	st, err := in.resolve(idOrPrefix)
	if err != nil {
		return "", "", err
	}
	r, _ := rootOf(in, st) // an orphan: trace what there is
	return st.ID, r.ID, nil
}

// resolve finds the workflow an ID or a unique prefix of one names. A
// prefix that a main workflow shares with its own children names the main
// workflow.
func (in *inspector) resolve(idOrPrefix string) (dbos.WorkflowStatus, error) {
	exact, err := dbos.ListWorkflows(in.client, dbos.WithFilterWorkflowIDs(idOrPrefix),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return dbos.WorkflowStatus{}, fmt.Errorf("reading workflow %s: %w", idOrPrefix, err)
	}
	if len(exact) == 1 {
		return exact[0], nil
	}
	const shown = 5
	matches, err := dbos.ListWorkflows(in.client, dbos.WithFilterWorkflowIDPrefix(idOrPrefix),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false), dbos.WithFilterLimit(1000))
	if err != nil {
		return dbos.WorkflowStatus{}, fmt.Errorf("reading workflows %s...: %w", idOrPrefix, err)
	}
	var tops []dbos.WorkflowStatus
	for _, m := range matches {
		if m.ParentWorkflowID == "" || !hasPrefix(m.ParentWorkflowID, idOrPrefix) {
			tops = append(tops, m)
		}
	}
	switch len(tops) {
	case 0:
		return dbos.WorkflowStatus{}, errWorkflowNotFound(idOrPrefix)
	case 1:
		return tops[0], nil
	}
	var ids []string
	for _, m := range tops[:min(len(tops), shown)] {
		ids = append(ids, m.ID)
	}
	return dbos.WorkflowStatus{}, usagef("workflow ID prefix %s is ambiguous: %d workflows start with it (%v%s); give more of the ID",
		idOrPrefix, len(tops), ids, map[bool]string{true: ", ...", false: ""}[len(tops) > shown])
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }
