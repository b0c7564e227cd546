package trace

import (
	"testing"
	"time"
)

// A killed execution's duration runs to its last record, not to the moment
// of the trace; a running one's runs to now.
func TestDurationOfAnExecutionWithNoEnd(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := start.Add(48 * time.Second)
	killed := &Execution{Start: start, LastSeen: start.Add(120 * time.Millisecond), Outcome: "killed"}
	if d := killed.Duration(later); d != 120*time.Millisecond {
		t.Errorf("killed execution: %s, want 120ms to its last record", d)
	}
	running := &Execution{Start: start, LastSeen: start.Add(120 * time.Millisecond), Outcome: "running"}
	if d := running.Duration(later); d != 48*time.Second {
		t.Errorf("running execution: %s, want 48s to the trace's moment", d)
	}
}
