package cmd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/durlab/durlab/internal/pgtest"
	"github.com/durlab/durlab/lab"
)

// cmdLab is the `lab` command of the Postgres and worker scripts:
//
//	lab pgdb VAR...            a fresh database per VAR, dropped when the script ends;
//	                           with no server the script must then skip (see below),
//	                           and under CI=true it fails
//	lab pgunborn VAR...        as pgdb, but the databases do not exist yet: they are
//	                           dropped at the end if something created them
//	lab start NAME PROG ARGS   start PROG in the background; its output goes to
//	                           $WORK/NAME.stdout and $WORK/NAME.stderr
//	lab signal NAME SIG        send SIG (INT, TERM, KILL) to it
//	lab wait NAME CODE         wait for it to end with exit code CODE, or by the
//	                           signal CODE (KILL), or with one of CODE|CODE...;
//	                           its output becomes the stdout and stderr of the
//	                           next checks
//	lab waitfor FILE REGEXP    wait until FILE (e.g. w1.stderr) matches REGEXP
//	lab busy EXECUTOR [VAR [SIG NAME]]
//	                           wait until a workflow of EXECUTOR is PENDING (it
//	                           runs there now), set VAR to its ID and at once
//	                           send SIG to the process NAME
//
// A custom command cannot skip a script, so `lab pgdb` puts an executable
// named durlab-postgres on the script's PATH when the server answers, and
// a Postgres script goes on with:
//
//	[!exec:durlab-postgres] skip 'POSTGRES TESTS SKIPPED: no server'
//
// Waits give up after a minute; processes still running when the script
// ends are killed.
func cmdLab(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: lab pgdb|pgunborn|start|signal|wait|waitfor|busy ...")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "pgdb":
		labPGDB(ts, rest, true)
	case "pgunborn":
		labPGDB(ts, rest, false)
	case "start":
		labStart(ts, rest)
	case "signal":
		if len(rest) != 2 {
			ts.Fatalf("usage: lab signal NAME SIG")
		}
		p := labProc(ts, rest[0])
		ts.Check(p.cmd.Process.Signal(parseSignal(ts, rest[1])))
	case "wait":
		labWait(ts, rest)
	case "waitfor":
		labWaitFor(ts, rest)
	case "busy":
		labBusy(ts, rest)
	default:
		ts.Fatalf("lab: unknown subcommand %q", sub)
	}
}

var postgresMarker = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "durlab-pg-marker-")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "durlab-postgres"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
})

func labPGDB(ts *testscript.TestScript, vars []string, create bool) {
	if len(vars) == 0 {
		ts.Fatalf("usage: lab pgdb|pgunborn VAR...")
	}
	if msg, fatal := pgtest.Missing(); msg != "" {
		if fatal {
			ts.Fatalf("%s", msg)
		}
		ts.Logf("%s", msg)
		fmt.Fprintln(os.Stderr, "durlab scripts: "+msg)
		return
	}
	for _, v := range vars {
		var u string
		var drop func() error
		var err error
		if create {
			u, drop, err = pgtest.Create()
		} else {
			// Not Create then Unborn: the database Create made would be
			// left behind, its drop lost.
			u, _, drop, err = pgtest.Unborn()
		}
		ts.Check(err)
		ts.Defer(func() {
			if err := drop(); err != nil {
				ts.Logf("lab pgdb: %v", err)
			}
		})
		ts.Setenv(v, u)
	}
	dir, err := postgresMarker()
	ts.Check(err)
	ts.Setenv("PATH", dir+string(os.PathListSeparator)+ts.Getenv("PATH"))
}

// labProcess is a process started by `lab start`.
type labProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
	err  error
}

var labProcs sync.Map // "<script work dir>\x00NAME" -> *labProcess

func labKey(ts *testscript.TestScript, name string) string {
	return ts.Getenv("WORK") + "\x00" + name
}

func labProc(ts *testscript.TestScript, name string) *labProcess {
	p, ok := labProcs.Load(labKey(ts, name))
	if !ok {
		ts.Fatalf("lab: no process named %s", name)
	}
	return p.(*labProcess)
}

