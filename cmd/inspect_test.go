package cmd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/durlab/durlab/cmd"
)

// run runs durlab in-process with buffers and returns its exit code,
// stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cmd.Run(context.Background(), args, cmd.IOStreams{Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// TestInspectUsageErrors: bad input to the inspection commands is one line on
// stderr and exit 2, before any database is opened or created.
func TestInspectUsageErrors(t *testing.T) {
	for _, k := range []string{"DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR"} {
		t.Setenv(k, "")
	}
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"unknown status", []string{"workflow", "list", "--status", "RUNNING"}, `unknown --status "RUNNING": use PENDING, ENQUEUED`},
		{"one bad status in a list", []string{"workflow", "list", "--status", "pending,nope"}, `unknown --status "nope"`},
		{"empty status", []string{"workflow", "list", "--status", ""}, `--status needs a status`},
		{"trailing comma in status", []string{"workflow", "list", "--status", "PENDING,"}, `unknown --status ""`},
		{"bad since", []string{"workflow", "list", "--since", "yesterday"}, `--since "yesterday": use a date`},
		{"negative since", []string{"workflow", "list", "--since", "-1h"}, `must not be negative`},
		{"bad until", []string{"workflow", "list", "--until", "2025-13-01"}, `--until "2025-13-01"`},
		{"since after until", []string{"workflow", "list", "--since", "1h", "--until", "2h"}, `must be before --until`},
		{"negative limit", []string{"workflow", "list", "--limit", "-1"}, `--limit must not be negative`},
		{"limit not a number", []string{"workflow", "list", "--limit", "ten"}, `invalid argument "ten"`},
		{"empty name", []string{"workflow", "list", "--name", ""}, `--name must not be empty`},
		{"empty executor", []string{"workflow", "list", "--executor", "a", "--executor", " "}, `--executor must not be empty`},
		{"list takes no args", []string{"workflow", "list", "x"}, `takes no arguments`},
		{"unknown subcommand", []string{"workflow", "nosuch"}, `unknown command "nosuch" for "durlab workflow"`},
		{"get without ID", []string{"workflow", "get"}, `needs exactly one workflow ID, got 0`},
		{"get with two IDs", []string{"workflow", "get", "a", "b"}, `needs exactly one workflow ID, got 2`},
		{"get with blank ID", []string{"workflow", "get", " "}, `needs exactly one workflow ID`},
		{"steps without ID", []string{"workflow", "steps"}, `needs exactly one workflow ID`},
		{"cancel without ID", []string{"workflow", "cancel"}, `needs exactly one workflow ID`},
		{"resume without ID", []string{"workflow", "resume"}, `needs exactly one workflow ID`},
		{"fork without ID", []string{"workflow", "fork", "--step", "1"}, `needs exactly one workflow ID`},
		{"fork negative step", []string{"workflow", "fork", "x", "--step", "-1"}, `--step must be 0 or more, got -1`},
		{"list-pending takes no args", []string{"list-pending", "x"}, `takes no arguments`},
		{"list-pending empty name", []string{"list-pending", "--name", ""}, `--name must not be empty`},
		{"list-pending unknown flag", []string{"list-pending", "--status", "PENDING"}, `unknown flag: --status`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			code, stdout, stderr := run(t, append(tt.args, "--data-dir", dir)...)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (stderr %q)", code, stderr)
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.stderr)
			}
			if strings.Count(stderr, "\n") != 1 || stdout != "" {
				t.Errorf("want one line on stderr and nothing on stdout, got stdout %q stderr %q", stdout, stderr)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("bad usage created the data folder %s", dir)
			}
		})
	}
}

// TestInspectEmptySystemDB: on a data folder with no system database yet,
// the listings say so, a workflow ID is not found, and nothing is created.
func TestInspectEmptySystemDB(t *testing.T) {
	for _, k := range []string{"DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR"} {
		t.Setenv(k, "")
	}
	dir := filepath.Join(t.TempDir(), "data")
	none := "the system database sqlite:" + filepath.Join(dir, "dbos.sqlite") + " does not exist yet: no durlab run has used it"
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"list-pending"}, 0, "no workflows: " + none + "\n", ""},
		{[]string{"list-pending", "--name", "recover.users_workflow"}, 0, "no workflows: " + none + "\n", ""},
		{[]string{"list-pending", "--output", "json"}, 0, "[]\n", ""},
		{[]string{"workflow", "list", "--status", "success,ERROR", "--since", "24h"}, 0, "no workflows: " + none + "\n", ""},
		{[]string{"workflow", "list", "-o", "json"}, 0, "[]\n", ""},
		{[]string{"workflow", "get", "nosuch"}, 2, "", "durlab: " + none + "\n"},
		{[]string{"workflow", "steps", "nosuch"}, 2, "", "durlab: " + none + "\n"},
		{[]string{"workflow", "cancel", "nosuch"}, 2, "", "durlab: " + none + "\n"},
		{[]string{"workflow", "resume", "nosuch"}, 2, "", "durlab: " + none + "\n"},
		{[]string{"workflow", "fork", "nosuch", "--step", "1"}, 2, "", "durlab: " + none + "\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := run(t, append(tt.args, "--data-dir", dir)...)
			if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
				t.Errorf("got exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
					code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a read-only command created the data folder %s", dir)
			}
		})
	}
}
