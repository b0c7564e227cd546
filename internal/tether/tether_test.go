//go:build linux

package tether

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// forkOnDoomedThread starts a child with start from a goroutine locked to
// its thread, which then returns, so that Go ends that thread; it returns
// once the thread is gone from /proc.
func forkOnDoomedThread(t *testing.T, start func(*exec.Cmd) <-chan struct{}) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	c := exec.Command("sleep", "60")
	type forked struct {
		tid  int
		done <-chan struct{}
	}
	ch := make(chan forked)
	var f forked
	for f.tid == 0 {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			if unix.Gettid() == os.Getpid() {
				// Go never ends the main thread, and no goroutine runs
				// on it again once this one returns locked to it.
				ch <- forked{}
				return
			}
			ch <- forked{unix.Gettid(), start(c)}
		}()
		f = <-ch
	}
	if f.done == nil {
		t.FailNow()
	}
	task := "/proc/self/task/" + strconv.Itoa(f.tid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			c.Process.Kill()
			t.Fatalf("thread %d still there after 10s", f.tid)
		}
	}
	return c, f.done
}

// endedBy SIGTERMs c and returns the signal it died by: SIGKILL if its
// parent-death signal had already been sent, which the kernel does before
// the forking thread leaves /proc.
func endedBy(t *testing.T, c *exec.Cmd, done <-chan struct{}) syscall.Signal {
	t.Helper()
	c.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		t.Fatal("child still running 10s after SIGTERM")
	}
	ws := c.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		t.Fatalf("child exited %d, want a death by signal", ws.ExitStatus())
	}
	return ws.Signal()
}

// The hazard Start is built against, shown on this kernel: a child forked
// with a parent-death signal from a thread that then ends is killed,
// though its parent process lives on.
func TestPlainStartDiesWithItsThread(t *testing.T) {
	c, done := forkOnDoomedThread(t, func(c *exec.Cmd) <-chan struct{} {
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: Signal}
		if err := c.Start(); err != nil {
			t.Error(err)
		}
		d := make(chan struct{})
		go func() { c.Wait(); close(d) }()
		return d
	})
	if sig := endedBy(t, c, done); sig != Signal {
		t.Errorf("child died by %s, want %s from its forking thread's end", unix.SignalName(sig), unix.SignalName(Signal))
	}
}

// A child started by Start lives as long as its supervisor, whichever
// goroutine or thread called Start.
func TestStartOutlivesTheCallersThread(t *testing.T) {
	c, done := forkOnDoomedThread(t, func(c *exec.Cmd) <-chan struct{} {
		d, err := Start(c)
		if err != nil {
			t.Error(err)
		}
		return d
	})
	if sig := endedBy(t, c, done); sig != syscall.SIGTERM {
		t.Errorf("child died by %s, want SIGTERM: it was killed while its supervisor lived", unix.SignalName(sig))
	}
}

// A child checks that the supervisor its environment names is its parent,
// and keeps the name from the processes it starts.
func TestOrphaned(t *testing.T) {
	for _, c := range []struct {
		env    string
		orphan bool
	}{
		{strconv.Itoa(os.Getppid()), false},
		{strconv.Itoa(os.Getpid()), true}, // not its own parent: as a dead supervisor's pid
		{"", false},
	} {
		if c.env == "" {
			os.Unsetenv(Env)
		} else {
			t.Setenv(Env, c.env)
		}
		if _, orphan := Orphaned(); orphan != c.orphan {
			t.Errorf("%s=%q: orphan %v, want %v", Env, c.env, orphan, c.orphan)
		}
		if _, ok := os.LookupEnv(Env); ok {
			t.Errorf("%s=%q: still in the environment", Env, c.env)
		}
	}
}
