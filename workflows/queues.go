package workflows

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
//     after its queue for its lifetime (executor.go); an experiment that
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
	return nil
}

// listen sets the queues this process dequeues from, before Launch, and
// registers a worker's queue with its concurrency.
func (l *Lab) listen(cfg Config) error {
	if l.serve == "" {
		dbos.ListenQueues(l.dbos, noQueue)
		return nil
	}
	if _, err := l.registerQueue(l.serve, cfg.Concurrency); err != nil {
		return err
	}
	dbos.ListenQueues(l.dbos, l.serve)
	return l.claim.serve(l.serve)
}

// registerQueue registers the queue named name. With concurrency > 0 it
// stores that per-worker concurrency, for every worker of the queue, and
// says so when it changes the stored value; otherwise an existing queue
// keeps its configuration and a new one gets DefaultWorkerConcurrency.
func (l *Lab) registerQueue(name string, concurrency int) (dbos.Queue, error) {
	l.queuesMu.Lock()
	defer l.queuesMu.Unlock()
	if q, ok := l.queues[name]; ok && concurrency <= 0 {
		return q, nil
	}
	opts := []dbos.QueueOption{dbos.WithQueueBasePollingInterval(queuePollInterval)}
	if concurrency > 0 {
		old := 0
		if q, err := dbos.RetrieveQueue(l.dbos, name); err == nil && q.GetWorkerConcurrency() != nil {
			old = *q.GetWorkerConcurrency()
		}
		if old > 0 && old != concurrency {
			fmt.Fprintf(l.notices, "durlab: queue %s: per-worker concurrency changed from %d to %d, for every worker of the queue (DBOS stores one value per queue)\n", name, old, concurrency)
		}
		opts = append(opts, dbos.WithWorkerConcurrency(concurrency), dbos.WithQueueOnConflict(dbos.QueueConflictAlwaysUpdate))
	} else {
		opts = append(opts, dbos.WithWorkerConcurrency(DefaultWorkerConcurrency), dbos.WithQueueOnConflict(dbos.QueueConflictNeverUpdate))
	}
	q, err := dbos.RegisterQueue(l.dbos, name, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: registering queue %s: %v", ErrSystemDB, name, err)
	}
	l.queues[name] = q
	return q, nil
}

// Concurrency is the per-worker concurrency stored for the queue this
// worker serves (0: no limit).
func (l *Lab) Concurrency() int {
	l.queuesMu.Lock()
	defer l.queuesMu.Unlock()
	if q, ok := l.queues[l.serve]; ok && q.GetWorkerConcurrency() != nil {
		return *q.GetWorkerConcurrency()
	}
	return 0
}

// batchQueue returns the queue the batches of a main workflow go to, and
// makes sure that someone runs them: a worker, or else this process.
func (l *Lab) batchQueue(name string) (dbos.Queue, error) {
	if err := CheckQueueName(name); err != nil {
		return nil, err
	}
	q, err := l.registerQueue(name, 0)
	if err != nil {
		return nil, err
	}
	if name != l.serve {
		l.watchQueue(name)
	}
	return q, nil
}

// watchQueue makes this process run the queue's batches while no worker
// serves it: checked now, then every serveCheck until Close.
func (l *Lab) watchQueue(name string) {
	l.queuesMu.Lock()
	_, watched := l.selfServe[name]
	if !watched {
		l.selfServe[name] = false
	}
	l.queuesMu.Unlock()
	if watched {
		return
	}
	l.checkServed(name)
	l.watchers.Add(1)
	go func() {
		defer l.watchers.Done()
		t := time.NewTicker(serveCheck)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				l.checkServed(name)
			}
		}
	}()
}

// checkServed listens to the queue when no worker serves it, and stops
// when one does. A failed check changes nothing.
func (l *Lab) checkServed(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), serveCheck)
	defer cancel()
	served, err := l.claim.served(ctx, name)
	if err != nil {
		return
	}
	l.queuesMu.Lock()
	defer l.queuesMu.Unlock()
	if l.selfServe[name] == !served {
		return
	}
	l.selfServe[name] = !served
	if served {
		fmt.Fprintf(l.notices, "durlab: a durlab worker serves queue %s now; this process leaves its batches to it\n", name)
	} else {
		fmt.Fprintf(l.notices, "durlab: no durlab worker serves queue %s; this process runs its batches itself (start `durlab worker --queue %s` to hand them over)\n", name, name)
	}
	listen := []string{noQueue}
	if l.serve != "" {
		listen = []string{l.serve}
	}
	for q, self := range l.selfServe {
		if self {
			listen = append(listen, q)
		}
	}
	dbos.ListenQueues(l.dbos, listen...)
}

// Finished counts the workflows of the served queue that this executor
// finished (SUCCESS) since the given time: what a worker did.
func (l *Lab) Finished(since time.Time) (int, error) {
	// The process is stopping: the Lab's context may be cancelled already.
	wfs, err := dbos.ListWorkflows(dbos.WithoutCancel(l.dbos), dbos.WithFilterExecutorIDs(l.ExecutorID()),
		dbos.WithFilterQueueName(l.serve), dbos.WithFilterStatus(dbos.WorkflowStatusSuccess),
		dbos.WithFilterCompletedAfter(since), dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	return len(wfs), err
}
