package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPostgresOutage stops the Postgres server under a running dedup for a
// few seconds, then starts it again. It runs its own throw-away server, so
// the outage touches no other test.
//
// What happens (and why): DBOS retries its system-database calls while the
// server is away, so the workflow waits at its next checkpoint instead of
// failing, and the run completes with the exact result. If the outage hits
// an insert step and outlasts its retries (10 attempts, 0.1 s apart), the
// workflow fails clearly instead (exit 1) and a rerun completes; the test
// accepts both and logs which one it saw.
func TestPostgresOutage(t *testing.T) {
	srv := startPrivatePostgres(t)
	url := srv.url("durlab_outage")
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	args := []string{"run", "dedup", "--until-success", "--restart-delay", "0", "--seed", "1", "--crash-prob", "0",
		"--batches", "30", "--system-db", url, "--store", url, "--output", "json"}
	c := durlab(ctx, args...)
	var stdout strings.Builder
	c.Stdout = &stdout
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	waitPending(t, ctx, url, "dedup.users_workflow", done)
	srv.pgctl(t, "stop", "-m", "fast")
	outage := 3 * time.Second
	t.Logf("Postgres stopped mid-run for %s", outage)
	time.Sleep(outage) // the length of the outage, not a wait for something
	srv.start(t)
	<-done

	report := decodeRun(t, stdout.String())
	if report.ExitCode == 0 {
		t.Logf("the run rode out the outage: result %d", report.Report.Result)
	} else {
		t.Logf("the run failed during the outage (exit %d: %s); rerunning", report.ExitCode, report.Report.Error)
		out, err := durlab(ctx, args...).Output()
		if err != nil {
			t.Fatalf("rerun after the outage: %v\n%s", err, out)
		}
		report = decodeRun(t, string(out))
	}
	if report.ExitCode != 0 || report.Report.Result != 3000 || report.Report.UniqueUsers != 3000 {
		t.Fatalf("after the outage: exit %d, result %d, unique %d; want 0, 3000, 3000", report.ExitCode, report.Report.Result, report.Report.UniqueUsers)
	}
}

type runJSON struct {
	ExitCode int `json:"exit_code"`
	Report   struct {
		Result      int64  `json:"result"`
		UniqueUsers int64  `json:"unique_users"`
		Error       string `json:"error"`
	} `json:"report"`
}

func decodeRun(t *testing.T, out string) runJSON {
	t.Helper()
	var r runJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("run output: %v\n%s", err, out)
	}
	return r
}

// waitPending waits until `durlab list-pending` shows a workflow named name,
// and fails if the run ends first.
func waitPending(t *testing.T, ctx context.Context, url, name string, runDone <-chan struct{}) {
	t.Helper()
	for ctx.Err() == nil {
		select {
		case <-runDone:
			t.Fatalf("the run ended before a %s workflow was pending", name)
		default:
		}
		out, err := durlab(ctx, "list-pending", "--system-db", url, "--name", name, "--output", "json").Output()
		var rows []any
		if err == nil && json.Unmarshal(out, &rows) == nil && len(rows) > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no pending %s", name)
}

// privatePostgres is a throw-away PostgreSQL server in a temp folder, on a
// free port, with trust auth.
type privatePostgres struct {
	bin, data, sock string
	port            int
	asPostgres      bool // the server refuses to run as root
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("PostgreSQL server binaries not found under /usr/lib/postgresql")
		}
		t.Skip("OUTAGE TEST SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql")
	}
	dir, err := os.MkdirTemp("", "durlab-outage-")
	if err != nil {
		t.Fatal(err)
	}
	s := &privatePostgres{bin: filepath.Dir(bins[len(bins)-1]), data: filepath.Join(dir, "data"), sock: dir,
		port: freePort(t), asPostgres: os.Geteuid() == 0}
	if s.asPostgres {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	if out, err := s.command(filepath.Join(s.bin, "initdb"), "-D", s.data, "-A", "trust", "-U", "postgres").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.start(t)
	t.Cleanup(func() {
		s.pgctl(t, "stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	return s
}

func (s *privatePostgres) command(name string, args ...string) *exec.Cmd {
	if s.asPostgres {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func (s *privatePostgres) start(t *testing.T) {
	t.Helper()
	s.pgctl(t, "start", "-w", "-l", filepath.Join(s.sock, "log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", s.port, s.sock))
}

func (s *privatePostgres) pgctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := s.command(filepath.Join(s.bin, "pg_ctl"), append([]string{"-D", s.data}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctl %s: %v\n%s", args[0], err, out)
	}
}

func (s *privatePostgres) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
