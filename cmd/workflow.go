package cmd

// The inspection and operations commands (list-pending and `durlab workflow
// ...`) work on a DBOS client, never on a launched DBOS context: Launch would
// recover this executor's pending workflows and run them, and an inspection
// must not run anything.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/internal/shell"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
	"github.com/durlab/durlab/workflows"
)

// clientShutdownTimeout bounds the client's shutdown; it runs no workflow,
// so it only closes connections.
const clientShutdownTimeout = 5 * time.Second

// maxInlineBytes is the largest input, output or step output printed whole.
const maxInlineBytes = 1024

func newWorkflowCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "workflow",
		Short: "Inspect and operate workflows in the system database",
		Long: `Inspect the workflows in the DBOS system database and operate on them, as the
DBOS CLI (dbos workflow ...) and the Temporal CLI do. These commands use a DBOS
client: they never launch DBOS, so they never recover or execute a workflow.
resume and fork only enqueue: the workflow runs in the next durlab process
that serves DBOS's queues (an experiment while it runs, or durlab worker).`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	c.AddCommand(
		newWorkflowListCmd(g, nil),
		newWorkflowGetCmd(g, nil),
		newWorkflowStepsCmd(g, nil),
		newWorkflowTraceCmd(g, nil),
		newWorkflowCancelCmd(g, nil),
		newWorkflowResumeCmd(g, nil),
		newWorkflowForkCmd(g, nil),
		newWorkflowAdoptCmd(g, nil),
	)
	return c
}

// noArgs is cobra.NoArgs as a usage error (exit 2).
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 && c.HasSubCommands() {
		return usagef("unknown command %q for %q (see %s --help)", args[0], c.CommandPath(), c.CommandPath())
	}
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q (see %s --help)", c.CommandPath(), args[0], c.CommandPath())
	}
	return nil
}

// checkNotEmpty rejects a list flag that was given but names nothing, or
// names "".
func checkNotEmpty(c *cobra.Command, flag string, vals []string) error {
	if !c.Flags().Changed(flag) {
		return nil
	}
	if len(vals) == 0 {
		return usagef("--%s must not be empty", flag)
	}
	for _, v := range vals {
		if strings.TrimSpace(v) == "" {
			return usagef("--%s must not be empty", flag)
		}
	}
	return nil
}

// oneWorkflowID accepts exactly one well-formed workflow ID or ID prefix:
// not empty, and no blank or control character, which no workflow ID that
// durlab or DBOS makes holds. Whether it names a workflow is for the
// command to find out (exit 1 when it does not, as gh and kubectl do).
func oneWorkflowID(c *cobra.Command, args []string) error {
	if len(args) != 1 || strings.TrimSpace(args[0]) == "" {
		return usagef("%s needs exactly one workflow ID, got %s (see %s --help)", c.CommandPath(), lab.Count(len(args), "argument", "arguments"), c.CommandPath())
	}
	if i := strings.IndexFunc(args[0], func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return usagef("%q is not a workflow ID: it holds a blank or control character", args[0])
	}
	return nil
}

// inspector is an open DBOS client and the resolved configuration.
type inspector struct {
	client dbos.Client
	cfg    resolved
	io     IOStreams
}

// openInspector resolves the shared flags and opens a DBOS client on the
// system database. A fresh system database is migrated first, because a
// client only verifies the schema; nothing is launched, so nothing is
// recovered.
func openInspector(ctx context.Context, g *globalOptions) (*inspector, error) {
	cfg, err := g.resolveFor(false)
	if err != nil {
		return nil, err
	}
	return openClient(ctx, cfg, g.io)
}

