// Package startfd tells a supervisor which workflow its child runs.
//
// durlab run --until-success and durlab explore restart an experiment after
// each death. A child killed after its workflow ended, but before it
// exited, leaves nothing pending: a restart that looked for leftovers would
// start a second run. So the child writes its main workflow's ID, once it
// has started or attached to it, to the file descriptor named by
// DURLAB_START_FD, and the supervisor gives every later restart
// --workflow-id with it. A child killed before it wrote the ID started no
// workflow, or left it pending for the restart to find as a leftover.
package startfd

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// Env names the descriptor in the child's environment.
const Env = "DURLAB_START_FD"

// told: Tell closes the descriptor, whose number the process may then
// reuse for a file of its own, so it must never write there again.
var told sync.Once

// Tell writes id to the supervisor's descriptor, if this process has one.
// Only the first call of a process tells.
func Tell(id string) {
	told.Do(func() {
		fd, err := strconv.Atoi(os.Getenv(Env))
		if err != nil || fd < 3 {
			return
		}
		f := os.NewFile(uintptr(fd), "durlab-start")
		f.WriteString(id + "\n")
		f.Close()
	})
}

// Listener reads what one child tells.
type Listener struct {
	r    *os.File
	w    *os.File
	done chan struct{}
	mu   sync.Mutex
	id   string
}

// Listen prepares c, not yet started, to tell its workflow ID.
func Listen(c *exec.Cmd) (*Listener, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.ExtraFiles = append(c.ExtraFiles, w)
	fd := 3 + len(c.ExtraFiles) - 1
	if c.Env == nil {
		c.Env = os.Environ()
	}
	c.Env = append(c.Env, Env+"="+strconv.Itoa(fd))
	l := &Listener{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		b, _ := io.ReadAll(r)
		l.mu.Lock()
		l.id = strings.TrimSpace(string(b))
		l.mu.Unlock()
	}()
	return l, nil
}

// Started closes this process's copy of the write end, once c has started
// (or failed to), so that the read ends when the child does.
func (l *Listener) Started() { l.w.Close() }

// ID is what the child told, "" if nothing: call it after the child has
// exited and Started.
func (l *Listener) ID() string {
	<-l.done
	l.r.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}
