package cmd_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	_ "github.com/mattn/go-sqlite3"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/durlab/durlab/cmd"
)

// TestMain lets the test binary run as durlab, so the scripts exec the real
// main in a real process: crashes are real SIGKILLs of that process.
func TestMain(m *testing.M) {
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
			"sqlite":    cmdSQLite,
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
	c := exec.Command(args[0], args[1:]...)
	c.Dir = ts.Getenv("WORK")
	c.Env = scriptEnv(ts)
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
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if v := ts.Getenv(k); v != "" || k == "PATH" {
			env = append(env, k+"="+ts.Getenv(k))
		}
	}
	for _, k := range []string{"HOME", "TMPDIR", "WORK", "PATH", "DURLAB_TEST_POSTGRES", "DBOS_SYSTEM_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR"} {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// json PATH OP VALUE compares a field of the JSON on the last command's
// stdout. PATH is dotted (.report.result); VALUE is a literal or another
// PATH. OP is one of == != > >= < <=.
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
		right = lookup(ts, doc, args[2])
	}
	ok := compare(ts, left, args[1], right)
	if ok == neg {
		ts.Fatalf("json %s (%v) %s %v: false", args[0], left, args[1], right)
	}
}

func lookup(ts *testscript.TestScript, doc any, path string) any {
	cur := doc
	for _, key := range strings.Split(strings.TrimPrefix(path, "."), ".") {
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
