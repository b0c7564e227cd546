package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	gio "io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/durlab/durlab/internal/startfd"
	"github.com/durlab/durlab/internal/tether"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
	"github.com/durlab/durlab/workflows"
)

// runOptions are the supervisor's own flags; the experiment's flags are
// validated here, then passed through to every child.
type runOptions struct {
	exp          *experimentOptions
	untilSuccess bool
	maxRestarts  int
	restartDelay time.Duration
}

// defaultRestartDelay is the pause before a restart, as the Python ex6's
// loop sleeps 1 s: run and compare share it.
const defaultRestartDelay = time.Second

// runSummary is `run`'s JSON output. The field names are an interface.
type runSummary struct {
	Experiment string             `json:"experiment"`
	Attempts   int                `json:"attempts"`
	Crashes    int                `json:"crashes"`
	ExitCode   int                `json:"exit_code"`
	Report     *lab.Report        `json:"report"`
	Seed       int64              `json:"seed"`
	Elapsed    string             `json:"elapsed"`
	ElapsedMs  float64            `json:"elapsed_ms"`
	Children   []childOutcomeJSON `json:"children"`
}

type childOutcomeJSON struct {
	Pid    int    `json:"pid"`
	Exit   int    `json:"exit_code"`
	Signal string `json:"signal,omitempty"`
}

