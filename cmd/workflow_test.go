package cmd

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

func TestParseTimeFlag(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"1h", now.Add(-time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"0s", now, true},
		{"2025-05-31T08:30:00Z", time.Date(2025, 5, 31, 8, 30, 0, 0, time.UTC), true},
		{"2025-05-31T10:30:00+02:00", time.Date(2025, 5, 31, 8, 30, 0, 0, time.UTC), true},
		{"-1h", time.Time{}, false},
		{"1d", now.Add(-24 * time.Hour), true},
		{"1d12h", now.Add(-36 * time.Hour), true},
		{"-2d", time.Time{}, false},
		{"2d3", time.Time{}, false},
		{"2025-05-31", time.Date(2025, 5, 31, 0, 0, 0, 0, time.UTC), true},
		{"2025-05-31 14:30", time.Date(2025, 5, 31, 14, 30, 0, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseTimeFlag("--since", tt.in, now)
		if (err == nil) != tt.ok {
			t.Errorf("parseTimeFlag(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		var ue usageError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("parseTimeFlag(%q) error %v is not a usage error", tt.in, err)
		}
		if tt.ok && !got.Equal(tt.want) {
			t.Errorf("parseTimeFlag(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseStatuses(t *testing.T) {
	got, err := parseStatuses([]string{"pending", " ENQUEUED ", "max_recovery_attempts_exceeded"})
	want := []dbos.WorkflowStatusType{dbos.WorkflowStatusPending, dbos.WorkflowStatusEnqueued, dbos.WorkflowStatusMaxRecoveryAttemptsExceeded}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseStatuses = %v, %v; want %v", got, err, want)
	}
	if _, err := parseStatuses([]string{"SUCCESS", "DONE"}); err == nil || !strings.Contains(err.Error(), `"DONE"`) {
		t.Errorf("parseStatuses(DONE) error %v, want one naming DONE", err)
	}
}

// TestStepAttempts pins how `workflow steps` counts attempts, which DBOS
// does not record.
func TestStepAttempts(t *testing.T) {
	maxRetries := &dbos.Error{
		Code:       dbos.ErrorCodeMaxStepRetriesExceeded,
		MaxRetries: 2,
		Message: "Step write_page_0 has exceeded its maximum of 2 retries: injected failure after writing page 0 (attempt 1)\n" +
			"UNIQUE constraint failed: users.id\nUNIQUE constraint failed: users.id",
	}
	multiline := &dbos.Error{Code: dbos.ErrorCodeMaxStepRetriesExceeded, MaxRetries: 1,
		Message: "Step s has exceeded its maximum of 1 retries: first\nline two of first\nsecond"}
	tests := []struct {
		name   string
		step   dbos.StepInfo
		want   int
		listed int
	}{
		{"output with attempts", dbos.StepInfo{Output: `{"rows":10,"attempts":4}`}, 4, 0},
		{"output without attempts", dbos.StepInfo{Output: `{"rows":10}`}, 1, 0},
		{"attempts not an integer", dbos.StepInfo{Output: `{"attempts":2.5}`}, 1, 0},
		{"attempts zero", dbos.StepInfo{Output: `{"attempts":0}`}, 1, 0},
		{"scalar output", dbos.StepInfo{Output: `10`}, 1, 0},
		{"no output", dbos.StepInfo{}, 1, 0},
		{"max retries", dbos.StepInfo{Output: `0`, Error: maxRetries}, 3, 3},
		{"max retries, an attempt's error spans lines", dbos.StepInfo{Error: multiline}, 2, 0},
		{"wrapped max retries", dbos.StepInfo{Error: errors.Join(errors.New("context"), maxRetries)}, 3, 3},
		{"plain error", dbos.StepInfo{Error: errors.New("boom\nagain")}, 1, 0},
	}
	for _, tt := range tests {
		r := stepRowOf(tt.step)
		if r.Attempts != tt.want || len(r.attemptErrors) != tt.listed {
			t.Errorf("%s: attempts %d (%d listed), want %d (%d listed)", tt.name, r.Attempts, len(r.attemptErrors), tt.want, tt.listed)
		}
		if tt.step.Error != nil && (r.Outcome != "error" || r.OutputBytes != 0 || r.Output != nil) {
			t.Errorf("%s: a failed step shows outcome %q and %d output bytes", tt.name, r.Outcome, r.OutputBytes)
		}
	}
}

func TestInlineJSON(t *testing.T) {
	raw, n := inlineJSON(`{"seed":1,"pages":2}`)
	if string(raw) != `{"seed":1,"pages":2}` || n != 20 {
		t.Errorf("inlineJSON(JSON text) = %s, %d", raw, n)
	}
	raw, n = inlineJSON(`postgres://u:secret@h/db`) // not JSON: quoted, and redacted
	if string(raw) != `"postgres://u:xxxxx@h/db"` || n != 26 {
		t.Errorf("inlineJSON(URL) = %s, %d", raw, n)
	}
	raw, n = inlineJSON(`"` + strings.Repeat("x", maxInlineBytes) + `"`)
	if raw != nil || n != maxInlineBytes+2 {
		t.Errorf("inlineJSON(big) = %d bytes shown, size %d", len(raw), n)
	}
	if raw, n := inlineJSON(nil); raw != nil || n != 0 {
		t.Errorf("inlineJSON(nil) = %s, %d", raw, n)
	}
}

func TestExperimentOf(t *testing.T) {
	for name, want := range map[string]string{"recover.users_workflow": "recover", "retry-bad.users_workflow": "retry-bad", "nosuch.wf": "", "plain": ""} {
		got, ok := experimentOf(name)
		if got != want || ok != (want != "") {
			t.Errorf("experimentOf(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}