func labStart(ts *testscript.TestScript, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: lab start NAME PROG [ARGS...]")
	}
	name := args[0]
	if _, ok := labProcs.Load(labKey(ts, name)); ok {
		ts.Fatalf("lab: a process named %s is still known; wait for it first", name)
	}
	stdout, err := os.Create(ts.MkAbs(name + ".stdout"))
	ts.Check(err)
	stderr, err := os.Create(ts.MkAbs(name + ".stderr"))
	ts.Check(err)
	c := scriptCmd(ts, args[1], args[2:]...)
	c.Stdout, c.Stderr = stdout, stderr
	ts.Check(c.Start())
	p := &labProcess{cmd: c, done: make(chan struct{})}
	go func() {
		p.err = c.Wait()
		stdout.Close()
		stderr.Close()
		close(p.done)
	}()
	key := labKey(ts, name)
	labProcs.Store(key, p)
	ts.Defer(func() {
		select {
		case <-p.done:
		default:
			c.Process.Kill()
			<-p.done
		}
		labProcs.CompareAndDelete(key, p)
	})
}

func labWait(ts *testscript.TestScript, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: lab wait NAME CODE|SIGNAL")
	}
	p := labProc(ts, args[0])
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		ts.Fatalf("lab: %s still running after a minute", args[0])
	}
	labProcs.Delete(labKey(ts, args[0]))
	fmt.Fprint(ts.Stdout(), ts.ReadFile(args[0]+".stdout"))
	fmt.Fprint(ts.Stderr(), ts.ReadFile(args[0]+".stderr"))
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	got := strconv.Itoa(ws.ExitStatus())
	if ws.Signaled() {
		got = "signal " + ws.Signal().String()
	}
	// CODE may list the codes allowed, 0|2, for processes that race.
	ok := false
	for _, want := range strings.Split(args[1], "|") {
		if _, err := strconv.Atoi(want); err != nil {
			want = "signal " + parseSignal(ts, want).String()
		}
		ok = ok || got == want
	}
	if !ok {
		want := args[1]
		var ee *exec.ExitError
		if !errors.As(p.err, &ee) && p.err != nil {
			got = p.err.Error()
		}
		ts.Fatalf("lab: %s ended with %s, want %s", args[0], got, want)
	}
}

func labWaitFor(ts *testscript.TestScript, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: lab waitfor FILE REGEXP")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(ts.MkAbs(args[0])); err == nil && re.Match(b) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("lab: %s does not match %q after a minute", args[0], args[1])
}

func labBusy(ts *testscript.TestScript, args []string) {
	if len(args) != 1 && len(args) != 2 && len(args) != 4 {
		ts.Fatalf("usage: lab busy EXECUTOR [VAR [SIGNAL NAME]]")
	}
	var target *labProcess
	if len(args) == 4 {
		target = labProc(ts, args[3])
	}
	systemDB := ts.Getenv("DBOS_SYSTEM_DATABASE_URL")
	if systemDB == "" {
		systemDB = "sqlite:" + filepath.Join(ts.Getenv("WORK"), ".durlab", "dbos.sqlite")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := dbos.NewClient(ctx, dbos.ClientConfig{DatabaseURL: systemDB, AppName: lab.AppName,
		Logger: slog.New(slog.DiscardHandler)})
	ts.Check(err)
	defer client.Shutdown(client, 5*time.Second)
	for ctx.Err() == nil {
		wfs, err := dbos.ListWorkflows(client, dbos.WithFilterExecutorIDs(args[0]),
			dbos.WithFilterStatus(dbos.WorkflowStatusPending))
		if err == nil && len(wfs) > 0 {
			ts.Logf("lab busy: %s runs %s (%s)", args[0], wfs[0].ID, wfs[0].Name)
			if len(args) >= 2 {
				ts.Setenv(args[1], wfs[0].ID)
			}
			if target != nil {
				ts.Check(target.cmd.Process.Signal(parseSignal(ts, args[2])))
			}
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	ts.Fatalf("lab: no PENDING workflow of executor %s after a minute", args[0])
}
