package cmd

// durlab clean deletes finished runs: the workflow and its children from
// the system database (DBOS's DeleteWorkflows), and from the store its rows
// in both users tables, its attempt-ledger events and DBOS's transaction
// records of its batches. The store goes first, so that a failure in between
// leaves a workflow DBOS still lists, which the next clean finds again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// cleanOptions are the flags of `durlab clean`.
type cleanOptions struct {
	global       *globalOptions
	rawOlderThan string
	all          bool
	unknown      bool
	force        bool
	dryRun       bool

	olderThan time.Duration // set by validate; 0: any age
}

func newCleanCmd(g *globalOptions, runF func(*cleanOptions) error) *cobra.Command {
	opts := &cleanOptions{global: g}
	c := &cobra.Command{
		Use:   "clean [--older-than D] [--unknown] [--all [--force]] [--dry-run]",
		Short: "Delete finished runs: their workflows, rows and ledger records",
		Long: `Delete the runs that have finished (SUCCESS or ERROR): each main workflow
with its child workflows from the system database, and from the store their
rows in both users tables, their attempt-ledger events and DBOS's transaction
records. Runs that may still run (PENDING, ENQUEUED, CANCELLED, dead-lettered:
resume can restart the last two) are kept, and so are rows the system
database knows no workflow of. It prints what it removed; --dry-run prints
what it would remove and removes nothing.

--older-than D keeps the runs created less than D ago (90m, 24h, 7d).
--unknown also deletes the rows and events of workflows the system database
does not know: left when it was replaced or lost, or by a plain profile run
that was killed.
--all deletes everything: every workflow whatever its status, and every row
and event of the store. It refuses while a workflow is PENDING, ENQUEUED or
DELAYED, which a live process may be running, unless --force.

SQLite files are compacted afterwards (VACUUM), so the data folder shrinks.
To start over with the defaults, 'durlab clean --all' or remove ./.durlab.`,
		Example: `  durlab clean --dry-run
  durlab clean --older-than 7d
  durlab clean --all`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runClean(c.Context(), opts)
		},
	}
	f := c.Flags()
	f.StringVar(&opts.rawOlderThan, "older-than", "", "only runs created more than this long ago (90m, 24h, 7d)")
	f.BoolVar(&opts.all, "all", false, "delete everything: every workflow, whatever its status, and every row and event")
	f.BoolVar(&opts.unknown, "unknown", false, "also delete the rows and events of workflows the system database does not know")
	f.BoolVar(&opts.force, "force", false, "with --all: delete even while workflows are pending")
	f.BoolVar(&opts.dryRun, "dry-run", false, "print what would be removed, and remove nothing")
	return c
}

func (o *cleanOptions) validate() error {
	switch {
	case o.force && !o.all:
		return usagef("--force goes with --all: a plain clean never deletes a pending workflow")
	case o.all && o.rawOlderThan != "":
		return usagef("--all and --older-than exclude each other: --all deletes everything")
	}
	if o.rawOlderThan != "" {
		d, ok, err := parseAgo(o.rawOlderThan)
		switch {
		case !ok:
			return usagef("--older-than %q: use a duration (90m, 24h, 7d)", o.rawOlderThan)
		case err != nil:
			return usagef("--older-than %q: %v", o.rawOlderThan, err)
		}
		o.olderThan = d
	}
	return nil
}

