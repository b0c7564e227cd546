package lab

// Leftovers: the workflows an earlier process of this executor left
// PENDING (a crash, Ctrl-C). DBOS's Launch recovers every one of them, and
// an experiment's Run attaches to the newest of its own (startOrAttach).
//
// With Config.New the user asked for a new workflow instead: the leftovers
// must stay as they are for a later run. Launch recovers them all the same
// (DBOS has no way to launch without recovering), so their executions are
// parked: Execute returns without running the body when the process shuts
// down, and DBOS, which records no outcome for a workflow whose context its
// shutdown cancelled, leaves them PENDING. Their fault decisions never run,
// so a leftover's crash points cannot kill the new run. DBOS still counts
// the dispatch: each parked launch is one of their recovery attempts.

import (
	"context"
	"fmt"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

// Start says how Run began, before it waits: the workflow it started or
// attached to, and that workflow's own input, which for a resumed workflow
// is the one it was started with, whatever this command's flags say.
type Start struct {
	WorkflowID string
	Attached   bool
	Input      Input
}

// parks tells whether the execution of workflow id is to be parked.
func (rt *Runtime) parks(id string) bool { return rt.parked[id] }

// park holds a parked execution until DBOS shuts down, and returns the
// shutdown's cause: DBOS then leaves the workflow PENDING.
func park(ctx dbos.Context) error {
	<-ctx.Done()
	return context.Cause(ctx)
}

// parkLeftovers marks every workflow this executor left pending, read
// before Launch, so that the executions Launch recovers are parked.
func (rt *Runtime) parkLeftovers(before map[string][]string) {
	rt.parked = map[string]bool{}
	for _, ids := range before {
		for _, id := range ids {
			rt.parked[id] = true
		}
	}
}

// sayLeftovers tells, when Run attached to one leftover named name, what
// the others of that name do: Launch recovered them too, and they run
// beside it in this process (their children, if any, with them).
func (rt *Runtime) sayLeftovers(name string) {
	others := rt.leftPending[name]
	if len(others) == 0 {
		return
	}
	more := ""
	if len(others) > 1 {
		more = ", ..."
	}
	fmt.Fprintf(rt.notices, "durlab: %s left pending by earlier processes (%s%s): DBOS's launch recovered %s too, and %s in this process beside it\n",
		Count(len(others), "more workflow", "more workflows"), others[0], more,
		plural(len(others), "it", "them"), plural(len(others), "it runs", "they run"))
}
