// Package cmd is durlab's command line: flag parsing, output and exit codes.
// It holds no SQL and no workflow logic; those live in store, lab (the
// runtime) and workflows (the experiments).
//
// Errors become exit codes in exactly one place, exitCode. Nothing below
// Main calls os.Exit, so deferred DBOS shutdowns always run.
package cmd

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
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
	ctx, stop := signalContext()
	defer stop()
	return Run(ctx, os.Args[1:], IOStreams{Out: os.Stdout, Err: os.Stderr,
		IsTerminal: isTerminal(os.Stderr), OutIsTerminal: isTerminal(os.Stdout)})
}

// signalError is the cause of a context cancelled by SIGINT or SIGTERM, so
// the exit code can say which (130 or 143).
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "interrupted by " + unix.SignalName(e.sig) }

// signalContext is cancelled by the first SIGINT or SIGTERM, with a
// signalError as its cause.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-sigs:
			cancel(signalError{s.(syscall.Signal)})
		case <-ctx.Done():
		}
	}()
	return ctx, func() { signal.Stop(sigs); cancel(nil) }
}

// Run runs durlab with args and returns the exit code.
func Run(ctx context.Context, args []string, io IOStreams) int {
	root := newRootCmd(io)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return exitCode(err, io.Err)
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
