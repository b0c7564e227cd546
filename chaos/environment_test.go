package chaos

// Environment faults (issue 13, items 2 and 3): an outage of the Postgres
// server under a run, a restart into it, one that outlasts
// --outage-timeout, a corrupt SQLite store, a full disk. Each result is
// checked against the databases with queries of their own: the users
// table's window-function count and DBOS's workflow_status, never only the
// report.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// outageSizes: 100 batches of 5 pages of 10 users, a few seconds of work
// on Postgres, so that the server can be stopped while it runs.
var outageSizes = []string{"--batches", "100", "--pages", "5", "--page-size", "10"}

const outageUsers = 5000

// started is a durlab process under way, its output kept.
type started struct {
	c              *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
}

func start(t *testing.T, ctx context.Context, args ...string) *started {
	t.Helper()
	s := &started{c: durlab(ctx, args...), done: make(chan struct{})}
	s.c.Stdout = &s.stdout
	s.c.Stderr = &s.stderr
	if testing.Verbose() {
		s.c.Stderr = io.MultiWriter(&s.stderr, os.Stderr)
	}
	if err := s.c.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.c.Wait(); close(s.done) }()
	return s
}

// wait waits for the process to end and returns its exit status.
func (s *started) wait(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case <-s.done:
	case <-ctx.Done():
		t.Fatalf("durlab did not end: %v\nstderr:\n%s", ctx.Err(), s.stderr.String())
	}
	return s.c.ProcessState.ExitCode()
}

// childOf is the pid of pid's child process, read from /proc.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(st)))
			return child
		}
	}
	t.Fatalf("process %d has no child", pid)
	return 0
}

// pgRun is what the databases at url say of the dedup run: the main
// workflow's ID and status, the workflows in ERROR, and the main workflow's
// rows by the window-function count and by distinct user.
type pgRun struct {
	id, status          string
	errored             int
	latest, uniqueUsers int64
}

func queryPostgres(t *testing.T, ctx context.Context, url string) pgRun {
	t.Helper()
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var r pgRun
	if err := db.QueryRow(ctx, `SELECT workflow_uuid, status FROM dbos.workflow_status WHERE name = 'dedup.users_workflow' ORDER BY created_at DESC LIMIT 1`).Scan(&r.id, &r.status); err != nil {
		t.Fatalf("the main workflow in workflow_status: %v", err)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM dbos.workflow_status WHERE status = 'ERROR'`).Scan(&r.errored); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY id, workflow_id ORDER BY created_at DESC) AS rn
		FROM users_ledger WHERE workflow_id = $1) t WHERE rn = 1`, r.id).Scan(&r.latest); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT id) FROM users_ledger WHERE workflow_id = $1`, r.id).Scan(&r.uniqueUsers); err != nil {
		t.Fatal(err)
	}
	return r
}

// wantExact checks that the run ended SUCCESS with every user once by the
// window-function count, and that nothing was left in ERROR.
func wantExact(t *testing.T, r pgRun, users int64) {
	t.Helper()
	if r.status != "SUCCESS" || r.errored != 0 || r.latest != users || r.uniqueUsers != users {
		t.Fatalf("in the databases: workflow %s %s, %d workflows in ERROR, window count %d, %d unique users; want SUCCESS, 0, %d, %d",
			r.id, r.status, r.errored, r.latest, r.uniqueUsers, users, users)
	}
}

// A child restarted while the server is down meets a refused connection:
// exit 4, not bad usage. run waits, says so, restarts it when the server
// is back, and the run completes exact.
func TestRunRidesOutARestartIntoAnOutage(t *testing.T) {
	srv := startPrivatePostgres(t)
	url := srv.url("durlab_restart_outage")
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	run := start(t, ctx, append([]string{"run", "dedup", "--until-success", "--restart-delay", "0", "--seed", "1", "--crash-prob", "0",
		"--system-db", url, "--store", url, "--output", "json"}, outageSizes...)...)
	waitPending(t, ctx, url, "dedup.users_workflow", run.done)
	srv.pgctl(t, "stop", "-m", "fast")
	// The child dies while the server is down, so its restart must meet
	// the outage: this is the path under test, not a timing accident.
	if err := syscall.Kill(childOf(t, run.c.Process.Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the length of the outage, not a wait for something
	srv.start(t)
	if code := run.wait(t, ctx); code != 0 {
		t.Fatalf("run: exit %d, want 0\nstderr:\n%s", code, run.stderr.String())
	}
	if !strings.Contains(run.stderr.String(), "durlab run: the database is unreachable (") || !strings.Contains(run.stderr.String(), "; retrying in ") {
		t.Fatalf("run never said it waited for the database:\n%s", run.stderr.String())
	}
	report := decodeRun(t, run.stdout.String())
	if report.ExitCode != 0 || report.Report.Result != outageUsers {
		t.Fatalf("run's report: exit %d, result %d; want 0, %d", report.ExitCode, report.Report.Result, outageUsers)
	}
	wantExact(t, queryPostgres(t, ctx, url), outageUsers)
}

// A store on its own server, the system database on SQLite: the claim
// stays held, so the outage meets the store's writes themselves, and they
// are retried beneath their steps until the server is back. No step fails,
// no supervisor restarts anything, and the count is exact.
func TestStoreOutageIsWaitedOutBeneathTheSteps(t *testing.T) {
	srv := startPrivatePostgres(t)
	url := srv.url("durlab_store_outage")
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	dir := t.TempDir()
	sysdb := "sqlite:" + filepath.Join(dir, "dbos.sqlite")
	run := start(t, ctx, append([]string{"dedup", "--seed", "1", "--crash-prob", "0",
		"--system-db", sysdb, "--store", url, "--output", "json"}, outageSizes...)...)
	waitPending(t, ctx, sysdb, "dedup.users_workflow", run.done)
	srv.pgctl(t, "stop", "-m", "fast")
	time.Sleep(5 * time.Second) // the length of the outage, not a wait for something
	srv.start(t)
	if code := run.wait(t, ctx); code != 0 {
		t.Fatalf("exit %d, want 0\nstderr:\n%s", code, run.stderr.String())
	}
	if !strings.Contains(run.stderr.String(), "is unreachable (") || !strings.Contains(run.stderr.String(), "the store is reachable again, after") {
		t.Fatalf("the run never said it waited for the store:\n%s", run.stderr.String())
	}
	id, status, errored := sqliteWorkflow(t, dir)
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var latest int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY id, workflow_id ORDER BY created_at DESC) AS rn
		FROM users_ledger WHERE workflow_id = $1) t WHERE rn = 1`, id).Scan(&latest); err != nil {
		t.Fatal(err)
	}
	if status != "SUCCESS" || errored != 0 || latest != outageUsers {
		t.Fatalf("workflow %s %s, %d in ERROR, window count %d; want SUCCESS, 0, %d", id, status, errored, latest, outageUsers)
	}
}

