// Package tether ties a supervised child's life to its supervisor's.
//
// durlab run and durlab explore start experiments as child processes. A
// child that outlives its supervisor runs on unsupervised: nobody reads its
// report, and it holds its executor ID's claim, so the next run is refused
// as "in use". So every child started here gets a parent-death signal,
// and checks at its start that the process that started it is still its
// parent.
package tether

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Env names, in a child's environment, the pid of the supervisor that
// started it.
const Env = "DURLAB_SUPERVISOR_PID"

// Signal is what a child gets when its supervisor dies. SIGKILL, not
// SIGTERM: a supervisor that dies (SIGKILL, the OOM killer, a crash) is a
// crash of the whole run, so the child ends as a crash ends, with its
// workflow PENDING for the next run to recover from its last checkpoint.
// A graceful stop would gain nothing (the report it ends with goes to a
// pipe nobody reads) and could take seconds to shut DBOS down, holding
// the claim the next run needs; a SIGKILLed child's claim dies with it.
const Signal = syscall.SIGKILL

// Start starts c, not yet started, tied to this process, and waits for it
// in the background: done is closed once c has exited and c.ProcessState
// is set. Do not call c.Wait.
//
// The kernel sends the parent-death signal when the thread that forked the
// child ends, not the process (https://go.dev/issue/27505), and Go ends a
// thread whenever a goroutine locked to it returns: a child started from
// such a goroutine would be killed while its supervisor lives on. So the
// fork happens on a goroutine locked to its thread until the child has
// been reaped; no other goroutine runs on a locked thread, so none can end it.
func Start(c *exec.Cmd) (done <-chan struct{}, err error) {
	setDeathSignal(c)
	if c.Env == nil {
		c.Env = os.Environ()
	}
	c.Env = append(c.Env, Env+"="+strconv.Itoa(os.Getpid()))
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := c.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}

// Orphaned tells whether this process was started by a supervisor that is
// no longer its parent, and that supervisor's pid. A supervisor that dies
// after the fork but before the child's prctl sends no parent-death
// signal; Go's fork re-checks the parent after its prctl, and this check,
// made by the child itself, holds whatever the runtime's fork does and
// where there is no parent-death signal at all. It removes Env from this
// process's environment, so that the processes this one starts are not
// taken for orphans of it.
func Orphaned() (supervisor int, orphan bool) {
	v, ok := os.LookupEnv(Env)
	if !ok {
		return 0, false
	}
	os.Unsetenv(Env)
	pid, err := strconv.Atoi(v)
	if err != nil {
		return 0, false
	}
	return pid, os.Getppid() != pid
}

// Die ends this process at once as a crash does: SIGKILL, no deferred
// function, no DBOS shutdown. Its supervisor sees a death by signal.
func Die() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	for {
		// SIGKILL to oneself lands before kill returns; this only keeps
		// the caller from going on if it somehow has not yet.
		time.Sleep(time.Second)
	}
}
