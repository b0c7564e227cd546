package lab

// The stream: durlab's own one-line events on stderr, for what matters in a
// run (a retry and why, a recovery and what it skipped). They replace
// DBOS's timestamped ERROR lines for the failures the lab injects on
// purpose, which make a correct run look broken; `-q` silences them.

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

// Retries is how DBOS retries a step: Attempts in all (0 or 1: none),
// waiting Interval before the second and Factor times longer before each
// next one, up to DBOS's 5 s. Zero Interval and Factor are DBOS's defaults
// (100 ms, 2).
type Retries struct {
	Attempts int
	Interval time.Duration
	Factor   float64
}

const (
	dbosDefaultInterval = 100 * time.Millisecond
	dbosDefaultFactor   = 2.0
	dbosMaxInterval     = 5 * time.Second
)

func (r Retries) options() []dbos.StepOption {
	if r.Attempts <= 1 {
		return nil
	}
	opts := []dbos.StepOption{dbos.WithStepMaxRetries(r.Attempts - 1)}
	if r.Interval > 0 {
		opts = append(opts, dbos.WithStepBaseInterval(r.Interval))
	}
	if r.Factor > 0 {
		opts = append(opts, dbos.WithStepBackoffFactor(r.Factor))
	}
	return opts
}

// wait is DBOS's nominal wait after attempt n fails (it adds ±5% jitter).
func (r Retries) wait(n int) time.Duration {
	interval, factor := cmpOr(r.Interval, dbosDefaultInterval), cmpOr(r.Factor, dbosDefaultFactor)
	d := time.Duration(float64(interval) * math.Pow(factor, float64(n-1)))
	return min(d, dbosMaxInterval)
}

func cmpOr[T comparable](v, fallback T) T {
	var zero T
	if v == zero {
		return fallback
	}
	return v
}

// say writes one line of the stream.
func (rt *Runtime) say(format string, args ...any) {
	if rt.stream != nil {
		fmt.Fprintf(rt.stream, "durlab: "+format+"\n", args...)
	}
}

// who names an execution in the stream: its role in the run, and its
// execution number once it has been recovered.
func (x *Execution) who() string {
	who := strings.Replace(x.role, "batch-", "batch ", 1)
	if x.number > 1 {
		who += fmt.Sprintf(" (execution %d)", x.number)
	}
	return who
}

// ErrAnnounced matches the errors of attempts the stream has told of:
// DBOS's own line for them says less.
var ErrAnnounced = errors.New("told by durlab's stream")

// announced is an attempt's error once the stream has told of it. It reads
// and matches as the error itself.
type announced struct{ error }

func (e announced) Unwrap() error        { return e.error }
func (e announced) Is(target error) bool { return target == ErrAnnounced }

// sayFailed tells of a failed attempt, and what DBOS does next, and returns
// its error marked as told of.
func (a *Attempt) sayFailed(err error, retries Retries) error {
	if a.x.rt.stream == nil {
		return err
	}
	what := fmt.Sprintf("%s attempt %d", a.step, a.N)
	if rows := a.rows; rows > 0 {
		what += " wrote " + Count(rows, "row", "rows") + ", then"
	}
	why := "failed: " + oneLine(err.Error())
	if errors.Is(err, ErrInjected) {
		why = "failed (injected)"
	}
	next := "out of retries"
	switch {
	case errors.Is(err, ErrTreeStopped):
		why, next = "stopped before writing", strings.TrimPrefix(oneLine(err.Error()), ErrTreeStopped.Error()+": ")
	case a.N < retries.Attempts:
		next = fmt.Sprintf("DBOS retries in %s", retries.wait(a.N))
	}
	a.x.rt.say("%s: %s %s; %s", a.x.who(), what, why, next)
	return announced{err}
}

// sayRecovered tells, once, what a recovered execution took from its
// checkpoints before it ran anything.
func (x *Execution) sayRecovered(next string) {
	x.mu.Lock()
	replayed, said := x.replays, x.saidRecovered
	x.saidRecovered = true
	x.mu.Unlock()
	if said || replayed == 0 {
		return
	}
	if x.forkedFrom != "" && x.number == 1 {
		// A fork's first execution: the checkpoints are copies of the
		// original's (fork.go).
		x.rt.say("%s: forked from %s; %s taken from its checkpoints, %s", x.who(), x.forkedFrom, Count(replayed, "step", "steps"), next)
		return
	}
	x.rt.say("%s: recovered; %s taken from their checkpoints, %s", x.who(), Count(replayed, "step", "steps"), next)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
