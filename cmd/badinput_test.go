package cmd_test

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBadInputMatrix gives every flag and environment variable an invalid
// value, and points durlab at databases it cannot use. Each case must exit
// with its code, say one line on stderr with no stack trace, and leave what
// an earlier run stored exactly as it was.
func TestBadInputMatrix(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, k := range []string{"DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR", "DURLAB_EXECUTOR_ID"} {
		t.Setenv(k, "")
	}
	code, setup, stderr := run(t, "basic", "--seed", "1", "--output", "json")
	if code != 0 {
		t.Fatalf("setup run: exit %d: %s", code, stderr)
	}
	var basic struct {
		WorkflowID string `json:"workflow_id"`
	}
	if err := json.Unmarshal([]byte(setup), &basic); err != nil || basic.WorkflowID == "" {
		t.Fatalf("setup run's report %q: %v", setup, err)
	}
	basicID := basic.WorkflowID
	before := snapshot(t, dir)

	os.WriteFile("afile", []byte("in the way"), 0o600)
	os.WriteFile("garbage.db", bytes.Repeat([]byte("not a database "), 100), 0o600)
	foreign, _ := sql.Open("sqlite3", "foreign.db")
	foreign.Exec(`CREATE TABLE users (email TEXT PRIMARY KEY)`)
	foreign.Close()

	const unreachablePG = "postgres://durlab:s3cr3tpw@127.0.0.1:1/durlab?connect_timeout=2"
	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string // a fragment of the one stderr line
	}{
		{"negative pages", nil, []string{"basic", "--pages", "-1"}, 2, "--pages must be at least 1"},
		{"pages not a number", nil, []string{"basic", "--pages", "ten"}, 2, `invalid argument "ten"`},
		{"zero page size", nil, []string{"recover", "--page-size", "0"}, 2, "--page-size must be at least 1"},
		{"zero batches", nil, []string{"dedup", "--batches", "0"}, 2, "--batches must be at least 1"},
		{"zero attempts", nil, []string{"retry-bad", "--attempts", "0"}, 2, "--attempts must be at least 1"},
		{"fail-prob above 1", nil, []string{"dedup", "--fail-prob", "2"}, 2, "--fail-prob must be between 0 and 1"},
		{"fail-prob NaN", nil, []string{"retry-bad", "--fail-prob", "NaN"}, 2, "--fail-prob must be between 0 and 1"},
		{"negative crash-prob", nil, []string{"split-steps", "--crash-prob", "-0.5"}, 2, "--crash-prob must be between 0 and 1"},
		{"gen-fail-prob above 1", nil, []string{"exactly-once", "--gen-fail-prob", "1.01"}, 2, "--gen-fail-prob must be between 0 and 1"},
		{"commit-crash-prob not a number", nil, []string{"dedup", "--commit-crash-prob", "often"}, 2, `invalid argument "often"`},
		{"negative crash-after", nil, []string{"dedup", "--crash-after", "-1"}, 2, "--crash-after must not be negative"},
		{"negative recovery attempts", nil, []string{"recover", "--max-recovery-attempts", "-1"}, 2, "--max-recovery-attempts must not be negative"},
		{"negative wait", nil, []string{"recover", "--wait", "-1s"}, 2, "--wait must not be negative"},
		{"wait not a duration", nil, []string{"recover", "--wait", "soon"}, 2, `invalid argument "soon"`},
		{"seed not a number", nil, []string{"basic", "--seed", "lucky"}, 2, `invalid argument "lucky"`},
		{"flag of another experiment", nil, []string{"basic", "--crash-prob", "0.5"}, 2, "unknown flag: --crash-prob"},
		{"unknown output", nil, []string{"basic", "--output", "yaml"}, 2, `unknown --output "yaml"`},
		{"unknown log level", nil, []string{"basic", "--log-level", "loud"}, 2, `unknown --log-level "loud"`},
		{"stray argument", nil, []string{"basic", "extra"}, 2, `durlab basic takes no arguments, got "extra"`},
		{"stray argument to profile", nil, []string{"profile", "extra"}, 2, `durlab profile takes no arguments, got "extra"`},
		{"unknown command", nil, []string{"nosuch"}, 2, `unknown command "nosuch"`},
		{"run unknown experiment", nil, []string{"run", "nosuch", "--until-success"}, 2, `unknown experiment "nosuch" for run`},
		{"run negative max-restarts", nil, []string{"run", "dedup", "--max-restarts", "-1"}, 2, "--max-restarts must not be negative"},
		{"run bad fail-prob", nil, []string{"run", "dedup", "--until-success", "--fail-prob", "2"}, 2, "--fail-prob must be between 0 and 1"},
		{"compare bad args", nil, []string{"compare", "basic", "dedup"}, 2, "compare takes no argument or two"},
		{"system-db of another kind", nil, []string{"basic", "--system-db", "mysql://root:hunter2@db/x"}, 2, "unsupported database URL"},
		{"system-db not a URL", nil, []string{"basic", "--system-db", "dbos.sqlite"}, 2, "is not a database URL"},
		{"system-db unreachable", nil, []string{"basic", "--system-db", unreachablePG}, 4, "the system database postgres://durlab:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"store unreachable", nil, []string{"basic", "--store", unreachablePG}, 4, "the store postgres://durlab:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"inspection, system-db unreachable", nil, []string{"list-pending", "--system-db", unreachablePG}, 4, "the system database postgres://durlab:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"workflow list, system-db unreachable", nil, []string{"workflow", "list", "--system-db", unreachablePG}, 4, "the system database postgres://durlab:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"clean, system-db unreachable", nil, []string{"clean", "--system-db", unreachablePG}, 4, "the system database postgres://durlab:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"store malformed URL", nil, []string{"basic", "--store", "postgres://u:pw@[bad/x"}, 2, "store unavailable"},
		{"store corrupt file", nil, []string{"basic", "--store", "garbage.db"}, 4, "the store garbage.db is corrupt (file is not a database)"},
		{"system-db corrupt file", nil, []string{"basic", "--system-db", "sqlite:garbage.db"}, 4, "the system database sqlite:garbage.db is corrupt"},
		{"store foreign table", nil, []string{"basic", "--store", "foreign.db"}, 2, "users table that durlab did not create"},
		{"data dir cannot be created", nil, []string{"basic", "--data-dir", "afile/sub"}, 2, "cannot create data folder"},
		{"env system db bogus", map[string]string{"DBOS_SYSTEM_DATABASE_URL": "bogus://x"}, []string{"basic"}, 2, "unsupported database URL"},
		{"env seed's database URL unreachable", map[string]string{"DBOS_DATABASE_URL": unreachablePG}, []string{"basic"}, 4, "system database postgres://durlab:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"env store unreachable", map[string]string{"DURLAB_STORE": unreachablePG}, []string{"basic"}, 4, "is unreachable"},
		{"env data dir cannot be created", map[string]string{"DURLAB_DATA_DIR": "afile/x"}, []string{"basic"}, 2, "cannot create data folder"},
		{"list-pending bad output", nil, []string{"list-pending", "--output", "xml"}, 2, `unknown --output "xml"`},
		// A well-formed ID that names nothing is not bad usage: exit 1, as gh
		// and kubectl answer; a malformed one is.
		{"workflow unknown id", nil, []string{"workflow", "get", "no-such-workflow"}, 1, "workflow no-such-workflow not found"},
		{"workflow unknown id prefix", nil, []string{"workflow", "cancel", "0000"}, 1, "workflow 0000 not found"},
		{"workflow malformed id", nil, []string{"workflow", "steps", "a b"}, 2, `"a b" is not a workflow ID`},
		{"workflow bad status", nil, []string{"workflow", "list", "--status", "DONE"}, 2, "DONE"},
		{"fork without id", nil, []string{"workflow", "fork"}, 2, "ID"},
		{"store key=value unreachable", nil, []string{"basic", "--store", "host=127.0.0.1 port=1 dbname=durlab user=durlab password=s3cr3tpw connect_timeout=2"}, 4, "the store postgres://durlab:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"store key=value misspelt", nil, []string{"basic", "--store", "host=127.0.0.1 passwd=s3cr3tpw"}, 2, `"passwd" is not a libpq connection keyword`},
		{"store in memory", nil, []string{"basic", "--store", ":memory:"}, 2, "is a database in memory"},
		{"store URL-like", nil, []string{"basic", "--store", "postgres:/db"}, 2, "unsupported database URL"},
		{"system-db key=value unreachable", nil, []string{"basic", "--system-db", "host=127.0.0.1 port=1 dbname=durlab password=s3cr3tpw connect_timeout=2"}, 4, "the system database postgres://:xxxxx@127.0.0.1:1/durlab?connect_timeout=2 is unreachable"},
		{"executor ID with a newline", nil, []string{"basic", "--executor-id", "a\nb"}, 2, `the executor ID "a\nb" has a space or an unprintable character`},
		{"executor ID too long", nil, []string{"basic", "--executor-id", strings.Repeat("e", 101)}, 2, "the executor ID is 101 characters long; at most 100"},
		{"env executor ID with a tab", map[string]string{"DURLAB_EXECUTOR_ID": "a\tb"}, []string{"basic"}, 2, "unprintable"},
		{"queue name with a space", nil, []string{"dedup", "--queue", "my q"}, 2, `the queue name "my q" has a space`},
		{"worker queue name with a control character", nil, []string{"worker", "--queue", "q\x07"}, 2, "unprintable"},
		{"data folder past SQLite's path limit", nil, []string{"basic", "--data-dir", strings.Repeat("d/", 260)}, 2, "SQLite opens files of at most 503"},
		{"page past the memory bound", nil, []string{"basic", "--page-size", "10000000"}, 2, "at most 100000 users per page"},
		{"batch past the memory bound", nil, []string{"exactly-once", "--pages", "1000", "--page-size", "1000"}, 2, "at most 100000 users per batch"},
		{"faults not a spec", nil, []string{"dedup", "--faults", "explode@insert_batch_1"}, 2, "bad fault schedule"},
		{"faults bad moment", nil, []string{"dedup", "--faults", "crash@insert_batch_1:sometime"}, 2, "bad fault schedule"},
		{"faults bad attempt", nil, []string{"dedup", "--faults", "fail@insert_batch_1#0"}, 2, "bad fault schedule"},
		{"faults with a drawing knob", nil, []string{"dedup", "--faults", "none", "--fail-prob", "0.4"}, 2, "drop --fail-prob 0.4"},
		{"run faults not a spec", nil, []string{"run", "dedup", "--until-success", "--faults", "crash@"}, 2, "bad fault schedule"},
		{"workflow-id with a space", nil, []string{"basic", "--workflow-id", "my run"}, 2, "has a space"},
		{"workflow-id too long", nil, []string{"basic", "--workflow-id", strings.Repeat("x", 101)}, 2, "at most 100"},
		{"workflow-id with --new", nil, []string{"basic", "--workflow-id", "a", "--new"}, 2, "give one of them"},
		{"workflow-id of another experiment", nil, []string{"recover", "--workflow-id", "$BASIC"}, 2, "is a basic.users_workflow, not a recover.users_workflow"},
		{"explore without a mode", nil, []string{"explore", "dedup"}, 2, "explore needs --crash-points or --seeds"},
		{"explore both modes", nil, []string{"explore", "dedup", "--crash-points", "--seeds", "1..3"}, 2, "and not both"},
		{"explore unknown experiment", nil, []string{"explore", "nosuch", "--seeds", "1..2"}, 2, `unknown experiment "nosuch" for explore`},
		{"explore bad seeds", nil, []string{"explore", "dedup", "--seeds", "5..1"}, 2, "is not a range"},
		{"explore bad crash-point range", nil, []string{"explore", "dedup", "--crash-points=0..3"}, 2, "is not a range of points"},
		{"explore kills with crash points", nil, []string{"explore", "dedup", "--crash-points", "--kills", "1"}, 2, "--kills goes with --seeds"},
		{"explore with faults", nil, []string{"explore", "dedup", "--seeds", "1..2", "--faults", "none"}, 2, "explore chooses the faults itself"},
		{"explore crash points with a drawing knob", nil, []string{"explore", "dedup", "--crash-points", "--fail-prob", "0.3"}, 2, "draws no random fault"},
		{"explore zero parallel", nil, []string{"explore", "dedup", "--seeds", "1..2", "--parallel", "0"}, 2, "--parallel must be at least 1"},
		{"explore negative kills", nil, []string{"explore", "dedup", "--seeds", "1..2", "--kills", "-1"}, 2, "--kills must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			args := slices.Clone(c.args)
			for i, a := range args {
				args[i] = strings.ReplaceAll(a, "$BASIC", basicID)
			}
			code, stdout, stderr := run(t, args...)
			if code != c.code {
				t.Errorf("exit %d, want %d\nstderr: %s", code, c.code, stderr)
			}
			if lines := strings.Count(stderr, "\n"); lines != 1 || !strings.HasSuffix(stderr, "\n") {
				t.Errorf("stderr has %d lines, want one:\n%s", lines, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not say %q", stderr, c.want)
			}
			for _, leak := range []string{"goroutine ", "panic:", "s3cr3tpw", "hunter2"} {
				if strings.Contains(stderr+stdout, leak) {
					t.Errorf("output contains %q:\n%s%s", leak, stdout, stderr)
				}
			}
		})
	}
	// No case may leave a file behind named after what it was given.
	if entries, _ := os.ReadDir(dir); true {
		for _, e := range entries {
			if strings.ContainsAny(e.Name(), "=:") || strings.Contains(e.Name(), "memory") {
				t.Errorf("a file was created from a connection string: %q", e.Name())
			}
		}
	}
	if after := snapshot(t, dir); after != before {
		t.Fatalf("stored data changed:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot summarises what the data folder holds: the users rows and the
// workflows with their statuses.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, ".durlab", "users.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT id, external_id, name, workflow_id, analyzed_at, created_at FROM users ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var a, b, c, d, e, f string
		if err := rows.Scan(&a, &b, &c, &d, &e, &f); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(h, a, b, c, d, e, f)
		n++
	}
	rows.Close()
	_, wfs, _ := run(t, "workflow", "list", "--output", "json")
	fmt.Fprintln(h, wfs)
	return fmt.Sprintf("%d rows, %x", n, h.Sum(nil)[:8])
}
