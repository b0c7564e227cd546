package workflows

import (
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

// defaultWait is the seed's pause before deciding about a pending workflow.
const defaultWait = 5 * time.Second

// register registers every experiment's workflows, so that Launch can
// recover any of them.
func (l *Lab) register() {
	n := l.faults.MaxRecoveryAttempts
	if n <= 0 {
		n = 100 // DBOS's default
	}
	recoveries := dbos.WithMaxRecoveryAttempts(n)
	dbos.RegisterWorkflow(l.dbos, l.basicWorkflow, dbos.WithWorkflowName(basicWorkflowName))
	dbos.RegisterWorkflow(l.dbos, l.retryBadWorkflow, dbos.WithWorkflowName(retryBadWorkflowName))
	dbos.RegisterWorkflow(l.dbos, l.recoverWorkflow, dbos.WithWorkflowName(recoverWorkflowName), recoveries)
	dbos.RegisterWorkflow(l.dbos, l.splitStepsWorkflow, dbos.WithWorkflowName(splitStepsWorkflowName), recoveries)
	dbos.RegisterWorkflow(l.dbos, l.profileWorkflow, dbos.WithWorkflowName(profileWorkflowName))
	dbos.RegisterWorkflow(l.dbos, l.profileBatchWorkflow, dbos.WithWorkflowName(profileBatchWorkflowName))
	dbos.RegisterWorkflow(l.dbos, l.dedupWorkflow, dbos.WithWorkflowName(dedupWorkflowName), recoveries)
	dbos.RegisterWorkflow(l.dbos, l.dedupBatchWorkflow, dbos.WithWorkflowName(dedupBatchWorkflowName), recoveries)
	dbos.RegisterWorkflow(l.dbos, l.exactlyOnceWorkflow, dbos.WithWorkflowName(exactlyOnceWorkflowName), recoveries)
	dbos.RegisterWorkflow(l.dbos, l.exactlyOnceBatchWorkflow, dbos.WithWorkflowName(exactlyOnceBatchWorkflowName), recoveries)
}