// An outage longer than --outage-timeout ends the run with exit 4 while the
// server is still down, the workflow PENDING, never ERROR; the same command
// completes it, exact, once the server is back.
func TestOutageLongerThanTheTimeoutLeavesTheWorkflowPending(t *testing.T) {
	srv := startPrivatePostgres(t)
	url := srv.url("durlab_long_outage")
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	args := append([]string{"run", "dedup", "--until-success", "--restart-delay", "0", "--seed", "1", "--crash-prob", "0",
		"--outage-timeout", "3s", "--system-db", url, "--store", url, "--output", "json"}, outageSizes...)
	run := start(t, ctx, args...)
	waitPending(t, ctx, url, "dedup.users_workflow", run.done)
	srv.pgctl(t, "stop", "-m", "fast")
	stopped := time.Now()
	// The server stays down for 10 s: run must give up before it returns.
	outage, cancelOutage := context.WithTimeout(ctx, 10*time.Second)
	code := run.wait(t, outage)
	cancelOutage()
	t.Logf("run gave up %s into the outage", time.Since(stopped).Round(100*time.Millisecond))
	if code != 4 {
		t.Fatalf("run: exit %d, want 4\nstderr:\n%s", code, run.stderr.String())
	}
	if got := decodeRun(t, run.stdout.String()).ExitCode; got != 4 {
		t.Fatalf("run's summary: exit_code %d, want 4", got)
	}
	time.Sleep(time.Until(stopped.Add(10 * time.Second))) // the rest of the outage
	srv.start(t)
	r := queryPostgres(t, ctx, url)
	if r.status != "PENDING" || r.errored != 0 {
		t.Fatalf("after the outage: workflow %s %s, %d workflows in ERROR; want PENDING, 0", r.id, r.status, r.errored)
	}
	rerun := start(t, ctx, args...)
	if code := rerun.wait(t, ctx); code != 0 {
		t.Fatalf("rerun: exit %d, want 0\nstderr:\n%s", code, rerun.stderr.String())
	}
	wantExact(t, queryPostgres(t, ctx, url), outageUsers)
}

