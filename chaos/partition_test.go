package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durlab/durlab/internal/pgtest"
)

// TestPartitionedWorkerIsFenced cuts one worker's connections to Postgres
// in the middle of a batch, through a TCP proxy the test controls, while
// two other workers and the experiment keep theirs:
//
//   - the server ends the cut-off worker's sessions, its executor claim
//     with them; the worker notices and stops writing;
//   - after --adopt-after one survivor adopts it, and the survivors finish
//     the run: exact, and for exactly-once free of duplicates;
//   - when the network comes back, the cut-off worker finds its claim held
//     by the adopter, or its batch finished by another, and exits 3
//     without writing anything more: the ledger holds no event of it, and
//     the store no row, beyond those it had written before the cut.
//
// exactly-once gets its network back while the run goes on (the adopter
// may still hold its claim), dedup after the run ended (the claim is free
// again: the worker must find out from its batch).
func TestPartitionedWorkerIsFenced(t *testing.T) {
	for _, tc := range []struct {
		experiment   string
		restoreEarly bool
	}{
		{"exactly-once", true},
		{"dedup", false},
	} {
		t.Run(tc.experiment, func(t *testing.T) { partitionWorker(t, tc.experiment, tc.restoreEarly) })
	}
}

func partitionWorker(t *testing.T, experiment string, restoreEarly bool) {
	sys, st := pgtest.Database(t), pgtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	p := startProxy(t, sys)
	dir := t.TempDir()
	common := []string{"worker", "--queue", "q", "--concurrency", "1", "--adopt-after", "5s", "--data-dir", dir, "-o", "json"}
	// w1's inserts fail often, 100ms before each retry: it is caught in a
	// batch by waiting for one of its failures.
	w1 := startProc(t, ctx, dir, "w1", append(common, "--executor-id", "w1", "--fail-prob", "0.8", "--attempts", "60",
		"--system-db", p.url(sys), "--store", p.url(st))...)
	w2 := startProc(t, ctx, dir, "w2", append(common, "--executor-id", "w2", "--system-db", sys, "--store", st)...)
	w3 := startProc(t, ctx, dir, "w3", append(common, "--executor-id", "w3", "--system-db", sys, "--store", st)...)
	for _, w := range []*proc{w1, w2, w3} {
		w.waitFor(t, `serves queue q`)
	}
	exp := startProc(t, ctx, dir, "experiment", experiment, "--queue", "q", "--batches", "20", "--seed", "11", "--crash-prob", "0",
		"--system-db", sys, "--store", st, "--output", "json")

	db := connect(t, ctx, st)
	sysdb := connect(t, ctx, sys)
	// Freeze w1 right after a failed attempt, while it waits to retry, and
	// make sure it holds a batch: then cut it off and let it run on.
	var batch string
	for seen := 1; batch == ""; seen++ {
		w1.waitForCount(t, `insert_batch_\d+ attempt \d+ .*failed \(injected\); DBOS retries`, seen)
		w1.signal(t, syscall.SIGSTOP)
		err := sysdb.QueryRow(ctx, `SELECT workflow_uuid FROM dbos.workflow_status WHERE executor_id = 'w1' AND status = 'PENDING'`).Scan(&batch)
		if errors.Is(err, pgx.ErrNoRows) {
			w1.signal(t, syscall.SIGCONT) // between batches: the next failure
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	p.cut()
	t.Logf("w1 cut off in batch %s", batch)
	before := eventsOf(t, ctx, db, "w1")
	w1.signal(t, syscall.SIGCONT)
	w1.waitFor(t, `WARNING: lost the database session that holds the claim of executor ID w1`)
	adopter := waitForAny(t, []*proc{w2, w3}, `adopted executor w1`)
	t.Logf("%s adopted w1", adopter.name)
	if restoreEarly {
		p.restore()
	}
	if code := exp.wait(t); code != 0 {
		t.Fatalf("%s exited %d:\n%s", experiment, code, exp.stderr())
	}
	var rep struct {
		Result, Rows, Duplicates int64
		UniqueUsers              int64 `json:"unique_users"`
		AsExpected               bool  `json:"as_expected"`
	}
	exp.decode(t, &rep)
	t.Logf("%s: result %d, %d rows, %d unique, %d duplicates", experiment, rep.Result, rep.Rows, rep.UniqueUsers, rep.Duplicates)
	if !rep.AsExpected || rep.Result != 2000 || rep.UniqueUsers != 2000 || experiment == "exactly-once" && (rep.Rows != 2000 || rep.Duplicates != 0) {
		t.Fatalf("%s after the partition: %+v", experiment, rep)
	}
	var status, executor string
	if err := sysdb.QueryRow(ctx, `SELECT status, executor_id FROM dbos.workflow_status WHERE workflow_uuid = $1`, batch).Scan(&status, &executor); err != nil {
		t.Fatal(err)
	}
	if status != "SUCCESS" || executor == "w1" {
		t.Fatalf("batch %s: %s on %s, want SUCCESS on a survivor", batch, status, executor)
	}

	if !restoreEarly {
		p.restore()
	}
	if code := w1.wait(t); code != 3 {
		t.Fatalf("w1 exited %d once its network came back, want 3:\n%s", code, w1.stderr())
	}
	t.Logf("w1: %s", lastLine(w1.stderr()))
	if !strings.Contains(w1.stderr(), "this process stops now and writes nothing more (exit 3)") {
		t.Errorf("w1 did not say why it stopped:\n%s", w1.stderr())
	}
	if after := eventsOf(t, ctx, db, "w1"); after != before {
		t.Errorf("w1 wrote after the cut: %+v before, %+v after", before, after)
	}

	adoptions := 0
	for _, w := range []*proc{w2, w3} {
		w.signal(t, syscall.SIGTERM)
		w.wait(t)
		var sum struct{ Adoptions int }
		w.decode(t, &sum)
		adoptions += sum.Adoptions
	}
	if adoptions != 1 {
		t.Errorf("%d adoptions between the survivors, want 1", adoptions)
	}
}

// written is what one executor's executions put in the ledger.
type written struct{ Events, Rows int64 }

func eventsOf(t *testing.T, ctx context.Context, db *pgx.Conn, executor string) written {
	t.Helper()
	var w written
	err := db.QueryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(rows_written), 0) FROM durlab_events
		WHERE execution_id IN (SELECT execution_id FROM durlab_events WHERE kind = 'exec-begin' AND executor_id = $1)`, executor).Scan(&w.Events, &w.Rows)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func connect(t *testing.T, ctx context.Context, u string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// proxy forwards TCP connections to a Postgres server until cut, which
// closes both ends of every connection, as a dead network path whose
// routers answer does: the server ends the sessions, the client sees its
// connections fail. While cut it refuses new connections.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	isCut  bool
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, serverURL string) *proxy {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

// url is u with its host replaced by the proxy's.
func (p *proxy) url(u string) string {
	parsed, _ := url.Parse(u)
	parsed.Host = p.ln.Addr().String()
	return parsed.String()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	if p.isCut {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.conns[client], p.conns[server] = true, true
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go pipe(server, client)
	pipe(client, server)
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.isCut = false
	p.mu.Unlock()
}

// proc is a durlab process of the test, its stderr in a file to wait on.
type proc struct {
	name    string
	cmd     *exec.Cmd
	out     strings.Builder
	errPath string
	done    chan struct{}
}

func startProc(t *testing.T, ctx context.Context, dir, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, errPath: filepath.Join(dir, name+".stderr"), done: make(chan struct{})}
	f, err := os.Create(p.errPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = durlab(ctx, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr())
		}
	})
	return p
}

func (p *proc) stderr() string {
	b, _ := os.ReadFile(p.errPath)
	return string(b)
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
}

// waitFor waits until the process's stderr matches re.
func (p *proc) waitFor(t *testing.T, re string) { t.Helper(); p.waitForCount(t, re, 1) }

// waitForCount waits until the process's stderr matches re n times.
func (p *proc) waitForCount(t *testing.T, re string, n int) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if len(rx.FindAllStringIndex(p.stderr(), -1)) >= n {
			return
		}
		select {
		case <-p.done:
			if len(rx.FindAllStringIndex(p.stderr(), -1)) >= n {
				return
			}
			t.Fatalf("%s ended before its stderr matched %q %d times", p.name, re, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("%s: stderr does not match %q %d times after a minute", p.name, re, n)
}

// waitForAny waits until one of the processes' stderr matches re.
func waitForAny(t *testing.T, ps []*proc, re string) *proc {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, p := range ps {
			if rx.MatchString(p.stderr()) {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no process's stderr matches %q after a minute", re)
	return nil
}

// wait waits (a minute at most) for the process to end and returns its
// exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("%s still running after a minute", p.name)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(p.out.String()), v); err != nil {
		t.Fatal(fmt.Errorf("%s: stdout: %w\n%s", p.name, err, p.out.String()))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
