// Package cmd is durlab's command line: flag parsing, output and exit codes.
// It holds no SQL and no workflow logic; those live in store, lab (the
// runtime) and workflows (the experiments).
//
// Errors become exit codes in exactly one place, exitCode. Nothing below
// Main calls os.Exit, so deferred DBOS shutdowns always run.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/durlab/durlab/internal/tether"
	"github.com/durlab/durlab/lab"
)

// IOStreams are the process's standard streams, injected so tests run
// commands with buffers.
type IOStreams struct {
	Out, Err io.Writer
	// IsTerminal tells whether Err is a terminal (progress bars go there);
	// OutIsTerminal whether Out is (a trace then has colour and redraws).
	IsTerminal    bool
	OutIsTerminal bool
}

// Main runs durlab with the process's arguments and returns its exit code.
func Main() int {
	if pid, orphan := tether.Orphaned(); orphan {
		// The supervisor died before this child could get its parent-death
		// signal: end as that signal would have ended it, before anything runs.
		fmt.Fprintf(os.Stderr, "durlab: the supervisor that started this process (pid %d, in %s) is gone: dying with it\n", pid, tether.Env)
		tether.Die()
	}
	ctx, stop := signalContext(os.Stderr)
	defer stop()
	return Run(ctx, os.Args[1:], IOStreams{Out: os.Stdout, Err: os.Stderr,
		IsTerminal: isTerminal(os.Stderr), OutIsTerminal: isTerminal(os.Stdout)})
}

// signalError is the cause of a context cancelled by SIGINT, SIGTERM or
// SIGHUP, so the exit code can say which (130, 143 or 129).
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "interrupted by " + unix.SignalName(e.sig) }

// stopSignals stop a durlab process gracefully: DBOS shut down, the
// workflow left PENDING. SIGHUP is among them because a closed terminal or
// SSH session must not kill a process outright (Go's default for SIGHUP),
// which left a supervisor's child running unsupervised.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// signalContext is cancelled by the first of stopSignals, with a
// signalError as its cause.
//
// SIGQUIT (Ctrl-\) ends the process at once as a crash does: a SIGKILL to
// itself, so that a supervisor sees a death by signal and restarts the
// experiment, and the workflow stays PENDING for the next run. Go's own
// SIGQUIT prints every goroutine's stack and exits 2, which a supervisor
// must take for bad usage. The line on stderr says which signal it was.
func signalContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals...)
	quit := make(chan os.Signal, 1)
	signal.Notify(quit, syscall.SIGQUIT)
	go func() {
		select {
		case s := <-sigs:
			cancel(signalError{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	// Apart from the goroutine above, which ends at the first stop signal:
	// Ctrl-\ must still work on a process that is slow to stop after Ctrl-C.
	go func() {
		<-quit
		fmt.Fprintf(stderr, "durlab: SIGQUIT: quitting at once as a crash does, by SIGKILL to pid %d; a workflow in flight stays PENDING for the next run\n", os.Getpid())
		tether.Die()
	}()
	return ctx, func() { signal.Stop(sigs); signal.Stop(quit); cancel(nil) }
}

// Run runs durlab with args and returns the exit code.
func Run(ctx context.Context, args []string, io IOStreams) int {
	root := newRootCmd(io)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(bySignal(ctx, err), io.Err)
}

// bySignal names the signal that cancelled ctx in the error of a command
// that stopped for it, so that every command's exit code says which signal
// it was (129, 130 or 143), not only those that name it themselves.
func bySignal(ctx context.Context, err error) error {
	var se signalError
	if err == nil || errors.As(err, &se) || !errors.As(context.Cause(ctx), &se) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, lab.ErrInterrupted) {
		return fmt.Errorf("%w: %w", se, err)
	}
	return err
}

func newRootCmd(streams IOStreams) *cobra.Command {
	g := &globalOptions{io: streams}
	root := &cobra.Command{
		Use:   "durlab",
		Short: "A laboratory for durable execution on DBOS Transact",
		Long: `durlab runs experiments on DBOS Transact for Go: it writes fake users through
workflows and steps, injects failures on purpose (a step that fails after its
write, a process that dies mid-workflow), and reports what was replayed, what
was duplicated and what survived.`,
		Version: buildVersion().String(),
		Args:    cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for durlab (see durlab --help)", args[0])
			}
			return c.Help()
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRun: func(c *cobra.Command, _ []string) {
			g.logLevelSet = c.Flags().Changed("log-level")
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	g.addFlags(root)
	root.AddCommand(newRunCmd(g), newCompareCmd(g), newExploreCmd(g))
	root.AddCommand(newListPendingCmd(g), newWorkflowCmd(g))
	root.AddCommand(newWorkerCmd(g))
	root.AddCommand(newProfileCmd(g, nil))
	root.AddCommand(newVersionCmd(g, nil), newCompletionCmd(), newCleanCmd(g, nil))
	for _, c := range experimentCommands(g) {
		root.AddCommand(c)
	}
	addCompletions(root, g)
	return root
}

func isTerminal(f *os.File) bool {
	return term.IsTerminal(int(f.Fd()))
}