// openClient opens a DBOS client on the resolved system database.
func openClient(ctx context.Context, cfg resolved, io IOStreams) (*inspector, error) {
	// Reading must not create: DBOS would make a missing database (and
	// its folder) on the way to finding nothing in it.
	exists, err := lab.SystemDBExists(ctx, cfg.systemDB)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, errNoSystemDB{dburl.Redacted(cfg.systemDB)}
	}
	cfg.hold() // DBOS's own lines for an error NewClient returns anyway
	migrate := func() error { return dbos.Migrate(ctx, cfg.systemDB, dbos.WithMigrateLogger(cfg.logger)) }
	if err := lab.WithMigrationLock(ctx, cfg.systemDB, migrate); err != nil {
		if errors.Is(err, store.ErrEnvironment) {
			return nil, err // unreachable or broken: exit 4, not bad usage
		}
		// A role without DDL rights can still read a migrated database:
		// the client's own check says what is wrong if it cannot.
		cfg.logger.Debug("could not migrate the system database; opening it as it is", slog.Any("error", err))
	}
	client, err := dbos.NewClient(ctx, dbos.ClientConfig{
		DatabaseURL: cfg.systemDB,
		AppName:     lab.AppName,
		Logger:      cfg.logger,
	})
	if err != nil {
		return nil, lab.SystemDBError(cfg.systemDB, err)
	}
	cfg.flush()
	return &inspector{client: client, cfg: cfg, io: io}, nil
}

// Close shuts the client down: its connections and notification listener.
func (in *inspector) Close() {
	in.cfg.quiet() // a Postgres client logs its cancelled notification listener
	if err := in.client.Shutdown(in.client, clientShutdownTimeout); err != nil {
		in.cfg.logger.Warn("closing the DBOS client", slog.Any("error", err))
	}
}

// lookup reads one workflow's status, with its input and output if load.
// A missing workflow is errWorkflowNotFound.
func (in *inspector) lookup(id string, load bool) (dbos.WorkflowStatus, error) {
	wfs, err := dbos.ListWorkflows(in.client, dbos.WithFilterWorkflowIDs(id),
		dbos.WithFilterLoadInput(load), dbos.WithFilterLoadOutput(load))
	if err != nil {
		return dbos.WorkflowStatus{}, fmt.Errorf("reading workflow %s: %w", id, err)
	}
	if len(wfs) == 0 {
		return dbos.WorkflowStatus{}, errWorkflowNotFound(id)
	}
	return wfs[0], nil
}

// errWorkflowNotFound: a well-formed ID (or prefix) that names no workflow.
// It is not a usage error: the command was right, the workflow is not
// there (exit 1, as gh and kubectl answer).
func errWorkflowNotFound(id string) error {
	return notFoundError{id}
}

type notFoundError struct{ id string }

func (e notFoundError) Error() string { return fmt.Sprintf("workflow %s not found", e.id) }

// notFound turns DBOS's missing-workflow error into errWorkflowNotFound.
func notFound(id string, err error) error {
	if errors.Is(err, dbos.ErrNonExistentWorkflow) {
		return errWorkflowNotFound(id)
	}
	return err
}

