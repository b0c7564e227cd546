package cmd

// Shell completion: cobra's scripts call `durlab __complete ARGS...`, which
// runs the functions below with the flags parsed, so that a --system-db on
// the line is the database completed from. They read the system database
// through a client, as the inspection commands do: completing runs nothing.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/workflows"
)

// completionTimeout bounds a completion's reads: a shell waits for them.
const completionTimeout = 5 * time.Second

// completionLimit is how many workflow IDs one completion offers.
const completionLimit = 100

var completionShells = []string{"bash", "zsh", "fish", "powershell"}

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script",
		Long: `Print the script that makes the shell complete durlab's commands, flags,
experiment and queue names, statuses, and workflow IDs (newest first, with
their name and status), read from the system database without running
anything.

  bash:  source <(durlab completion bash)       # needs bash-completion
  zsh:   durlab completion zsh > "${fpath[1]}/_durlab"
  fish:  durlab completion fish > ~/.config/fish/completions/durlab.fish`,
		ValidArgs: completionShells,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains(completionShells, args[0]) {
				return usagef("completion takes one shell, one of %s; got %q", strings.Join(completionShells, ", "), args)
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			root, out := c.Root(), c.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return root.GenPowerShellCompletionWithDesc(out)
		},
	}
}

// addCompletions attaches the dynamic completions to every command of the
// tree: workflow IDs where a command takes one, values of the flags that
// take a known set.
func addCompletions(root *cobra.Command, g *globalOptions) {
	root.CompletionOptions.DisableDefaultCmd = true // newCompletionCmd replaces it
	root.RegisterFlagCompletionFunc("output", fixedValues("text", "json", "jsonl"))
	root.RegisterFlagCompletionFunc("log-level", fixedValues("debug", "info", "warn", "error", "off"))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Args != nil && isWorkflowIDCommand(c) {
			c.ValidArgsFunction = completeWorkflowIDs(g)
		}
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			switch f.Name {
			case "status":
				c.RegisterFlagCompletionFunc(f.Name, completeStatuses)
			case "name":
				c.RegisterFlagCompletionFunc(f.Name, fixedValues(workflowNames()...))
			case "queue":
				c.RegisterFlagCompletionFunc(f.Name, completeQueues(g))
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// isWorkflowIDCommand: a workflow subcommand whose usage line names its
// argument ID ("get ID", "fork ID --step N"), the argument oneWorkflowID
// takes.
func isWorkflowIDCommand(c *cobra.Command) bool {
	return c.Parent() != nil && c.Parent().Name() == "workflow" && strings.Fields(c.Use + " -")[1] == "ID"
}

func fixedValues(vals ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return vals, cobra.ShellCompDirectiveNoFileComp
	}
}

// workflowNames are the DBOS names of every experiment's workflows.
func workflowNames() []string {
	var names []string
	for _, e := range workflows.Experiments() {
		names = append(names, e.WorkflowNames()...)
	}
	return names
}

// completeStatuses completes a comma-separated --status list.
func completeStatuses(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	done, _ := cutLast(toComplete, ",")
	var out []string
	for _, s := range workflowStatuses {
		if !slices.Contains(strings.Split(strings.ToUpper(done), ","), string(s)) {
			out = append(out, done+string(s))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// cutLast splits s after the last sep: "A,B,C" -> "A,B,", "C".
func cutLast(s, sep string) (before, after string) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return "", s
	}
	return s[:i+len(sep)], s[i+len(sep):]
}

// completionInspector opens a client on the system database the command
// line names, with every DBOS line silenced: a shell shows a completion's
// stderr mid-line, or not at all.
func completionInspector(c *cobra.Command, g *globalOptions) (*inspector, context.Context, func(), error) {
	quiet := *g
	quiet.logLevel, quiet.quiet, quiet.output = "off", true, "text"
	parent := c.Context()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, completionTimeout)
	in, err := openInspector(ctx, &quiet)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return in, ctx, func() { in.Close(); cancel() }, nil
}

// completeWorkflowIDs offers the workflow IDs starting with what is typed,
// newest first, each described by its name, batch number and status.
func completeWorkflowIDs(g *globalOptions) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		in, _, done, err := completionInspector(c, g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer done()
		filters := []dbos.ListWorkflowsOption{dbos.WithFilterSortDesc(), dbos.WithFilterLimit(completionLimit),
			dbos.WithFilterLoadInput(true), dbos.WithFilterLoadOutput(false)}
		if toComplete != "" {
			filters = append(filters, dbos.WithFilterWorkflowIDPrefix(toComplete))
		}
		wfs, err := dbos.ListWorkflows(in.client, filters...)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		out := make([]string, 0, len(wfs))
		for _, st := range wfs {
			desc := st.Name
			if b := batchOf(st); b > 0 {
				desc += fmt.Sprintf(" batch %d", b)
			}
			out = append(out, fmt.Sprintf("%s\t%s %s", st.ID, desc, st.Status))
		}
		return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	}
}

// completeQueues offers the queues of the system database that durlab can
// use (not DBOS's internal queue).
func completeQueues(g *globalOptions) cobra.CompletionFunc {
	return func(c *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		in, _, done, err := completionInspector(c, g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer done()
		queues, err := dbos.ListQueues(in.client, dbos.WithListQueuesApplicationNames(lab.AppName))
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, q := range queues {
			if lab.CheckQueueName(q.GetName()) == nil {
				out = append(out, q.GetName())
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
