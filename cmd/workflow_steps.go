package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"

	"github.com/durlab/durlab/dburl"
)

// workflowStepsOptions are the arguments of `durlab workflow steps`.
type workflowStepsOptions struct {
	global *globalOptions
	id     string
}

func newWorkflowStepsCmd(g *globalOptions, runF func(*workflowStepsOptions) error) *cobra.Command {
	opts := &workflowStepsOptions{global: g}
	return &cobra.Command{
		Use:   "steps ID",
		Short: "List a workflow's recorded steps with their outcomes",
		Long: `List the steps DBOS recorded for a workflow, one row per step: its ID (the
number fork --step takes), name, attempts, outcome (output size in bytes, or
the error), start time, duration, and the child workflow it started.

DBOS records one outcome per step, not its attempts, so ATTEMPTS is derived:
  - the step's output is a JSON object with an integer "attempts" field: that;
  - the step ran out of retries: the attempt errors DBOS lists in its
    max-retries error (its retries + 1);
  - otherwise 1.
A step that failed without retries shows 1. A step in progress, or one whose
process died before it finished, is not recorded.

ID may be a unique prefix of a workflow ID, as in git.`,
		Args: oneWorkflowID,
		RunE: func(c *cobra.Command, args []string) error {
			opts.id = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runWorkflowSteps(c.Context(), opts)
		},
	}
}

// stepRow is one step in `workflow steps`. The JSON names are an interface.
type stepRow struct {
	StepID          int             `json:"step_id"`
	Name            string          `json:"name"`
	Attempts        int             `json:"attempts"`
	Outcome         string          `json:"outcome"` // "success" or "error"
	OutputBytes     int             `json:"output_bytes"`
	Output          json.RawMessage `json:"output,omitempty"`
	Error           string          `json:"error,omitempty"`
	StartedAt       time.Time       `json:"started_at,omitzero"`
	CompletedAt     time.Time       `json:"completed_at,omitzero"`
	DurationMS      float64         `json:"duration_ms"`
	ChildWorkflowID string          `json:"child_workflow_id,omitempty"`

	// attemptErrors are the errors of each attempt, when DBOS listed them.
	attemptErrors []string
}

func stepRowOf(s dbos.StepInfo) stepRow {
	r := stepRow{
		StepID:          s.StepID,
		Name:            s.StepName,
		Outcome:         "success",
		StartedAt:       utc(s.StartedAt),
		CompletedAt:     utc(s.CompletedAt),
		ChildWorkflowID: s.ChildWorkflowID,
	}
	if !s.StartedAt.IsZero() && !s.CompletedAt.IsZero() {
		r.DurationMS = float64(s.CompletedAt.Sub(s.StartedAt).Microseconds()) / 1000
	}
	r.Attempts = 1
	if s.Error != nil {
		// DBOS records the zero value as the output of a failed step: not shown.
		r.Outcome = "error"
		r.Error = dburl.Redact(s.Error.Error())
		if n, errs := retriedAttempts(s.Error); n > 0 {
			r.Attempts, r.attemptErrors = n, errs
		}
		return r
	}
	raw := encodedJSON(s.Output)
	r.Output, r.OutputBytes = inlineRaw(raw)
	if n, ok := attemptsField(raw); ok {
		r.Attempts = n
	}
	return r
}

// attemptsField reads an integer "attempts" field of a JSON object output.
func attemptsField(raw json.RawMessage) (int, bool) {
	var obj map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return 0, false
	}
	var n int
	if f, ok := obj["attempts"]; !ok || json.Unmarshal(f, &n) != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// retriedAttempts counts the attempts of a step that ran out of retries:
// DBOS's error lists every attempt's error, one per line, after its
// "...maximum of N retries: " message, and records N. It returns 0 for any
// other error.
func retriedAttempts(err error) (int, []string) {
	var de *dbos.Error
	if !errors.As(err, &de) || !errors.Is(err, dbos.ErrMaxStepRetriesExceeded) {
		return 0, nil
	}
	var listed []string
	prefix := fmt.Sprintf("maximum of %d retries: ", de.MaxRetries)
	if _, rest, ok := strings.Cut(de.Message, prefix); ok {
		listed = strings.Split(strings.TrimSpace(rest), "\n")
	}
	switch {
	case de.MaxRetries > 0 && len(listed) != de.MaxRetries+1:
		// An attempt's own error spans lines: trust the recorded budget.
		return de.MaxRetries + 1, nil
	case len(listed) > 0:
		return len(listed), listed
	default:
		return de.MaxRetries + 1, nil
	}
}

func runWorkflowSteps(ctx context.Context, o *workflowStepsOptions) error {
	in, err := openInspector(ctx, o.global)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.resolve(o.id)
	if err != nil {
		return err
	}
	steps, err := dbos.GetWorkflowSteps(in.client, st.ID, dbos.WithStepsLoadOutput(true))
	if err != nil {
		return fmt.Errorf("reading the steps of workflow %s: %w", st.ID, notFound(st.ID, err))
	}
	rows := make([]stepRow, 0, len(steps))
	for _, s := range steps {
		rows = append(rows, stepRowOf(s))
	}
	if in.cfg.json {
		return json.NewEncoder(in.io.Out).Encode(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintf(in.io.Out, "workflow %s (%s) has no recorded step\n", st.ID, st.Status)
		return err
	}
	return printSteps(in.io.Out, rows)
}

func printSteps(out io.Writer, rows []stepRow) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STEP\tNAME\tATTEMPTS\tOUTCOME\tSTARTED\tDURATION\tCHILD WORKFLOW")
	for _, r := range rows {
		fmt.Fprintf(w, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", r.StepID, r.Name, r.Attempts, outcomeText(r),
			localTime(r.StartedAt), durationText(r), dash(r.ChildWorkflowID))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// The full errors, attempt by attempt: the table shows one line each.
	for _, r := range rows {
		if r.Error == "" {
			continue
		}
		fmt.Fprintf(out, "\nstep %d %s failed after %d attempt%s:\n", r.StepID, r.Name, r.Attempts, plural(r.Attempts, "", "s"))
		if len(r.attemptErrors) > 0 {
			for i, e := range r.attemptErrors {
				fmt.Fprintf(out, "  attempt %d: %s\n", i+1, dburl.Redact(e))
			}
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(r.Error), "\n") {
			fmt.Fprintf(out, "  %s\n", line)
		}
	}
	return nil
}

// outcomeText is the OUTCOME cell: the output's size, or the error's first
// line.
func outcomeText(r stepRow) string {
	if r.Error == "" {
		if r.OutputBytes == 0 {
			return "ok, no output"
		}
		return fmt.Sprintf("ok, %d bytes", r.OutputBytes)
	}
	if len(r.attemptErrors) > 0 {
		return "error: out of retries (attempts below)"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(r.Error), "\n")
	const maxCell = 60
	if r := []rune(first); len(r) > maxCell {
		first = string(r[:maxCell-3]) + "..."
	}
	return "error: " + first
}

func durationText(r stepRow) string {
	if r.StartedAt.IsZero() || r.CompletedAt.IsZero() {
		return "-"
	}
	// DBOS records step times in milliseconds.
	d := r.CompletedAt.Sub(r.StartedAt).Round(time.Millisecond)
	if d == 0 {
		return "<1ms"
	}
	return d.String()
}
