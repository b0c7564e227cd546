package cmd

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/workflows"
)

// workflowStatuses are the statuses DBOS records, in lifecycle order.
var workflowStatuses = []dbos.WorkflowStatusType{
	dbos.WorkflowStatusPending,
	dbos.WorkflowStatusEnqueued,
	dbos.WorkflowStatusDelayed,
	dbos.WorkflowStatusSuccess,
	dbos.WorkflowStatusError,
	dbos.WorkflowStatusCancelled,
	dbos.WorkflowStatusMaxRecoveryAttemptsExceeded,
}

// workflowListOptions are the flags of `durlab workflow list`.
type workflowListOptions struct {
	global    *globalOptions
	rawStatus []string
	names     []string
	executors []string
	rawSince  string
	rawUntil  string
	limit     int
	// all: child workflows too; by default a listing shows the runs, one
	// row each (a dedup run adds 10 batch children).
	all bool

	// Set by validate.
	statuses     []dbos.WorkflowStatusType
	since, until time.Time
}

func newWorkflowListCmd(g *globalOptions, runF func(*workflowListOptions) error) *cobra.Command {
	opts := &workflowListOptions{global: g}
	c := &cobra.Command{
		Use:   "list",
		Short: "List workflows, newest first",
		Long: `List the workflows of the system database, newest first, with filters.

By default only top-level workflows are listed, one row per run, with the
number of child workflows each started (CHILDREN); --all lists the child
workflows too, each with its batch number (BATCH).

--since and --until take a date (2025-06-01, local midnight), a local time
(2025-06-01 14:30), an RFC3339 time (2025-06-01T12:00:00Z) or a duration
meaning "that long ago" (90m, 24h, 2d, 1d12h).`,
		Example: `  durlab workflow list --status PENDING,ENQUEUED
  durlab workflow list --since 2d --all
  durlab workflow list --name ` + workflows.Recover.WorkflowNames()[0] + ` --since 2025-06-01 --output json`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if c.Flags().Changed("status") && len(opts.rawStatus) == 0 {
				return usagef("--status needs a status: use %s", statusNames())
			}
			for flag, vals := range map[string][]string{"name": opts.names, "executor": opts.executors} {
				if err := checkNotEmpty(c, flag, vals); err != nil {
					return err
				}
			}
			if err := opts.validate(time.Now()); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runWorkflowList(c.Context(), opts)
		},
	}
	f := c.Flags()
	f.StringSliceVar(&opts.rawStatus, "status", nil, "only these statuses (repeatable or comma-separated): "+statusNames())
	f.StringSliceVar(&opts.names, "name", nil, "only workflows of this name (repeatable)")
	f.StringSliceVar(&opts.executors, "executor", nil, "only workflows of this executor ID (repeatable)")
	f.StringVar(&opts.rawSince, "since", "", "only workflows created at or after this time (a date, a local time, RFC3339, or a duration ago like 1h or 2d)")
	f.StringVar(&opts.rawUntil, "until", "", "only workflows created at or before this time (a date, a local time, RFC3339, or a duration ago like 10m or 1d)")
	f.IntVar(&opts.limit, "limit", 20, "at most this many workflows (0: no limit)")
	f.BoolVarP(&opts.all, "all", "a", false, "list child workflows too (batches), not only top-level ones")
	return c
}

func (o *workflowListOptions) validate(now time.Time) error {
	var err error
	if o.statuses, err = parseStatuses(o.rawStatus); err != nil {
		return err
	}
	if o.since, err = parseTimeFlag("--since", o.rawSince, now); err != nil {
		return err
	}
	if o.until, err = parseTimeFlag("--until", o.rawUntil, now); err != nil {
		return err
	}
	if !o.since.IsZero() && !o.until.IsZero() && !o.since.Before(o.until) {
		return usagef("--since (%s) must be before --until (%s)", localTime(o.since), localTime(o.until))
	}
	if o.limit < 0 {
		return usagef("--limit must not be negative, got %d", o.limit)
	}
	return nil
}

