package lab

// Queues: how batch workflows reach `durlab worker` processes.
//
// DBOS keeps every queue's configuration in the system database, and each
// process reloads it about once a second. So:
//
//   - Listening. A DBOS process with an empty listen set dequeues from every
//     queue in the system database. durlab never leaves it empty: a worker
//     listens to its queue, an experiment to a queue that does not exist.
//     (DBOS's internal queue, where Launch puts the recovered workflows that
//     were on no queue, is always listened to by every process.)
//   - An experiment given --queue enqueues its batches and does not run them
//     while a worker serves the queue. Each worker holds a shared lock named
//     after its queue for its lifetime (claim.go); an experiment that
//     finds the lock free runs the batches itself, and hands them back as
//     soon as a worker appears. So --queue never hangs for want of a worker.
//   - Concurrency. WithWorkerConcurrency is one value per queue, stored in
//     the system database and applied by every worker of the queue: the last
//     registration that writes it wins for all. durlab writes it only when
//     a worker is given --concurrency, and says so when that changes it; a
//     new queue gets DefaultWorkerConcurrency.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/internal/shell"
)

const (
	// DefaultWorkerConcurrency is the per-worker concurrency of a new queue.
	DefaultWorkerConcurrency = 4
	// queuePollInterval replaces DBOS's 1 s queue polling, which would add
	// up to a second to every batch.
	queuePollInterval = 50 * time.Millisecond
	// noQueue is the listen set of a process that serves no queue: with an
	// empty set DBOS would dequeue from every queue.
	noQueue = "durlab.no-queue"
	// serveCheck is how often an experiment looks for the workers of the
	// queues it enqueued on.
	serveCheck = time.Second
)

// ErrBadQueue: a queue name durlab cannot use.
var ErrBadQueue = errors.New("bad queue name")

// CheckQueueName rejects names that are not usable as a durlab queue.
func CheckQueueName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: the queue name is empty", ErrBadQueue)
	case name == noQueue || strings.HasPrefix(name, "_dbos"):
		return fmt.Errorf("%w: %q is reserved", ErrBadQueue, name)
	}
	if err := checkName("queue name", name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadQueue, err)
	}
	return nil
}

// listen sets the queues this process dequeues from, before Launch, and
// registers a worker's queue with its concurrency.
func (rt *Runtime) listen(cfg Config) error {
	if rt.serve == "" {
		dbos.ListenQueues(rt.dbos, noQueue)
		return nil
	}
	if _, err := rt.registerQueue(rt.serve, cfg.Concurrency); err != nil {
		return err
	}
	dbos.ListenQueues(rt.dbos, rt.serve)
	return rt.claim.serve(rt.serve)
}

// registerQueue registers the queue named name. With concurrency > 0 it
// stores that per-worker concurrency, for every worker of the queue, and
// says so when it changes the stored value; otherwise an existing queue
// keeps its configuration and a new one gets DefaultWorkerConcurrency.
func (rt *Runtime) registerQueue(name string, concurrency int) (dbos.Queue, error) {
	rt.queuesMu.Lock()
	defer rt.queuesMu.Unlock()
	if q, ok := rt.queues[name]; ok && concurrency <= 0 {
		return q, nil
	}
	opts := []dbos.QueueOption{dbos.WithQueueBasePollingInterval(queuePollInterval)}
	if concurrency > 0 {
		old := 0
		if q, err := dbos.RetrieveQueue(rt.dbos, name); err == nil && q.GetWorkerConcurrency() != nil {
			old = *q.GetWorkerConcurrency()
		}
		if old > 0 && old != concurrency {
			fmt.Fprintf(rt.notices, "durlab: queue %s: per-worker concurrency changed from %d to %d, for every worker of the queue (DBOS stores one value per queue)\n", name, old, concurrency)
		}
		opts = append(opts, dbos.WithWorkerConcurrency(concurrency), dbos.WithQueueOnConflict(dbos.QueueConflictAlwaysUpdate))
	} else {
		opts = append(opts, dbos.WithWorkerConcurrency(DefaultWorkerConcurrency), dbos.WithQueueOnConflict(dbos.QueueConflictNeverUpdate))
	}
	q, err := dbos.RegisterQueue(rt.dbos, name, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: registering queue %s: %v", ErrSystemDB, name, err)
	}
	rt.queues[name] = q
	return q, nil
}

// Concurrency is the per-worker concurrency stored for the queue this
// worker serves (0: no limit).
func (rt *Runtime) Concurrency() int {
	rt.queuesMu.Lock()
	defer rt.queuesMu.Unlock()
	if q, ok := rt.queues[rt.serve]; ok && q.GetWorkerConcurrency() != nil {
		return *q.GetWorkerConcurrency()
	}
	return 0
}

// batchQueue returns the queue the batches of a main workflow go to, and
// makes sure that someone runs them: a worker, or else this process.
func (rt *Runtime) batchQueue(name string) (dbos.Queue, error) {
	if err := CheckQueueName(name); err != nil {
		return nil, err
	}
	q, err := rt.registerQueue(name, 0)
	if err != nil {
		return nil, err
	}
	if name != rt.serve {
		rt.watchQueue(name)
	}
	return q, nil
}

// watchQueue makes this process run the queue's batches while no worker
// serves it: checked now, then every serveCheck until Close.
func (rt *Runtime) watchQueue(name string) {
	rt.queuesMu.Lock()
	_, watched := rt.selfServe[name]
	if !watched {
		rt.selfServe[name] = false
	}
	rt.queuesMu.Unlock()
	if watched {
		return
	}
	rt.checkServed(name)
	rt.every(serveCheck, func() { rt.checkServed(name) })
}

// checkServed listens to the queue when no worker serves it, and stops
// when one does. A failed check changes nothing.
func (rt *Runtime) checkServed(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), serveCheck)
	defer cancel()
	served, err := rt.claim.served(ctx, name)
	if err != nil {
		return
	}
	rt.queuesMu.Lock()
	defer rt.queuesMu.Unlock()
	if rt.selfServe[name] == !served {
		return
	}
	rt.selfServe[name] = !served
	if served {
		fmt.Fprintf(rt.notices, "durlab: a durlab worker serves queue %s now; this process leaves its batches to it\n", name)
	} else {
		fmt.Fprintf(rt.notices, "durlab: no durlab worker serves queue %s; this process runs its batches itself (start `%s` to hand them over)\n", name, shell.Join("durlab", "worker", "--queue", name))
	}
	listen := []string{noQueue}
	if rt.serve != "" {
		listen = []string{rt.serve}
	}
	for q, self := range rt.selfServe {
		if self {
			listen = append(listen, q)
		}
	}
	dbos.ListenQueues(rt.dbos, listen...)
}

// Finished counts the workflows of the served queue that this executor
// finished (SUCCESS) since the given time: what a worker did.
func (rt *Runtime) Finished(since time.Time) (int, error) {
	// The process is stopping: the Runtime's context may be cancelled already.
	wfs, err := dbos.ListWorkflows(dbos.WithoutCancel(rt.dbos), dbos.WithFilterExecutorIDs(rt.ExecutorID()),
		dbos.WithFilterQueueName(rt.serve), dbos.WithFilterStatus(dbos.WorkflowStatusSuccess),
		dbos.WithFilterCompletedAfter(since), dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	return len(wfs), err
}
