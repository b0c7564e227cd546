package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestPostgresOutage stops the Postgres server under a running dedup for
// 20 seconds, then starts it again. It runs its own throw-away server, so
// the outage touches no other test.
//
// What must happen: DBOS retries its system-database calls while the
// server is away, so the workflow waits at its next checkpoint; a store
// write that meets the outage is retried beneath its step until the server
// is back (within --outage-timeout, 60 s by default), so no step fails and
// the experiment itself, with no supervisor to restart it, completes exact.
func TestPostgresOutage(t *testing.T) {
	srv := startPrivatePostgres(t)
	url := srv.url("durlab_outage")
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	run := start(t, ctx, append([]string{"dedup", "--seed", "1", "--crash-prob", "0",
		"--system-db", url, "--store", url, "--output", "json"}, outageSizes...)...)
	waitPending(t, ctx, url, "dedup.users_workflow", run.done)
	srv.pgctl(t, "stop", "-m", "fast")
	began := time.Now()
	outage := 20 * time.Second
	t.Logf("Postgres stopped mid-run for %s", outage)
	time.Sleep(outage) // the length of the outage, not a wait for something
	select {
	case <-run.done:
		t.Fatalf("the experiment ended during the outage: exit %d\nstderr:\n%s", run.c.ProcessState.ExitCode(), run.stderr.String())
	default:
	}
	srv.start(t)
	if code := run.wait(t, ctx); code != 0 {
		t.Fatalf("after the outage: exit %d, want 0\nstderr:\n%s", code, run.stderr.String())
	}
	t.Logf("the run ended %s after the outage began", time.Since(began).Round(100*time.Millisecond))
	var rep struct {
		Result int64  `json:"result"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(run.stdout.Bytes(), &rep); err != nil || rep.Result != outageUsers || rep.Status != "SUCCESS" {
		t.Fatalf("report: %+v (%v); want SUCCESS, %d\n%s", rep, err, outageUsers, run.stdout.String())
	}
	wantExact(t, queryPostgres(t, ctx, url), outageUsers)
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
