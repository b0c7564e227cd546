package cmd_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/durlab/durlab/cmd"
	"github.com/durlab/durlab/internal/tether"
	"github.com/durlab/durlab/workflows"
)

// TestMain lets the test binary run as durlab, so the scripts exec the real
// main in a real process: crashes are real SIGKILLs of that process.
func TestMain(m *testing.M) {
	workflows.Register(brokenExperiment)
	testscript.Main(m, map[string]func(){
		"durlab": func() { os.Exit(cmd.Main()) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Scripts start from an empty environment: no database URL
			// leaks in from the developer's shell.
			for _, k := range []string{"DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR", "DURLAB_EXECUTOR_ID"} {
				env.Setenv(k, "")
			}
			env.Setenv("DURLAB_TEST_POSTGRES", os.Getenv("DURLAB_TEST_POSTGRES"))
			env.Setenv("CI", os.Getenv("CI"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"sigkilled": cmdSigkilled,
			"json":      cmdJSON,
			"jsonenv":   cmdJSONEnv,
			"sqlite":    cmdSQLite,
			"pending":   cmdPending,
			"killchild": cmdKillChild,
			"killbg":    cmdKillBackground,
			"lab":       cmdLab,
			"interrupt": cmdInterrupt,
			"browser":   cmdBrowser,
			"proc":      cmdProc,
		},
		RequireExplicitExec: true,
	})
}

// sigkilled PROG ARGS... runs a program and passes only if it died by
// SIGKILL, the way durlab's injected crashes die. Its stdout and stderr are
// kept for the next stdout/stderr checks.
func cmdSigkilled(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: sigkilled program [args...]")
	}
	var stdout, stderr strings.Builder
	c := scriptCmd(ts, args[0], args[1:]...)
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	fmt.Fprint(ts.Stdout(), stdout.String())
	fmt.Fprint(ts.Stderr(), stderr.String())
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		ts.Fatalf("%s did not die (err %v)", args[0], err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		ts.Fatalf("%s ended with %v, want death by SIGKILL\nstderr: %s", args[0], err, stderr.String())
	}
}

func scriptEnv(ts *testscript.TestScript) []string {
	keys := []string{"HOME", "TMPDIR", "WORK", "PATH", "CI", "DURLAB_TEST_POSTGRES", "DBOS_SYSTEM_DATABASE_URL",
		"DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR", "DURLAB_EXECUTOR_ID", tether.Env}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	var env []string
	for _, k := range keys {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// scriptCmd is a command run as the script runs its own: in $WORK, with the
// script's environment.
func scriptCmd(ts *testscript.TestScript, name string, args ...string) *exec.Cmd {
	c := exec.Command(name, args...)
	c.Dir = ts.Getenv("WORK")
	c.Env = scriptEnv(ts)
	return c
}

// json PATH OP VALUE compares a field of the JSON on the last command's
// stdout. PATH is dotted (.report.result); VALUE is a literal, another
// PATH, or PATHs joined by + (their sum). OP is one of == != > >= < <= ~.
func cmdJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: json .path op value")
	}
	var doc any
	out := ts.ReadFile("stdout")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		ts.Fatalf("stdout is not one JSON value: %v\n%s", err, out)
	}
	left := lookup(ts, doc, args[0])
	right := any(args[2])
	if strings.HasPrefix(args[2], ".") {
		var sum float64
		for _, path := range strings.Split(args[2], "+") {
			v := lookup(ts, doc, path)
			f, ok := toFloat(v)
			if !ok || !strings.Contains(args[2], "+") {
				right = v
				break
			}
			sum += f
			right = sum
		}
	}
	ok := compare(ts, left, args[1], right)
	if ok == neg {
		ts.Fatalf("json %s (%v) %s %v: false", args[0], left, args[1], right)
	}
}

// jsonenv VAR .path [N] sets VAR to a field of the JSON on the last
// command's stdout, or to its first N characters.
func cmdJSONEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: jsonenv VAR .path [N]")
	}
	var doc any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &doc); err != nil {
		ts.Fatalf("stdout is not one JSON value: %v", err)
	}
	v := fmt.Sprint(lookup(ts, doc, args[1]))
	if len(args) == 3 {
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		v = v[:min(n, len(v))]
	}
	ts.Setenv(args[0], v)
}

func lookup(ts *testscript.TestScript, doc any, path string) any {
	cur := doc
	for _, key := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		if list, ok := cur.([]any); ok {
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(list) {
				ts.Fatalf("%s: no element %s in a list of %d", path, key, len(list))
			}
			cur = list[i]
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			ts.Fatalf("%s: %v is not an object", path, cur)
		}
		if cur, ok = m[key]; !ok {
			ts.Fatalf("%s: no field %q", path, key)
		}
	}
	return cur
}