func newRunCmd(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "run EXPERIMENT [flags]",
		Short: "Run an experiment as a child process, restarting it after each crash",
		Long: `Runs the experiment as a child process of this same binary. With
--until-success it restarts the child after each death by signal (an injected
crash is a SIGKILL) until the experiment finishes, then prints a summary.
Every child uses the same executor ID, application version and seed, so it
recovers what the last one left. Usage errors (exit 2) and failed experiments
(exit 1) are not retried. Ctrl-C, SIGTERM or SIGHUP (a closed terminal) is
forwarded to the child and stops the loop, exit 130, 143 or 129; the workflow
stays pending and a later run resumes it. The child dies with run, even when
run is SIGKILLed, and its workflow is then left as a crash leaves it.

A child that stops because a database is unreachable, corrupt, full or
read-only exits 4, its workflow left PENDING. With --until-success run
restarts one that met an outage after a pause (0.5 s, doubling up to 10 s),
one line per wait, until --outage-timeout (default 60 s) has passed since
the outage began, then gives up with exit 4; a corrupt, full or read-only
database does not pass by itself, and run gives up at once. The child
itself waits out an outage met mid-run for what is left of that time.

Exit codes: 0 the experiment behaved as expected; 1 it did not, or run gave
up after --max-restarts; 2 bad usage or configuration (never retried); 3 a
worker's executor claim was taken over; 4 a database is unreachable,
corrupt, full or read-only (the workflow stays PENDING: run the same command
again once it is back); 128+N the child or run was stopped by signal N.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown experiment %q for run: choose one of %s", args[0], experimentNames())
			}
			return usagef("run needs an experiment: %s", experimentNames())
		},
	}
	opts := &runOptions{}
	f := c.PersistentFlags()
	f.BoolVar(&opts.untilSuccess, "until-success", false, "restart the experiment after each crash until it finishes")
	f.IntVar(&opts.maxRestarts, "max-restarts", 100, "give up after this many restarts")
	f.DurationVar(&opts.restartDelay, "restart-delay", defaultRestartDelay, "pause before each restart")
	for _, exp := range workflows.Experiments() {
		c.AddCommand(newRunExperimentCmd(g, exp, opts))
	}
	return c
}

func experimentNames() string {
	var names []string
	for _, e := range workflows.Experiments() {
		names = append(names, e.Name)
	}
	return fmt.Sprint(names)
}

func newRunExperimentCmd(g *globalOptions, exp *lab.Experiment, opts *runOptions) *cobra.Command {
	c := newExperimentCmd(g, exp, func(eo *experimentOptions) error {
		opts.exp = eo
		return nil
	})
	inner := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := inner(cmd, args); err != nil {
			return err
		}
		if opts.maxRestarts < 0 {
			return usagef("--max-restarts must not be negative, got %d", opts.maxRestarts)
		}
		if opts.restartDelay < 0 {
			return usagef("--restart-delay must not be negative, got %s", opts.restartDelay)
		}
		return supervise(cmd.Context(), cmd, opts)
	}
	return c
}

// childArgs rebuilds the child's command line: the experiment, every flag
// the user set except the supervisor's own, the seed drawn once for all
// children, and JSON output for the supervisor to read.
func childArgs(cmd *cobra.Command, o *runOptions) []string {
	args := []string{o.exp.exp.Name}
	// --outage-timeout is the whole outage's, counted by the supervisor:
	// each child gets what is left of it (withOutageTimeout).
	own := map[string]bool{"until-success": true, "max-restarts": true, "restart-delay": true, "output": true, "seed": true,
		"outage-timeout": true}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if own[f.Name] {
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return append(args, "--seed="+strconv.FormatInt(o.exp.params.Seed, 10), "--output=json",
		"--outage-timeout="+o.exp.outageTimeout.String())
}

// withOutageTimeout gives the next child what is left of the outage timeout.
func withOutageTimeout(args []string, left time.Duration) []string {
	args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--outage-timeout=") })
	return append(args, "--outage-timeout="+left.String())
}

// Waits between restarts into an outage.
const (
	outageFirstWait = 500 * time.Millisecond
	outageMaxWait   = 10 * time.Second
)

// outage is what the supervisor knows of an outage under way: when it
// began, and the next wait.
type outage struct {
	start time.Time // zero: none under way
	wait  time.Duration
}

// childMet counts a child's exit 4 into the outage. A child that lived
// longer than the budget it was given had got going and met a new outage,
// which it waited out itself for that budget; a shorter-lived one met the
// outage no later than its start.
func (u *outage) childMet(lived, budget time.Duration) {
	now := time.Now()
	if lived > budget || u.start.IsZero() {
		u.start, u.wait = now.Add(-min(lived, budget)), outageFirstWait
	}
}

// over: a child got going again, or ended otherwise.
func (u *outage) over() { u.start = time.Time{} }

func supervise(ctx context.Context, cmd *cobra.Command, o *runOptions) error {
	g := o.exp.global
	cfg, err := g.resolve()
	if err != nil {
		return err
	}
	o.exp.noteSeed("durlab run")
	sum, err := superviseLoop(ctx, g.io, childArgs(cmd, o), o)
	if err != nil {
		return err
	}
	if err := printRunSummary(g.io, cfg.json, sum, seedDecides(o.exp.params.Faults)); err != nil {
		return err
	}
	return exitCodeError{sum.ExitCode}
}

// superviseLoop runs `durlab ARGS` as child processes: once, or with
// --until-success again after each death by signal, whichever signal it
// was. SIGINT, SIGTERM and SIGHUP are forwarded to the child and end the
// loop. A child dies with the supervisor (see package tether).
func superviseLoop(ctx context.Context, io IOStreams, args []string, o *runOptions) (runSummary, error) {
	sum := runSummary{Experiment: o.exp.exp.Name, Seed: o.exp.params.Seed}
	self, err := os.Executable()
	if err != nil {
		return sum, fmt.Errorf("cannot find the durlab binary to run: %w", err)
	}
	// The supervisor learns which signal stopped it, to forward the same one.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals...)
	defer signal.Stop(sigs)
	start := time.Now()
	var stopped os.Signal
	var out outage
	budget := o.exp.outageTimeout // the --outage-timeout the next child is given (childArgs)
	for {
		sum.Attempts++
		var stdout bytes.Buffer
		if sum.Attempts > 1 {
			// A restart resumes what the last child left: --new again would
			// start yet another workflow after every crash.
			args = slices.DeleteFunc(args, func(a string) bool { return a == "--new=true" })
		}
		child := exec.Command(self, args...)
		var said lastLine
		child.Stdout, child.Stderr = &stdout, gio.MultiWriter(io.Err, &said)
		childStart := time.Now()
		told, err := startfd.Listen(child)
		if err != nil {
			return sum, err
		}
		done, err := tether.Start(child)
		told.Started()
		if err != nil {
			return sum, fmt.Errorf("cannot start %s: %w", self, err)
		}
	wait:
		for {
			select {
			case <-done:
				break wait
			case s := <-sigs:
				stopped = s
				child.Process.Signal(s)
			case <-ctx.Done():
				// The signal that cancelled ctx may be seen here before
				// it is on sigs; with no signal (a test cancelling ctx),
				// the child is interrupted.
				if stopped == nil {
					stopped = os.Interrupt
					var se signalError
					if errors.As(context.Cause(ctx), &se) {
						stopped = se.sig
					}
					child.Process.Signal(stopped)
				}
				ctx = context.Background()
			}
		}
		ws := child.ProcessState.Sys().(syscall.WaitStatus)
		outcome := childOutcomeJSON{Pid: child.Process.Pid, Exit: ws.ExitStatus()}
		if ws.Signaled() {
			outcome.Signal = unix.SignalName(ws.Signal())
		}
		sum.Children = append(sum.Children, outcome)
		args = withWorkflowID(args, told.ID())
		var rep lab.Report
		if json.Unmarshal(stdout.Bytes(), &rep) == nil && rep.WorkflowID != "" {
			sum.Report = &rep
		}
		restart := false
		switch {
		case stopped != nil:
			sum.ExitCode = 128 + int(stopped.(syscall.Signal))
		case ws.Signaled():
			sum.Crashes++
			sum.ExitCode = 128 + int(ws.Signal())
			switch {
			case !o.untilSuccess:
			case sum.Attempts > o.maxRestarts:
				fmt.Fprintf(io.Err, "durlab run: giving up after %d restarts\n", o.maxRestarts)
				sum.ExitCode = exitUnexpected
			default:
				fmt.Fprintf(io.Err, "durlab run: attempt %d died by %s; restarting in %s\n", sum.Attempts, unix.SignalName(ws.Signal()), o.restartDelay)
				select {
				case <-time.After(o.restartDelay):
					restart = true
				case s := <-sigs:
					stopped = s
					sum.ExitCode = 128 + int(s.(syscall.Signal))
				}
			}
		case ws.ExitStatus() == exitEnvironment && o.untilSuccess:
			sum.ExitCode = exitEnvironment
			out.childMet(time.Since(childStart), budget)
			outageFor := time.Since(out.start)
			left := o.exp.outageTimeout - outageFor
			why := said.reason()
			switch {
			case !mayPass(why):
				// A corrupt, full or read-only database stays so until
				// someone repairs it: waiting helps nothing.
				fmt.Fprintf(io.Err, "durlab run: %s, which will not pass by itself; giving up (exit %d): run the same command once it is repaired; a workflow the child left stays PENDING\n",
					why, exitEnvironment)
			case left <= 0:
				fmt.Fprintf(io.Err, "durlab run: the database is still unreachable after %s (%s); giving up (exit %d): run the same command once it is back; a workflow the child left stays PENDING\n",
					roughly(outageFor), why, exitEnvironment)
			case sum.Attempts > o.maxRestarts:
				fmt.Fprintf(io.Err, "durlab run: giving up after %d restarts\n", o.maxRestarts)
				sum.ExitCode = exitUnexpected
			default:
				wait := min(out.wait, left)
				out.wait = min(2*out.wait, outageMaxWait)
				fmt.Fprintf(io.Err, "durlab run: the database is unreachable (%s); retrying in %s (outage %s of %s)\n",
					why, wait.Round(100*time.Millisecond), roughly(outageFor), o.exp.outageTimeout)
				select {
				case <-time.After(wait):
					restart = true
					budget = max(left-wait, time.Second)
					args = withOutageTimeout(args, budget)
				case s := <-sigs:
					stopped = s
					sum.ExitCode = 128 + int(s.(syscall.Signal))
				}
			}
		default:
			sum.ExitCode = ws.ExitStatus()
		}
		if restart && !(ws.Exited() && ws.ExitStatus() == exitEnvironment) {
			// The child got going again, or died otherwise: a later
			// outage starts its own clock, with the whole timeout.
			out.over()
			budget = o.exp.outageTimeout
			args = withOutageTimeout(args, budget)
		}
		if !restart {
			break
		}
	}
	elapsed := time.Since(start)
	sum.Elapsed, sum.ElapsedMs = elapsed.Round(time.Millisecond).String(), float64(elapsed.Microseconds())/1000
	return sum, nil
}

// roughly is d for a line: tenths of seconds below 10 s, seconds above.
func roughly(d time.Duration) time.Duration {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// lastLine keeps the last line a child wrote on stderr: the one that says
// why it stopped.
type lastLine struct {
	mu   sync.Mutex
	buf  []byte
	last string
}

func (l *lastLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(l.buf[:i])); line != "" {
			l.last = line
		}
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 4096 { // a line that long is no reason worth quoting
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

// mayPass tells, from the child's last line, whether its fault may pass
// by itself: an outage, a busy lock.
func mayPass(reason string) bool {
	return store.FaultSaid(reason).Passes() || reason == "the child said nothing"
}

// reason is what the child's last line said was wrong, without its
// "durlab: " and the driver's words.
func (l *lastLine) reason() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The child's line above says it whole; the cause's own words, in
	// parentheses, need not be said twice.
	r := strings.TrimPrefix(l.last, "durlab: ")
	if i := strings.Index(r, " ("); i >= 0 {
		r = r[:i]
	}
	if r == "" {
		return "the child said nothing"
	}
	return r
}

func printRunSummary(io IOStreams, asJSON bool, sum runSummary, seeded bool) error {
	if asJSON {
		return json.NewEncoder(io.Out).Encode(sum)
	}
	fmt.Fprintf(io.Out, "run         %s: %d attempt%s, %d crash%s, exit %d (%s)\n", sum.Experiment,
		sum.Attempts, plural(sum.Attempts, "", "s"), sum.Crashes, plural(sum.Crashes, "", "es"), sum.ExitCode, sum.Elapsed)
	if sum.Report == nil {
		fmt.Fprintln(io.Out, "report      none: no child finished the experiment")
		return nil
	}
	return printReport(io, false, *sum.Report, 0, seeded)
}

// withWorkflowID gives the next restart the workflow the last child ran
// (see package startfd), unless the child told none or args name it.
func withWorkflowID(args []string, id string) []string {
	if id == "" || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--workflow-id=") }) {
		return args
	}
	return append(args, "--workflow-id="+id)
}