// A users.db with a valid header and random pages, under a pending
// workflow: one line naming the file, exit 4, the workflow still PENDING;
// the file restored, the run completes exact.
func TestCorruptStoreLeavesTheWorkflowPending(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	dir := t.TempDir()
	args := []string{"dedup", "--data-dir", dir, "--seed", "1", "--crash-prob", "0"}
	crashed := start(t, ctx, append(args, "--faults", "crash@after-batch-6")...)
	if code := crashed.wait(t, ctx); code != -1 || !crashed.c.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("the injected crash: exit %d, want death by SIGKILL\nstderr:\n%s", code, crashed.stderr.String())
	}
	path := filepath.Join(dir, "users.db")
	// Fold the WAL the crash left into the file, so that the file alone
	// is the store: its good copy, and the one to damage.
	users, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	users.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if len(good) < 4*page {
		t.Fatalf("users.db holds %d bytes: too few pages to damage", len(good))
	}
	bad := bytes.Clone(good)
	rand.Read(bad[page:]) // page 1, the header and the schema, stays valid
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}

	refused := start(t, ctx, args...)
	code := refused.wait(t, ctx)
	lines := strings.Split(strings.TrimSpace(refused.stderr.String()), "\n")
	if code != 4 || len(lines) != 1 || !strings.Contains(lines[0], path) || !strings.Contains(lines[0], "is corrupt") {
		t.Fatalf("on the corrupt store: exit %d and %d lines:\n%s\nwant exit 4 and one line naming %s as corrupt", code, len(lines), refused.stderr.String(), path)
	}
	id, status, errored := sqliteWorkflow(t, dir)
	if status != "PENDING" || errored != 0 {
		t.Fatalf("after the refusal: workflow %s %s, %d workflows in ERROR; want PENDING, 0", id, status, errored)
	}

	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	resumed := start(t, ctx, append([]string{"run"}, append(args, "--until-success", "--restart-delay", "0")...)...)
	if code := resumed.wait(t, ctx); code != 0 {
		t.Fatalf("after the restore: exit %d, want 0\nstderr:\n%s", code, resumed.stderr.String())
	}
	id2, status, errored := sqliteWorkflow(t, dir)
	latest := sqliteLatest(t, dir, id)
	if id2 != id || status != "SUCCESS" || errored != 0 || latest != 1000 {
		t.Fatalf("after the restore: workflow %s %s (pending was %s), %d in ERROR, window count %d; want the same workflow SUCCESS, 0, 1000",
			id2, status, id, errored, latest)
	}
}

// A store on a file system that fills up: the write that meets the full
// disk ends the process with one line naming the store, exit 4, the
// workflow PENDING; with room again, the same command completes it exact.
// The test mounts a small tmpfs of its own, so it needs the right to mount.
func TestFullDiskLeavesTheWorkflowPending(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a tmpfs: %v %s", err, out)
		}
		t.Skipf("FULL DISK TEST SKIPPED: cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })
	store := filepath.Join(small, "users.db")
	// 20,000 users do not fit in 1 MiB, the store's WAL included.
	args := []string{"dedup", "--data-dir", dir, "--store", store, "--seed", "1", "--crash-prob", "0", "--fail-prob", "0",
		"--gen-fail-prob", "0", "--batches", "20", "--pages", "10", "--page-size", "100", "-q"}
	full := start(t, ctx, args...)
	code := full.wait(t, ctx)
	lines := strings.Split(strings.TrimSpace(full.stderr.String()), "\n")
	if code != 4 || len(lines) != 1 || !strings.Contains(lines[0], store) {
		t.Fatalf("on the full disk: exit %d and %d lines:\n%s\nwant exit 4 and one line naming %s", code, len(lines), full.stderr.String(), store)
	}
	t.Logf("the line: %s", lines[0])
	id, status, errored := sqliteWorkflow(t, dir)
	if status != "PENDING" || errored != 0 {
		t.Fatalf("after the full disk: workflow %s %s, %d workflows in ERROR; want PENDING, 0", id, status, errored)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=256m", small).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	resumed := start(t, ctx, args...)
	if code := resumed.wait(t, ctx); code != 0 {
		t.Fatalf("with room again: exit %d, want 0\nstderr:\n%s", code, resumed.stderr.String())
	}
	id2, status, errored := sqliteWorkflow(t, dir)
	latest := sqliteLatestIn(t, store, id)
	if id2 != id || status != "SUCCESS" || errored != 0 || latest != 20000 {
		t.Fatalf("with room again: workflow %s %s (pending was %s), %d in ERROR, window count %d; want the same workflow SUCCESS, 0, 20000",
			id2, status, id, errored, latest)
	}
}

// sqliteWorkflow reads the newest dedup main workflow, and the count of
// workflows in ERROR, from the SQLite system database in dir.
func sqliteWorkflow(t *testing.T, dir string) (id, status string, errored int) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "dbos.sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT workflow_uuid, status FROM workflow_status WHERE name = 'dedup.users_workflow' ORDER BY created_at DESC LIMIT 1`).Scan(&id, &status); err != nil {
		t.Fatalf("the main workflow in workflow_status: %v", err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM workflow_status WHERE status = 'ERROR'`).Scan(&errored); err != nil {
		t.Fatal(err)
	}
	return id, status, errored
}

func sqliteLatest(t *testing.T, dir, id string) int64 {
	return sqliteLatestIn(t, filepath.Join(dir, "users.db"), id)
}

// sqliteLatestIn is the window-function count of workflow id in the store
// at path.
func sqliteLatestIn(t *testing.T, path, id string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(`SELECT count(*) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY id, workflow_id ORDER BY created_at DESC) AS rn
		FROM users_ledger WHERE workflow_id = ?) WHERE rn = 1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
