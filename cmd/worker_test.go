package cmd

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/durlab/durlab/lab"
)

// TestWorkerFlags parses worker's flags into options without running
// anything; bad input is a usage error (exit 2) with one line.
func TestWorkerFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		errLine string // "" when the flags are valid
		check   func(t *testing.T, o *workerOptions)
	}{
		{name: "defaults", args: []string{"--queue", "batches"}, check: func(t *testing.T, o *workerOptions) {
			if o.queue != "batches" || o.concurrency != 0 || o.faults != (lab.Faults{Attempts: 10}) || o.adoptAfter != 10*time.Second {
				t.Errorf("options %+v", o)
			}
		}},
		{name: "concurrency and faults", args: []string{"--queue", "q", "--concurrency", "8", "--fail-prob", "0.4", "--commit-crash-prob", "0.1", "--attempts", "3"},
			check: func(t *testing.T, o *workerOptions) {
				want := lab.Faults{FailProb: 0.4, CommitCrashProb: 0.1, Attempts: 3}
				if o.concurrency != 8 || o.faults != want {
					t.Errorf("options %+v", o)
				}
			}},
		{name: "adoption off", args: []string{"--queue", "q", "--adopt-after", "0"}, check: func(t *testing.T, o *workerOptions) {
			if o.adoptAfter != 0 {
				t.Errorf("adopt-after %s", o.adoptAfter)
			}
		}},
		{name: "adopt after a minute", args: []string{"--queue", "q", "--adopt-after", "1m"}, check: func(t *testing.T, o *workerOptions) {
			if o.adoptAfter != time.Minute {
				t.Errorf("adopt-after %s", o.adoptAfter)
			}
		}},
		{name: "adopt too soon", args: []string{"--queue", "q", "--adopt-after", "4s"}, errLine: "--adopt-after must be 0 (never adopt) or at least 5s, got 4s"},
		{name: "negative adopt-after", args: []string{"--queue", "q", "--adopt-after", "-5s"}, errLine: "--adopt-after must be 0 (never adopt) or at least 5s, got -5s"},
		{name: "no queue", args: nil, errLine: "worker needs --queue NAME"},
		{name: "empty queue", args: []string{"--queue", " "}, errLine: "--queue: bad queue name: the queue name is empty"},
		{name: "reserved queue", args: []string{"--queue", "_dbos_internal_queue"}, errLine: `is reserved`},
		{name: "zero concurrency", args: []string{"--queue", "q", "--concurrency", "0"}, errLine: "--concurrency must be at least 1, got 0"},
		{name: "negative concurrency", args: []string{"--queue", "q", "--concurrency", "-2"}, errLine: "--concurrency must be at least 1, got -2"},
		{name: "bad probability", args: []string{"--queue", "q", "--fail-prob", "1.5"}, errLine: "--fail-prob must be between 0 and 1, got 1.5"},
		{name: "no attempts", args: []string{"--queue", "q", "--attempts", "0"}, errLine: "--attempts must be at least 1, got 0"},
		{name: "arguments", args: []string{"--queue", "q", "extra"}, errLine: "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errb bytes.Buffer
			g := &globalOptions{io: IOStreams{Out: &bytes.Buffer{}, Err: &errb}}
			var got *workerOptions
			c := newWorkerCmdF(g, func(o *workerOptions) error { got = o; return nil })
			c.SetArgs(tt.args)
			c.SetOut(&bytes.Buffer{})
			c.SetErr(&bytes.Buffer{})
			c.SilenceErrors, c.SilenceUsage = true, true
			err := c.ExecuteContext(context.Background())
			if tt.errLine == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.check(t, got)
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.errLine)
			}
			var stderr bytes.Buffer
			if code := exitCode(err, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if line := stderr.String(); !strings.Contains(line, tt.errLine) || strings.Count(line, "\n") != 1 {
				t.Errorf("stderr %q, want one line with %q", line, tt.errLine)
			}
			if got != nil {
				t.Errorf("ran with invalid flags")
			}
		})
	}
}

func TestDefaultWorkerID(t *testing.T) {
	a, b := defaultWorkerID("batches"), defaultWorkerID("other")
	if a == b || !strings.HasPrefix(a, "durlab-worker-") || !strings.HasSuffix(a, "-batches") {
		t.Errorf("defaultWorkerID: %q, %q", a, b)
	}
	if a != defaultWorkerID("batches") {
		t.Errorf("defaultWorkerID is not stable")
	}
}

// TestWorkflowAdoptArgs: workflow adopt takes exactly one executor ID.
func TestWorkflowAdoptArgs(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		errLine string
	}{
		{[]string{"w1"}, ""},
		{nil, "workflow adopt needs exactly one executor ID, got 0 argument(s)"},
		{[]string{"w1", "w2"}, "needs exactly one executor ID, got 2 argument(s)"},
		{[]string{" "}, "needs exactly one executor ID"},
	} {
		var errb bytes.Buffer
		g := &globalOptions{io: IOStreams{Out: &bytes.Buffer{}, Err: &errb}}
		var got *workflowAdoptOptions
		root := newWorkflowCmd(g)
		for _, c := range root.Commands() {
			if c.Name() == "adopt" {
				root.RemoveCommand(c)
			}
		}
		root.AddCommand(newWorkflowAdoptCmd(g, func(o *workflowAdoptOptions) error { got = o; return nil }))
		root.SetArgs(append([]string{"adopt"}, tt.args...))
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SilenceErrors, root.SilenceUsage = true, true
		err := root.ExecuteContext(context.Background())
		if tt.errLine == "" {
			if err != nil || got == nil || got.executor != tt.args[0] {
				t.Errorf("%q: %v, %+v", tt.args, err, got)
			}
			continue
		}
		var stderr bytes.Buffer
		if code := exitCode(err, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tt.errLine) || got != nil {
			t.Errorf("%q: exit %d, %q, ran %v; want exit 2 and %q", tt.args, code, stderr.String(), got != nil, tt.errLine)
		}
	}
}
