package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

// writePageStep is the seed's step of ex1 to ex3: it generates a page and
// writes it, in one step. failAfterWrite, if set, is asked after a
// successful write whether this attempt must fail anyway.
func (l *Lab) writePageStep(ctx dbos.Context, wfID string, page, size int, analyzedAt time.Time,
	failAfterWrite func(attempt int) bool, opts ...dbos.StepOption) error {
	attempt := 0 // DBOS calls this same closure for every retry in this process
	opts = append(opts, dbos.WithStepName(fmt.Sprintf("write_page_%d", page)))
	_, err := dbos.RunAsStep(ctx, func(sctx context.Context) (int, error) {
		attempt++
		l.count(wfID, func(s *store.Stats) { s.StepAttempts++ })
		if err := l.strict.InsertPage(sctx, fake.Page(page, size), wfID, analyzedAt); err != nil {
			if errors.Is(err, store.ErrDuplicateUser) {
				l.count(wfID, func(s *store.Stats) { s.UniqueViolations++ })
			}
			return 0, err
		}
		if failAfterWrite != nil && failAfterWrite(attempt) {
			l.count(wfID, func(s *store.Stats) { s.InjectedFailures++ })
			return 0, fmt.Errorf("injected failure after writing page %d (attempt %d)", page, attempt)
		}
		return size, nil
	}, opts...)
	return err
}

// countStep counts what workflow wfID wrote to t, as a step: the counts
// are the workflow's output, checkpointed, so the report never depends on
// rows a later run may empty away.
func (l *Lab) countStep(ctx dbos.Context, t store.Table, wfID string) (store.Counts, error) {
	return dbos.RunAsStep(ctx, func(sctx context.Context) (store.Counts, error) {
		return t.Counts(sctx, wfID)
	}, dbos.WithStepName("count_users"))
}

// workflowContext is what every experiment workflow reads first. The
// execution number costs a system-database read, and only fault decisions
// use it: with no fault knob above 0 it is left at 0.
func (l *Lab) workflowContext(ctx dbos.Context) (wfID string, execution int, err error) {
	wfID, err = dbos.GetWorkflowID(ctx)
	if err != nil {
		return "", 0, err
	}
	f := l.faults
	if f.FailProb > 0 || f.GenFailProb > 0 || f.CrashProb > 0 || f.CommitCrashProb > 0 {
		execution = l.execution(wfID)
	}
	return wfID, execution, nil
}

// pagesExpected is the Expected text of the one-workflow experiments.
func pagesExpected(p Params) string {
	return fmt.Sprintf("%d unique users (%d pages of %d)", p.Input.Users(), p.Pages, p.PageSize)
}

// succeeded: the workflow ended in SUCCESS with every user written.
func succeeded(rep Report) bool {
	return rep.Status == string(dbos.WorkflowStatusSuccess) && rep.UniqueUsers == rep.input.Users()
}

// deadLetterLesson explains a dead-lettered workflow, or returns "".
func deadLetterLesson(rep Report) string {
	if rep.Status != string(dbos.WorkflowStatusMaxRecoveryAttemptsExceeded) {
		return ""
	}
	return fmt.Sprintf("the workflow crashed in every execution; after %d recoveries DBOS dead-lettered it and will not run it again by itself (`durlab workflow resume %s` forces it)", rep.Recoveries, rep.WorkflowID)
}
