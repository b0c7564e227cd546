package lab

// What a fork's rows are. `durlab workflow fork ID --step N` asks DBOS for
// a new workflow that copies the recorded outputs of ID's steps before N.
// Among those outputs are the child workflows the original started: the
// fork does not start them again, it awaits the very same children, which
// ran once, for the original, and wrote their rows under the original's ID
// (every row carries the ID of its run's main workflow). So a fork's rows
// are its own writes: the batches it started itself. Its count, its report
// and its expected value are about those, and the batches it copied are
// named, with where their rows are. Counting the copied rows as the fork's
// too would make one write count for two workflows, and the fork's figures
// would change when the original's rows are cleaned away.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/store"
)

// StartsChild tells whether step s started a child workflow: DBOS names
// the child in the step that awaits it too.
func StartsChild(s dbos.StepInfo) bool {
	return s.ChildWorkflowID != "" && s.StepName != "DBOS.getResult"
}

// copiedBatches returns the batch numbers a fork took from the workflow it
// was forked from: the children its steps started that are not its own.
// A main workflow starts batch b as its b-th child (RunBatches), and DBOS
// names a child it starts after its parent, "PARENT-STEP".
func (rt *Runtime) copiedBatches(id string) ([]int, error) {
	steps, err := dbos.GetWorkflowSteps(rt.dbos, id, dbos.WithStepsLoadOutput(false))
	if err != nil {
		return nil, err
	}
	var copied []int
	batch := 0
	for _, s := range steps {
		if !StartsChild(s) {
			continue
		}
		batch++
		if !strings.HasPrefix(s.ChildWorkflowID, id+"-") {
			copied = append(copied, batch)
		}
	}
	return copied, nil
}

// copiedPages returns the pages a fork of a one-workflow experiment took
// from the workflow it was forked from: those the original wrote in the
// steps the fork took from their checkpoints and never ran itself. A page
// written by a workflow body, outside a step, is written again by the fork.
func (rt *Runtime) copiedPages(ctx context.Context, fork, orig string) ([]int, error) {
	own, _, err := rt.store.WorkflowEvents(ctx, fork, fork, false)
	if err != nil {
		return nil, err
	}
	replayed, ran := map[int]bool{}, map[int]bool{}
	for _, e := range own {
		switch {
		case e.Kind == store.StepReplayed:
			replayed[e.StepID] = true
		case e.StepID >= 0:
			ran[e.StepID] = true
		}
	}
	theirs, _, err := rt.store.WorkflowEvents(ctx, orig, orig, false)
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var pages []int
	for _, e := range theirs {
		if e.Kind == store.PageWritten && e.StepID >= 0 && replayed[e.StepID] && !ran[e.StepID] && !seen[e.Page] {
			seen[e.Page] = true
			pages = append(pages, e.Page)
		}
	}
	slices.Sort(pages)
	return pages, nil
}

// forkReport fills in what a fork copied, and the input of the batches or
// pages it ran itself, which its figures are about.
func (rt *Runtime) forkReport(ctx context.Context, rep *Report, st dbos.WorkflowStatus, batchExperiment bool) error {
	rep.ForkedFrom = st.ForkedFrom
	if rep.ForkedFrom == "" {
		return nil
	}
	own := rep.input
	if batchExperiment {
		copied, err := rt.copiedBatches(rep.WorkflowID)
		if err != nil {
			return err
		}
		rep.CopiedBatches = copied
		own.Batches -= len(copied)
	} else {
		// The fork's replays may still wait for a write of this process.
		if err := rt.rec.now(ctx); err != nil {
			return err
		}
		copied, err := rt.copiedPages(ctx, rep.WorkflowID, rep.ForkedFrom)
		if err != nil {
			return err
		}
		rep.CopiedPages = copied
		own.Pages -= len(copied)
	}
	rep.own = &own
	return nil
}

// ForkNote says what a fork copied, or returns "".
func (r *Report) ForkNote() string {
	unit, units, copied, own := "batch", "batches", r.CopiedBatches, r.OwnInput().Batches
	if r.input.Batches == 0 {
		unit, units, copied, own = "page", "pages", r.CopiedPages, r.OwnInput().Pages
	}
	switch {
	case r.ForkedFrom == "":
		return ""
	case len(copied) == 0:
		return "forked from " + r.ForkedFrom + ", every " + unit + " written again here"
	}
	what := plural(len(copied), unit+" ", units+" ") + spans(copied)
	mine := "none of its own"
	if own > 0 {
		mine = "its own " + Count(own, unit, units)
	}
	return fmt.Sprintf("forked from %s: %s copied, not run again, %s rows stay under that ID; the figures here are of %s",
		r.ForkedFrom, what, plural(len(copied), "its", "their"), mine)
}

// spans writes sorted numbers as ranges: "1-3, 5".
func spans(ns []int) string {
	var b strings.Builder
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(ns[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(ns[j]))
		}
		i = j + 1
	}
	return b.String()
}