func compare(ts *testscript.TestScript, left any, op string, right any) bool {
	lf, lnum := toFloat(left)
	rf, rnum := toFloat(right)
	if lnum && rnum {
		switch op {
		case "==":
			return lf == rf
		case "!=":
			return lf != rf
		case ">":
			return lf > rf
		case ">=":
			return lf >= rf
		case "<":
			return lf < rf
		case "<=":
			return lf <= rf
		}
	}
	ls, rs := fmt.Sprint(left), fmt.Sprint(right)
	switch op {
	case "==":
		return ls == rs
	case "!=":
		return ls != rs
	case "~":
		return strings.Contains(ls, rs)
	}
	ts.Fatalf("cannot compare %v %s %v", left, op, right)
	return false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}

// sqlite FILE SQL runs SQL on a SQLite file and prints the rows of its last
// statement, one per line, columns separated by |.
func cmdSQLite(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sqlite file sql")
	}
	db, err := sql.Open("sqlite3", ts.MkAbs(args[0]))
	ts.Check(err)
	defer db.Close()
	rows, err := db.Query(args[1])
	if err != nil {
		if neg {
			return
		}
		ts.Fatalf("sqlite: %v", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		ts.Check(rows.Scan(ptrs...))
		parts := make([]string, len(vals))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			parts[i] = fmt.Sprint(v)
		}
		fmt.Fprintln(ts.Stdout(), strings.Join(parts, "|"))
	}
	ts.Check(rows.Err())
}

// pending NAME waits until a workflow named NAME is PENDING or ENQUEUED in
// the system database, as `durlab list-pending` sees it: a condition to
// wait on, not a sleep. It gives up after a minute.
func cmdPending(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: pending workflow-name")
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		c := scriptCmd(ts, "durlab", "list-pending", "--name", args[0], "--output", "json")
		out, err := c.Output()
		var rows []any
		if err == nil && json.Unmarshal(out, &rows) == nil && len(rows) > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("no pending %s workflow after a minute", args[0])
}

// killchild SIGNAL MAXDELAY sends SIGNAL to the child process of the
// background durlab (the experiment `run` supervises) after a random delay
// below MAXDELAY. The delay is logged, so a failing moment can be replayed.
func cmdKillChild(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: killchild SIGNAL MAXDELAY")
	}
	sig := parseSignal(ts, args[0])
	maxDelay, err := time.ParseDuration(args[1])
	ts.Check(err)
	parent := lastBackground(ts)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if pid := childOf(parent); pid > 0 {
			delay := time.Duration(rand.Int64N(int64(maxDelay) + 1))
			ts.Logf("killchild: %s to pid %d after %s", args[0], pid, delay)
			time.Sleep(delay)
			ts.Check(syscall.Kill(pid, sig))
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	ts.Fatalf("background durlab started no child")
}

// killbg SIGNAL sends SIGNAL to the last background command.
func cmdKillBackground(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: killbg SIGNAL")
	}
	ts.Check(syscall.Kill(lastBackground(ts), parseSignal(ts, args[0])))
}

// childOf finds a child process of parent in /proc (any thread of a Go
// process may have forked it, so the per-task children lists miss it).
func childOf(parent int) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so cut at the last ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(parent) {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			return pid
		}
	}
	return 0
}

func lastBackground(ts *testscript.TestScript) int {
	bg := ts.BackgroundCmds()
	if len(bg) == 0 {
		ts.Fatalf("no background command")
	}
	return bg[len(bg)-1].Process.Pid
}

func parseSignal(ts *testscript.TestScript, name string) syscall.Signal {
	sig := unix.SignalNum("SIG" + name)
	if sig == 0 {
		ts.Fatalf("unknown signal %s", name)
	}
	return sig
}

// interrupt SIGNAL CODE WORKFLOW PROG ARGS... starts PROG, waits until a
// WORKFLOW is pending (so the signal lands mid-workflow), sends SIGNAL, and
// passes if PROG exits with CODE within 30 seconds. Its output is kept for
// the next stdout/stderr checks.
func cmdInterrupt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 4 {
		ts.Fatalf("usage: interrupt SIGNAL CODE WORKFLOW prog [args...]")
	}
	sig := parseSignal(ts, args[0])
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	var stdout, stderr strings.Builder
	c := scriptCmd(ts, args[3], args[4:]...)
	c.Stdout, c.Stderr = &stdout, &stderr
	ts.Check(c.Start())
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	cmdPending(ts, false, args[2:3])
	sent := time.Now()
	ts.Check(c.Process.Signal(sig))
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.Process.Kill()
		ts.Fatalf("%s did not exit within 30s of SIG%s", args[3], args[0])
	}
	ts.Logf("exited %s after the signal", time.Since(sent).Round(time.Millisecond))
	fmt.Fprint(ts.Stdout(), stdout.String())
	fmt.Fprint(ts.Stderr(), stderr.String())
	if got := c.ProcessState.ExitCode(); got != want {
		ts.Fatalf("%s exited %d (%v), want %d\nstderr: %s", args[3], got, c.ProcessState, want, stderr.String())
	}
}
