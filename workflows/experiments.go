// Package workflows holds durlab's experiments, one file each, written
// against package lab: what each teaches is in its file's opening comment.
//
// To add an experiment:
//  1. NAME.go: its descriptor (a lab.Experiment: Main, Children, Judge),
//     and its workflows, top-level functions that wrap lab.Execute;
//  2. one line in Experiments below (DBOS, the commands and run follow);
//  3. a test of what it teaches (TestEveryWorkflowIsRegistered runs it).
package workflows

import (
	"fmt"
	"slices"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
)

// Experiments lists the experiments in the order of the Python originals,
// then any Register added.
func Experiments() []*lab.Experiment {
	return append([]*lab.Experiment{Basic, RetryBad, Recover, SplitSteps, Profile, Dedup, ExactlyOnce}, registered...)
}

var registered []*lab.Experiment

// Register adds an experiment durlab does not ship, before the command
// line is parsed: the tests give the binary one that breaks its own
// guarantee, to see durlab explore catch it.
func Register(e *lab.Experiment) { registered = append(registered, e) }

// Lookup finds an experiment by name.
func Lookup(name string) (*lab.Experiment, bool) {
	for _, e := range Experiments() {
		if e.Name == name {
			return e, true
		}
	}
	return nil, false
}

// ExperimentOf finds the experiment whose descriptor registers the
// workflow named name.
func ExperimentOf(name string) (*lab.Experiment, bool) {
	for _, e := range Experiments() {
		if slices.Contains(e.WorkflowNames(), name) {
			return e, true
		}
	}
	return nil, false
}

// judgeBatches is the verdict and lesson of the batch experiments.
func judgeBatches(rep *lab.Report) {
	result, want := rep.Result, rep.WantUsers()
	rep.AsExpected = rep.Status == string(dbos.WorkflowStatusSuccess) && result == want && rep.UniqueUsers == want
	switch {
	case rep.DeadLetterLesson() != "":
		rep.Lesson = rep.DeadLetterLesson()
	case !rep.AsExpected:
		rep.Lesson = fmt.Sprintf("the workflow ended %s with %d of %d users", rep.Status, result, want)
	case rep.Duplicates > 0:
		rep.Lesson = fmt.Sprintf("%s, %s, yet the window-function count is exactly %d", lab.Count(rep.Duplicates, "duplicate row", "duplicate rows"), rep.DuplicateCauses(), result)
	default:
		rep.Lesson = fmt.Sprintf("no duplicates this time: rows, unique users and the window-function count all equal %d", result)
	}
}