// workflowRow is one workflow in a listing. The JSON names are an interface.
type workflowRow struct {
	WorkflowID string    `json:"workflow_id"`
	Name       string    `json:"name"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	// RecoveryAttempts is DBOS's dispatch counter minus the first run.
	RecoveryAttempts int    `json:"recovery_attempts"`
	ExecutorID       string `json:"executor_id"`
	AppVersion       string `json:"app_version"`
	QueueName        string `json:"queue_name,omitempty"`
	// Children counts the child workflows it started; a child's parent and
	// batch number (from its input) say where it stands in its run.
	Children         int    `json:"children"`
	ParentWorkflowID string `json:"parent_workflow_id,omitempty"`
	Batch            int    `json:"batch,omitempty"`
}

func rowOf(st dbos.WorkflowStatus) workflowRow {
	return workflowRow{
		WorkflowID:       st.ID,
		Name:             st.Name,
		Status:           string(st.Status),
		CreatedAt:        st.CreatedAt.UTC(),
		RecoveryAttempts: recoveryAttempts(st),
		ExecutorID:       st.ExecutorID,
		AppVersion:       st.ApplicationVersion,
		QueueName:        st.QueueName,
		ParentWorkflowID: st.ParentWorkflowID,
		Batch:            batchOf(st),
	}
}

// batchOf is a batch child workflow's batch number, read from its recorded
// input (DBOS names a child after its parent and the step that started it,
// not after its batch); 0 for any other workflow, or an input not loaded.
func batchOf(st dbos.WorkflowStatus) int {
	text, ok := st.Input.(string)
	if st.ParentWorkflowID == "" || !ok {
		return 0
	}
	var in lab.BatchInput
	if json.Unmarshal([]byte(text), &in) != nil {
		return 0
	}
	return in.Batch
}

// recoveryAttempts: DBOS counts every dispatch of a workflow, the first run
// included.
func recoveryAttempts(st dbos.WorkflowStatus) int {
	return max(st.Attempts-1, 0)
}

// rows makes the listing's rows of wfs, each with its number of children.
func (in *inspector) rows(wfs []dbos.WorkflowStatus) ([]workflowRow, error) {
	rows := make([]workflowRow, 0, len(wfs))
	if len(wfs) == 0 {
		return rows, nil
	}
	children, err := dbos.ListWorkflows(in.client, dbos.WithFilterParentWorkflowID(idsOf(wfs)...),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return nil, fmt.Errorf("counting child workflows: %w", err)
	}
	count := map[string]int{}
	for _, c := range children {
		count[c.ParentWorkflowID]++
	}
	for _, st := range wfs {
		r := rowOf(st)
		r.Children = count[st.ID]
		rows = append(rows, r)
	}
	return rows, nil
}

func idsOf(wfs []dbos.WorkflowStatus) []string {
	ids := make([]string, len(wfs))
	for i, w := range wfs {
		ids[i] = w.ID
	}
	return ids
}

// printWorkflowRows prints a listing as a table or a JSON array; empty is
// the line printed in text mode when there is no row. A BATCH column
// appears when a row is a batch child workflow.
func printWorkflowRows(w io.Writer, asJSON bool, rows []workflowRow, empty string) error {
	if rows == nil {
		rows = []workflowRow{}
	}
	if asJSON {
		return json.NewEncoder(w).Encode(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, empty)
		return err
	}
	batches := slices.ContainsFunc(rows, func(r workflowRow) bool { return r.Batch > 0 })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "ID\tNAME\tSTATUS\tCREATED\tCHILDREN\tRECOVERY ATTEMPTS\tEXECUTOR\tAPP VERSION"
	if batches {
		header = "ID\tNAME\tBATCH\tSTATUS\tCREATED\tCHILDREN\tRECOVERY ATTEMPTS\tEXECUTOR\tAPP VERSION"
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t", r.WorkflowID, r.Name)
		if batches {
			fmt.Fprintf(tw, "%s\t", dash(batchText(r.Batch)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", r.Status, localTime(r.CreatedAt), r.Children, r.RecoveryAttempts,
			dash(r.ExecutorID), dash(r.AppVersion))
	}
	return tw.Flush()
}

func batchText(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

// localTime is t in RFC3339 in the local zone, or "-" when unset.
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// experimentOf names the durlab command whose process runs workflow name.
func experimentOf(name string) (string, bool) {
	e, ok := workflows.ExperimentOf(name)
	if !ok {
		return "", false
	}
	return e.Name, true
}

// whereItRuns says which process will run an enqueued workflow: any durlab
// process of its application version dequeues it, whatever its executor ID.
func whereItRuns(st dbos.WorkflowStatus) string {
	if st.ApplicationVersion != "" && st.ApplicationVersion != lab.AppVersion {
		return fmt.Sprintf("its application version is %s, but this durlab runs %s: no durlab process of this build will run it (fork it with --app-version %s)",
			st.ApplicationVersion, lab.AppVersion, lab.AppVersion)
	}
	run := "`durlab <experiment>`"
	if exp, ok := experimentOf(st.Name); ok {
		run = fmt.Sprintf("`durlab %s`", exp)
	}
	return fmt.Sprintf("nothing runs it yet: the next durlab process of version %s to start (%s, another experiment, or `durlab worker`) dequeues it; if that process ends first, the workflow stays PENDING on its executor ID and the same command run again recovers it; follow it with `%s`",
		lab.AppVersion, run, shell.Join("durlab", "workflow", "get", st.ID))
}

// errNoSystemDB: the system database does not exist yet, so it holds no
// workflow. Listings print nothing; looking one workflow up is a usage error.
type errNoSystemDB struct{ where string }

func (e errNoSystemDB) Error() string {
	return fmt.Sprintf("the system database %s does not exist yet: no durlab run has used it", e.where)
}

// noWorkflowsYet prints an empty listing when err is errNoSystemDB, and
// otherwise returns err as a usage error or as it is.
func noWorkflowsYet(err error, out io.Writer, asJSON bool) error {
	var none errNoSystemDB
	if !errors.As(err, &none) {
		return err
	}
	return printWorkflowRows(out, asJSON, nil, "no workflows: "+none.Error())
}