// cleanedRun is one run in clean's output. The JSON names are an interface.
type cleanedRun struct {
	WorkflowID string    `json:"workflow_id"`
	Name       string    `json:"name"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	Children   int       `json:"children"`
	Rows       int64     `json:"rows"`
	Events     int64     `json:"events"`
}

// cleanTotals count runs, children, rows and events.
type cleanTotals struct {
	Workflows int   `json:"workflows"`
	Children  int   `json:"children"`
	Rows      int64 `json:"rows"`
	Events    int64 `json:"events"`
}

// cleanResult is clean's JSON output. The names are an interface.
type cleanResult struct {
	DryRun bool         `json:"dry_run"`
	Runs   []cleanedRun `json:"runs"`
	// Removed counts the runs above, and with --all the rows and events of
	// workflows the system database does not know.
	Removed cleanTotals `json:"removed"`
	// Unknown are rows and events of workflows the system database does
	// not know (a system database deleted, a plain run killed): kept
	// except with --all. Its Workflows counts their IDs.
	Unknown cleanTotals `json:"unknown"`
	// Kept counts the runs left because they may still run, or are newer
	// than --older-than.
	Kept int `json:"kept"`
	// Notes are what could not be done and changes nothing (compaction).
	Notes []string `json:"notes,omitempty"`
}

// pendingStatuses are those of a workflow a live process may be running.
var pendingStatuses = []dbos.WorkflowStatusType{dbos.WorkflowStatusPending, dbos.WorkflowStatusEnqueued, dbos.WorkflowStatusDelayed}

func runClean(ctx context.Context, o *cleanOptions) error {
	g := o.global
	cfg, err := g.resolveFor(false)
	if err != nil {
		return err
	}
	var res cleanResult
	res.DryRun = o.dryRun
	in, err := openClient(ctx, cfg, g.io)
	var none errNoSystemDB
	switch {
	case errors.As(err, &none):
		in = nil // no system database: no workflow, maybe rows
	case err != nil:
		return err
	default:
		defer in.Close()
	}
	st, err := store.OpenForReading(ctx, cfg.store)
	switch {
	case errors.Is(err, store.ErrNoStore):
		st = nil
	case err != nil:
		return err
	default:
		st.Close()
		// Deleting needs the store open for writing; it exists, so this
		// creates nothing but what durlab would create in it anyway.
		if st, err = store.Open(ctx, cfg.store); err != nil {
			return err
		}
		defer st.Close()
	}
	held := map[string]store.Records{}
	if st != nil {
		if held, err = st.Holdings(ctx); err != nil {
			return fmt.Errorf("reading the store: %w", err)
		}
	}
	var roots []dbos.WorkflowStatus
	children := map[string][]string{}
	if in != nil {
		if roots, children, res.Kept, err = o.choose(in); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	if in != nil {
		all, err := dbos.ListWorkflows(in.client, dbos.WithFilterHasParent(false), dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return fmt.Errorf("listing workflows: %w", err)
		}
		for _, w := range all {
			known[w.ID] = true
		}
	}
	var rootIDs, workflowIDs []string
	for _, r := range roots {
		rec := held[r.ID]
		res.Runs = append(res.Runs, cleanedRun{WorkflowID: r.ID, Name: r.Name, Status: string(r.Status), CreatedAt: r.CreatedAt.UTC(),
			Children: len(children[r.ID]), Rows: rec.Rows, Events: rec.Events})
		res.Removed.add(1, len(children[r.ID]), rec)
		rootIDs = append(rootIDs, r.ID)
		workflowIDs = append(append(workflowIDs, r.ID), children[r.ID]...)
	}
	for id, rec := range held {
		if !known[id] {
			res.Unknown.add(1, 0, rec)
			if o.all || o.unknown {
				rootIDs = append(rootIDs, id)
			}
		}
	}
	if o.all || o.unknown {
		res.Removed.Rows += res.Unknown.Rows
		res.Removed.Events += res.Unknown.Events
	}
	if !o.dryRun && len(rootIDs) > 0 {
		if err := o.remove(ctx, in, st, cfg, rootIDs, workflowIDs, &res); err != nil {
			return err
		}
	}
	if cfg.json {
		if res.Runs == nil {
			res.Runs = []cleanedRun{}
		}
		return json.NewEncoder(g.io.Out).Encode(res)
	}
	return printClean(g.io.Out, o, res)
}

func (t *cleanTotals) add(workflows, children int, r store.Records) {
	t.Workflows += workflows
	t.Children += children
	t.Rows += r.Rows
	t.Events += r.Events
}

// choose finds the runs to delete, newest first, with their children's IDs,
// and counts the runs it keeps. With --all it refuses while a workflow is
// pending, unless --force.
func (o *cleanOptions) choose(in *inspector) (roots []dbos.WorkflowStatus, children map[string][]string, kept int, err error) {
	tops, err := dbos.ListWorkflows(in.client, dbos.WithFilterHasParent(false), dbos.WithFilterSortDesc(),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("listing workflows: %w", err)
	}
	if o.all && !o.force {
		pending, err := dbos.ListWorkflows(in.client, dbos.WithFilterStatus(pendingStatuses...), dbos.WithFilterSortDesc(),
			dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
		if err != nil {
			return nil, nil, 0, fmt.Errorf("listing pending workflows: %w", err)
		}
		if len(pending) > 0 {
			w := pending[0]
			return nil, nil, 0, usagef("clean --all: %s pending (the newest: %s %s %s), which a live process may be running: let it finish, cancel it (durlab workflow cancel), or add --force",
				lab.Count(len(pending), "workflow is", "workflows are"), w.ID, w.Name, w.Status)
		}
	}
	cutoff := time.Now().Add(-o.olderThan)
	for _, w := range tops {
		finished := w.Status == dbos.WorkflowStatusSuccess || w.Status == dbos.WorkflowStatusError
		if o.all || (finished && (o.olderThan == 0 || w.CreatedAt.Before(cutoff))) {
			roots = append(roots, w)
		} else {
			kept++
		}
	}
	children = map[string][]string{}
	if len(roots) == 0 {
		return roots, children, kept, nil
	}
	kids, err := dbos.ListWorkflows(in.client, dbos.WithFilterParentWorkflowID(idsOf(roots)...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, nil, 0, fmt.Errorf("listing child workflows: %w", err)
	}
	for _, k := range kids {
		children[k.ParentWorkflowID] = append(children[k.ParentWorkflowID], k.ID)
	}
	return roots, children, kept, nil
}

// remove deletes the store's records of rootIDs (and DBOS's transaction
// records of workflowIDs), then the workflows from the system database,
// then compacts the SQLite files.
func (o *cleanOptions) remove(ctx context.Context, in *inspector, st store.Store, cfg resolved, rootIDs, workflowIDs []string, res *cleanResult) error {
	if st != nil {
		if _, err := st.Forget(ctx, rootIDs, workflowIDs); err != nil {
			return fmt.Errorf("deleting the runs' rows and records (nothing was deleted): %w", err)
		}
		if err := st.Compact(ctx); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("the store was not compacted (%v); its space is reused by later runs", err))
		}
	}
	var dbosIDs []string
	for _, r := range res.Runs {
		dbosIDs = append(dbosIDs, r.WorkflowID)
	}
	if in == nil || len(dbosIDs) == 0 {
		return nil
	}
	if err := dbos.DeleteWorkflows(in.client, dbosIDs, dbos.WithDeleteChildren()); err != nil {
		return fmt.Errorf("the runs' rows and records are deleted, but not their workflows (run durlab clean again): %w", err)
	}
	if u, err := dburl.Parse(cfg.systemDB, false); err == nil && u.Kind == dburl.SQLite {
		if err := store.CompactSQLiteFile(ctx, u.Path); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("the system database was not compacted (%v); its space is reused by later runs", err))
		}
	}
	return nil
}

func printClean(out io.Writer, o *cleanOptions, res cleanResult) error {
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	if len(res.Runs) > 0 {
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tSTATUS\tCREATED\tCHILDREN\tROWS\tEVENTS")
		for _, r := range res.Runs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.WorkflowID, r.Name, r.Status, localTime(r.CreatedAt), r.Children, r.Rows, r.Events)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	t := res.Removed
	if t == (cleanTotals{}) {
		fmt.Fprintf(out, "nothing to remove\n")
	} else {
		fmt.Fprintf(out, "%s %s (%s), %s and %s\n", verb, lab.Count(t.Workflows, "run", "runs"), lab.Count(t.Children, "child workflow", "child workflows"),
			lab.Count(t.Rows, "row", "rows"), lab.Count(t.Events, "ledger event", "ledger events"))
	}
	if u := res.Unknown; u.Workflows > 0 {
		what := fmt.Sprintf("%s and %s of %s the system database does not know", lab.Count(u.Rows, "row", "rows"),
			lab.Count(u.Events, "ledger event", "ledger events"), lab.Count(u.Workflows, "workflow", "workflows"))
		if o.all || o.unknown {
			fmt.Fprintf(out, "%s with them %s\n", verb, what)
		} else {
			fmt.Fprintf(out, "kept %s (--unknown removes them)\n", what)
		}
	}
	if res.Kept > 0 {
		why := "pending, cancelled or dead-lettered: they may still run"
		if o.olderThan > 0 {
			why += fmt.Sprintf(", or newer than %s", o.rawOlderThan)
		}
		fmt.Fprintf(out, "kept %s (%s)\n", lab.Count(res.Kept, "run", "runs"), why)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	return nil
}