func statusNames() string {
	names := make([]string, len(workflowStatuses))
	for i, s := range workflowStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// parseStatuses validates --status values against DBOS's statuses,
// case-insensitively.
func parseStatuses(raw []string) ([]dbos.WorkflowStatusType, error) {
	var out []dbos.WorkflowStatusType
	for _, r := range raw {
		s := dbos.WorkflowStatusType(strings.ToUpper(strings.TrimSpace(r)))
		if !slices.Contains(workflowStatuses, s) {
			return nil, usagef("unknown --status %q: use %s", r, statusNames())
		}
		out = append(out, s)
	}
	return out, nil
}

// localLayouts are the times without a zone --since and --until take, read
// in the local zone.
var localLayouts = []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02T15:04:05"}

// parseTimeFlag reads a time (RFC3339, or a local date or time) or a
// non-negative duration before now; "" is the zero time (no bound).
func parseTimeFlag(flag, v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	if d, ok, err := parseAgo(v); ok {
		if err != nil {
			return time.Time{}, usagef("%s %q: %v", flag, v, err)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range localLayouts {
		if t, err := time.ParseInLocation(layout, v, now.Location()); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("%s %q: use a date (2025-06-01), a local time (2025-06-01 14:30), an RFC3339 time (2025-06-01T12:00:00Z) or a duration ago (90m, 24h, 2d)", flag, v)
}

// parseAgo reads a duration as time.ParseDuration does, with days ("2d",
// "1d12h") in front, which it lacks. ok is false when v is no duration.
func parseAgo(v string) (d time.Duration, ok bool, err error) {
	rest := v
	if i := strings.IndexByte(v, 'd'); i > 0 {
		days, err := strconv.Atoi(v[:i])
		if err != nil {
			return 0, false, nil
		}
		d, rest = time.Duration(days)*24*time.Hour, v[i+1:]
	}
	if rest != "" {
		more, err := time.ParseDuration(rest)
		if err != nil {
			return 0, false, nil
		}
		d += more
	}
	if d < 0 || strings.HasPrefix(v, "-") {
		return 0, true, fmt.Errorf("a duration means that long ago and must not be negative")
	}
	return d, true, nil
}

func (o *workflowListOptions) filters() []dbos.ListWorkflowsOption {
	// Only a child's input is read: it holds the batch number.
	opts := []dbos.ListWorkflowsOption{dbos.WithFilterSortDesc(), dbos.WithFilterLoadOutput(false), dbos.WithFilterLoadInput(o.all)}
	if !o.all {
		opts = append(opts, dbos.WithFilterHasParent(false))
	}
	if len(o.statuses) > 0 {
		opts = append(opts, dbos.WithFilterStatus(o.statuses...))
	}
	if len(o.names) > 0 {
		opts = append(opts, dbos.WithFilterName(o.names...))
	}
	if len(o.executors) > 0 {
		opts = append(opts, dbos.WithFilterExecutorIDs(o.executors...))
	}
	if !o.since.IsZero() {
		opts = append(opts, dbos.WithFilterCreatedAfter(o.since))
	}
	if !o.until.IsZero() {
		opts = append(opts, dbos.WithFilterCreatedBefore(o.until))
	}
	if o.limit > 0 {
		opts = append(opts, dbos.WithFilterLimit(o.limit))
	}
	return opts
}

func runWorkflowList(ctx context.Context, o *workflowListOptions) error {
	in, err := openInspector(ctx, o.global)
	if err != nil {
		return noWorkflowsYet(err, o.global.io.Out, o.global.output == "json")
	}
	defer in.Close()
	wfs, err := dbos.ListWorkflows(in.client, o.filters()...)
	if err != nil {
		return fmt.Errorf("listing workflows: %w", err)
	}
	rows, err := in.rows(wfs)
	if err != nil {
		return err
	}
	if err := printWorkflowRows(in.io.Out, in.cfg.json, rows, "no workflows match"); err != nil {
		return err
	}
	if !in.cfg.json && o.limit > 0 && len(wfs) == o.limit {
		fmt.Fprintf(in.io.Err, "durlab: showing the newest %d; raise --limit (0: all) to see more\n", o.limit)
	}
	return nil
}
