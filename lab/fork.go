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
	"fmt"
	"strconv"
	"strings"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

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
		if s.ChildWorkflowID == "" || s.StepName == "DBOS.getResult" {
			continue
		}
		batch++
		if !strings.HasPrefix(s.ChildWorkflowID, id+"-") {
			copied = append(copied, batch)
		}
	}
	return copied, nil
}

// forkReport fills in what a fork copied, and the input of the batches it
// ran itself, which its figures are about.
func (rt *Runtime) forkReport(rep *Report, st dbos.WorkflowStatus, batchExperiment bool) error {
	rep.ForkedFrom = st.ForkedFrom
	if rep.ForkedFrom == "" || !batchExperiment {
		return nil
	}
	copied, err := rt.copiedBatches(rep.WorkflowID)
	if err != nil {
		return err
	}
	rep.CopiedBatches = copied
	rep.own = rep.input
	rep.own.Batches -= len(copied)
	return nil
}

// ForkNote says what a fork copied, or returns "".
func (r *Report) ForkNote() string {
	switch {
	case r.ForkedFrom == "":
		return ""
	case len(r.CopiedBatches) == 0:
		return "forked from " + r.ForkedFrom + ", every batch run again here"
	}
	copied := plural(len(r.CopiedBatches), "batch ", "batches ") + spans(r.CopiedBatches)
	own := "none of its own"
	if r.own.Batches > 0 {
		own = "its own " + Count(r.own.Batches, "batch", "batches")
	}
	return fmt.Sprintf("forked from %s: %s copied, not run again, %s rows stay under that ID; the figures here are of %s",
		r.ForkedFrom, copied, plural(len(r.CopiedBatches), "its", "their"), own)
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
