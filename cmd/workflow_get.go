package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/dburl"
)

// workflowGetOptions are the arguments of `durlab workflow get`.
type workflowGetOptions struct {
	global *globalOptions
	id     string
}

func newWorkflowGetCmd(g *globalOptions, runF func(*workflowGetOptions) error) *cobra.Command {
	opts := &workflowGetOptions{global: g}
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one workflow's status",
		Long: fmt.Sprintf(`Show one workflow's status: name, status, executor, application version,
times, recovery attempts, queue, parent and batch number, child workflows,
error, and its input and output when they are under %d bytes (their size
otherwise). ID may be a unique prefix of a workflow ID, as in git.`, maxInlineBytes),
		Args: oneWorkflowID,
		RunE: func(c *cobra.Command, args []string) error {
			opts.id = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runWorkflowGet(c.Context(), opts)
		},
	}
}

// workflowDetail is `workflow get`'s JSON. The names are an interface.
type workflowDetail struct {
	workflowRow
	UpdatedAt   time.Time       `json:"updated_at,omitzero"`
	StartedAt   time.Time       `json:"started_at,omitzero"`
	CompletedAt time.Time       `json:"completed_at,omitzero"`
	Attempts    int             `json:"attempts"`
	ForkedFrom  string          `json:"forked_from,omitempty"`
	Error       string          `json:"error,omitempty"`
	InputBytes  int             `json:"input_bytes"`
	Input       json.RawMessage `json:"input,omitempty"`
	OutputBytes int             `json:"output_bytes"`
	Output      json.RawMessage `json:"output,omitempty"`
}

func detailOf(st dbos.WorkflowStatus) workflowDetail {
	d := workflowDetail{
		workflowRow: rowOf(st),
		UpdatedAt:   utc(st.UpdatedAt),
		StartedAt:   utc(st.StartedAt),
		CompletedAt: utc(st.CompletedAt),
		Attempts:    st.Attempts,
		ForkedFrom:  st.ForkedFrom,
	}
	d.Input, d.InputBytes = inlineJSON(st.Input)
	if st.Error != nil {
		// DBOS records the zero value as the output of a failed workflow: not shown.
		d.Error = dburl.Redact(st.Error.Error())
		return d
	}
	d.Output, d.OutputBytes = inlineJSON(st.Output)
	return d
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// encodedJSON is a recorded value as JSON. A DBOS client does not know the
// Go types, so DBOS hands back the JSON text it stored.
func encodedJSON(v any) json.RawMessage {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if json.Valid([]byte(x)) {
			return json.RawMessage(x)
		}
	case []byte:
		if json.Valid(x) {
			return json.RawMessage(x)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(fmt.Sprint(v))
	}
	return b
}

// inlineJSON is v's JSON (redacted) when it is small, and its size.
func inlineJSON(v any) (json.RawMessage, int) { return inlineRaw(encodedJSON(v)) }

// inlineRaw is raw (redacted) when it is small, and its size.
func inlineRaw(raw json.RawMessage) (json.RawMessage, int) {
	if raw == nil || len(raw) > maxInlineBytes {
		return nil, len(raw)
	}
	red := dburl.Redact(string(raw))
	if !json.Valid([]byte(red)) {
		return nil, len(raw)
	}
	return json.RawMessage(red), len(raw)
}

func runWorkflowGet(ctx context.Context, o *workflowGetOptions) error {
	in, err := openInspector(ctx, o.global)
	if err != nil {
		return err
	}
	defer in.Close()
	found, err := in.resolve(o.id)
	if err != nil {
		return err
	}
	st, err := in.lookup(found.ID, true)
	if err != nil {
		return err
	}
	d := detailOf(st)
	rows, err := in.rows([]dbos.WorkflowStatus{st})
	if err != nil {
		return err
	}
	d.Children = rows[0].Children
	if in.cfg.json {
		return json.NewEncoder(in.io.Out).Encode(d)
	}
	w := tabwriter.NewWriter(in.io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "id\t%s\n", d.WorkflowID)
	fmt.Fprintf(w, "name\t%s\n", d.Name)
	fmt.Fprintf(w, "status\t%s\n", d.Status)
	fmt.Fprintf(w, "executor\t%s\n", dash(d.ExecutorID))
	fmt.Fprintf(w, "app version\t%s\n", dash(d.AppVersion))
	fmt.Fprintf(w, "created\t%s\n", localTime(d.CreatedAt))
	fmt.Fprintf(w, "updated\t%s\n", localTime(d.UpdatedAt))
	fmt.Fprintf(w, "completed\t%s\n", localTime(d.CompletedAt))
	fmt.Fprintf(w, "recovery attempts\t%d (DBOS attempts: %d)\n", d.RecoveryAttempts, d.Attempts)
	fmt.Fprintf(w, "queue\t%s\n", dash(d.QueueName))
	fmt.Fprintf(w, "parent\t%s\n", dash(d.ParentWorkflowID))
	if d.Batch > 0 {
		fmt.Fprintf(w, "batch\t%d\n", d.Batch)
	}
	fmt.Fprintf(w, "children\t%d\n", d.Children)
	if d.ForkedFrom != "" {
		fmt.Fprintf(w, "forked from\t%s\n", d.ForkedFrom)
	}
	if d.Error != "" {
		// One attempt per line for a step that ran out of retries.
		fmt.Fprintf(w, "error\t%s\n", strings.ReplaceAll(strings.TrimSpace(d.Error), "\n", "\n\t"))
	}
	fmt.Fprintf(w, "input\t%s\n", valueText(d.Input, d.InputBytes))
	fmt.Fprintf(w, "output\t%s\n", valueText(d.Output, d.OutputBytes))
	return w.Flush()
}

// valueText is an inline value, its size when it is too big, or "-".
func valueText(raw json.RawMessage, size int) string {
	switch {
	case raw != nil:
		return string(raw)
	case size > 0:
		return fmt.Sprintf("(%d bytes, not shown)", size)
	default:
		return "-"
	}
}
