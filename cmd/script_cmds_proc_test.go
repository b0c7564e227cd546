package cmd_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdProc is the `proc` command, for scripts about the processes a
// supervisor starts:
//
//	proc child NAME VAR   wait until the process NAME (of `lab start`) has a
//	                      child, and set VAR to its pid
//	proc signal PID SIG   send SIG (QUIT, HUP, KILL...) to PID
//	proc gone PID         wait until PID no longer runs: it has exited, or
//	                      is a zombie its new parent has not reaped yet
//	proc deadpid VAR      set VAR to the pid of a process that has ended
//
// Waits give up after a minute.
func cmdProc(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: proc child|signal|gone|deadpid ...")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "child":
		if len(rest) != 2 {
			ts.Fatalf("usage: proc child NAME VAR")
		}
		parent := labProc(ts, rest[0]).cmd.Process.Pid
		waitUntil(ts, "process "+rest[0]+" has a child", func() bool {
			if pid := childOf(parent); pid > 0 {
				ts.Logf("proc child: %s (pid %d) has child %d", rest[0], parent, pid)
				ts.Setenv(rest[1], strconv.Itoa(pid))
				return true
			}
			return false
		})
	case "signal":
		if len(rest) != 2 {
			ts.Fatalf("usage: proc signal PID SIG")
		}
		pid, err := strconv.Atoi(rest[0])
		ts.Check(err)
		ts.Check(syscall.Kill(pid, parseSignal(ts, rest[1])))
	case "gone":
		if len(rest) != 1 {
			ts.Fatalf("usage: proc gone PID")
		}
		waitUntil(ts, "pid "+rest[0]+" is gone", func() bool { return !runs(rest[0]) })
	case "deadpid":
		if len(rest) != 1 {
			ts.Fatalf("usage: proc deadpid VAR")
		}
		c := exec.Command("true")
		ts.Check(c.Run())
		ts.Setenv(rest[0], strconv.Itoa(c.Process.Pid))
	default:
		ts.Fatalf("proc: unknown subcommand %q", sub)
	}
}

// runs tells whether the process pid exists and is not a zombie.
func runs(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces, so cut at the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// waitUntil polls cond until it holds, and fails the script if it does
// not within a minute.
func waitUntil(ts *testscript.TestScript, what string, cond func() bool) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	ts.Fatalf("after a minute, still not: %s", what)
}
