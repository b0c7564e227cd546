// Package workflows holds durlab's experiments: their workflows and steps,
// the faults they inject, and the one DBOS runtime every command shares.
//
// Design decisions the next person needs:
//
//   - Fault knobs (probabilities, attempts) belong to the process, not to the
//     workflow input: a recovered workflow obeys the knobs of the process that
//     recovers it, so a rerun with --crash-prob 0 finishes what a crashing run
//     left behind. The seed and the sizes are workflow input.
//   - A fault decision hashes the seed, the workflow's place in its run
//     ("main", "batch-3": it stands for the workflow ID, so that the same
//     seed replays the same schedule in a new workflow), the execution
//     number (DBOS's attempts counter for that workflow), the site and the
//     step attempt. A seeded crash does not repeat forever after a restart
//     because the execution number changes.
//   - The execution number is read with the Lab's own DBOS context, outside
//     the workflow: read from inside, DBOS would checkpoint it as a step and
//     replay the first execution's value forever.
//   - A crash is SIGKILL sent to our own process: DBOS recovers panics, so a
//     panic would be an ERROR, not a crash.
//   - Counters (step attempts, injected failures) are kept in memory and
//     added to the store's durlab_stats table when a workflow ends and just
//     before an injected crash, so the final report counts what every
//     process did. An execution killed from outside loses its unflushed
//     counters; recoveries are read from DBOS, so they are never lost.
//   - The application version is pinned (AppVersion), not DBOS's hash of the
//     executable: a rebuilt binary must recover what its predecessor left.
//     Bump it when a workflow's sequence of steps changes.
//   - Each experiment runs under its own executor ID by default, so
//     launching one experiment never recovers another's pending workflow.
//     The executor ID is claimed for the life of the process before Launch
//     (executor.go): DBOS would let a second live process with the same ID
//     take the first one's workflows over.
//   - Queues (queues.go): a worker listens to its queue only; an experiment
//     listens to none, and runs the batches it enqueued itself only while
//     no worker serves their queue. The per-worker concurrency is stored
//     with the queue in the system database and shared by all its workers.
package workflows

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	_ "github.com/dbos-inc/dbos-transact-golang/dbos/driver/sqlite" // SQLite system database
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durlab/durlab/store"
)

const (
	// AppName is the DBOS application name of every durlab process.
	AppName = "durlab"
	// AppVersion is the DBOS application version; see the package comment.
	AppVersion = "durlab-3"
	// pollInterval replaces DBOS's 1 s handle polling, which would add a
	// second to every recovered child workflow.
	pollInterval = 20 * time.Millisecond
)

// ErrInterrupted: the run was stopped by a signal; its workflow stays
// PENDING and the next run resumes it.
var ErrInterrupted = errors.New("stopped; the workflow stays PENDING and the next run resumes it")

// Faults are the fault knobs of this process.
type Faults struct {
	FailProb            float64 // a step fails after its write (retry-bad, dedup, exactly-once insert)
	GenFailProb         float64 // the generate step fails (dedup, exactly-once)
	CrashProb           float64 // the process dies at a crash point
	CommitCrashProb     float64 // the process dies right after an insert commits (dedup, exactly-once)
	CrashAfterBatch     int     // batch crash points start after this batch
	Attempts            int     // attempts allowed to a retried step
	MaxRecoveryAttempts int     // recoveries allowed to a workflow
}

// Config opens a Lab.
type Config struct {
	SystemDB   string // DBOS system database URL (sqlite:... or postgres://...)
	Store      string // users store DSN
	ExecutorID string
	Logger     *slog.Logger // DBOS's logger
	Notices    io.Writer    // one-line notices for the user (stderr)
	Faults     Faults
	// Progress, if set, is told when a batch of a batch experiment is done.
	Progress func(done, total int)
	// Serve, if set, makes this process a worker: it dequeues the batch
	// workflows enqueued on the queue of that name. Without it the process
	// listens to no queue of its own (see queues.go).
	Serve string
	// Concurrency, if positive, sets the per-worker concurrency of the
	// Serve queue, for every worker of that queue; 0 keeps the stored one.
	Concurrency int
}

// Lab is a launched DBOS runtime with the store and the workflows of every
// experiment registered.
type Lab struct {
	dbos    dbos.Context
	store   store.Store
	strict  store.Table // basic to profile
	ledger  store.Table // dedup and exactly-once
	faults  Faults
	notices io.Writer

	// leftPending are the workflows this executor had left PENDING or
	// ENQUEUED before Launch recovered (or dead-lettered) them, by name.
	leftPending map[string][]string

	mu       sync.Mutex
	counters map[string]*store.Stats // by root workflow ID
	// analyzedAt is taken once per process, as in the seed's ex1 to ex4.
	analyzedAt time.Time

	timings    Timings
	progress   func(done, total int)
	dataSource *dbos.DataSource

	claim     claim  // the executor ID, held until Close
	serve     string // the queue this worker serves ("" for an experiment)
	queuesMu  sync.Mutex
	queues    map[string]dbos.Queue
	selfServe map[string]bool // queues this experiment serves for want of a worker
	stop      chan struct{}   // closed by Close: stops the queue watchers
	watchers  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open claims the executor ID, opens the store and the system database,
// registers every workflow and launches DBOS, which recovers this
// executor's pending workflows. When another live process holds the
// executor ID it fails with an error matching ErrExecutorInUse, having run
// nothing.
func Open(ctx context.Context, cfg Config) (*Lab, error) {
	if cfg.Serve != "" {
		if err := CheckQueueName(cfg.Serve); err != nil {
			return nil, err
		}
	}
	notices := cfg.Notices
	if notices == nil {
		notices = io.Discard
	}
	// NewContext creates and migrates the system database (a missing
	// Postgres database included), which the claim needs; nothing runs
	// before Launch. Two processes doing that at once make DBOS fail.
	// Not ctx itself: a cancelled DBOS context CANCELS its running
	// workflows, while an interrupted durlab must leave them PENDING for
	// the next run (Close shuts DBOS down).
	var dctx dbos.Context
	err := WithMigrationLock(ctx, cfg.SystemDB, func() error {
		var err error
		dctx, err = dbos.NewContext(context.WithoutCancel(ctx), dbos.Config{
			AppName:            AppName,
			DatabaseURL:        cfg.SystemDB,
			ApplicationVersion: AppVersion,
			ExecutorID:         cfg.ExecutorID,
			Logger:             cfg.Logger,
		})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSystemDB, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cl, err := claimExecutor(ctx, cfg.SystemDB, dbos.GetExecutorID(dctx), notices)
	if err != nil {
		dbos.Shutdown(dctx, time.Second)
		return nil, err
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		dbos.Shutdown(dctx, time.Second)
		cl.release()
		return nil, err
	}
	l := &Lab{dbos: dctx, store: st, strict: st.Table(store.Strict), ledger: st.Table(store.Ledger),
		faults: cfg.Faults, notices: notices,
		counters: map[string]*store.Stats{}, analyzedAt: time.Now().UTC(),
		progress: cfg.Progress, queues: map[string]dbos.Queue{},
		claim: cl, serve: cfg.Serve, selfServe: map[string]bool{}, stop: make(chan struct{})}
	l.register()
	// The DataSource must exist before Launch, which may recover an
	// exactly-once workflow that needs it.
	if l.dataSource, err = newDataSource(dctx, st); err != nil {
		l.shutdown()
		return nil, fmt.Errorf("%w: transactional data source: %v", store.ErrUnavailable, err)
	}
	if err := l.listen(cfg); err != nil {
		l.shutdown()
		return nil, err
	}
	before, err := l.pendingOf(ctx, l.ExecutorID())
	if err != nil {
		l.shutdown()
		return nil, fmt.Errorf("%w: %v", ErrSystemDB, err)
	}
	if err := dbos.Launch(dctx); err != nil {
		l.shutdown()
		return nil, fmt.Errorf("%w: launch: %v", ErrSystemDB, err)
	}
	l.leftPending = before
	return l, nil
}

func newDataSource(ctx dbos.Context, st store.Store) (*dbos.DataSource, error) {
	switch e := st.Engine().(type) {
	case *sql.DB:
		return dbos.NewDataSource(ctx, e)
	case *pgxpool.Pool:
		return dbos.NewDataSource(ctx, e)
	}
	return nil, fmt.Errorf("store engine %T cannot back a DBOS data source", st.Engine())
}

// Timings are where this process's workflow time went, for profile.
func (l *Lab) Timings() *Timings { return &l.timings }

// ErrSystemDB: the DBOS system database could not be opened.
var ErrSystemDB = errors.New("system database unavailable")

// Close shuts DBOS down, leaving in-flight workflows PENDING for the next
// Launch, and closes the store.
func (l *Lab) Close() error {
	return l.shutdown()
}

func (l *Lab) shutdown() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.watchers.Wait()
		err := dbos.Shutdown(l.dbos, 10*time.Second)
		// The claim goes last: DBOS has stopped running this executor's
		// workflows when another process may take the ID.
		l.closeErr = errors.Join(err, l.store.Close(), l.claim.release())
	})
	return l.closeErr
}

// ExecutorID is the executor ID this process claimed.
func (l *Lab) ExecutorID() string { return dbos.GetExecutorID(l.dbos) }

// LeftPending counts the workflows this executor had left PENDING or
// ENQUEUED, which Launch recovered: a restarted worker's unfinished batches.
func (l *Lab) LeftPending() int {
	n := 0
	for _, ids := range l.leftPending {
		n += len(ids)
	}
	return n
}

// table is the users table of variant v.
func (l *Lab) table(v store.Variant) store.Table {
	if v == store.Ledger {
		return l.ledger
	}
	return l.strict
}

func (l *Lab) pendingOf(ctx context.Context, executorID string) (map[string][]string, error) {
	wfs, err := dbos.ListWorkflows(l.dbos,
		dbos.WithFilterStatus(dbos.WorkflowStatusPending, dbos.WorkflowStatusEnqueued),
		dbos.WithFilterExecutorIDs(executorID), dbos.WithFilterSortDesc())
	if err != nil {
		return nil, err
	}
	byName := map[string][]string{}
	for _, w := range wfs {
		byName[w.Name] = append(byName[w.Name], w.ID)
	}
	return byName, nil
}

// status reads a workflow's status with the Lab's own context: never from
// inside a workflow, where DBOS would checkpoint the read.
func (l *Lab) status(id string, opts ...dbos.ListWorkflowsOption) (dbos.WorkflowStatus, error) {
	wfs, err := dbos.ListWorkflows(l.dbos, append(opts, dbos.WithFilterWorkflowIDs(id))...)
	if err != nil {
		return dbos.WorkflowStatus{}, err
	}
	if len(wfs) == 0 {
		return dbos.WorkflowStatus{}, fmt.Errorf("workflow %s not found", id)
	}
	return wfs[0], nil
}

// execution is the number of the current execution of workflow id: 1 for
// the first run, then one more per recovery.
func (l *Lab) execution(id string) int {
	st, err := l.status(id, dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil {
		return 0
	}
	return st.Attempts
}

// chance is a uniform number in [0,1) fixed by the seed and the decision's
// coordinates.
func chance(seed int64, coords ...any) float64 {
	h := sha256.New()
	fmt.Fprint(h, seed)
	for _, c := range coords {
		fmt.Fprintf(h, "|%v", c)
	}
	return float64(binary.BigEndian.Uint64(h.Sum(nil))>>11) / (1 << 53)
}

// counter returns the in-memory counters of root, under l.mu.
func (l *Lab) count(root string, f func(s *store.Stats)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.counters[root]
	if s == nil {
		s = &store.Stats{}
		l.counters[root] = s
	}
	f(s)
}

// flush adds root's counters to the store and zeroes them.
func (l *Lab) flush(ctx context.Context, root string) error {
	l.mu.Lock()
	s := l.counters[root]
	delete(l.counters, root)
	l.mu.Unlock()
	if s == nil || *s == (store.Stats{}) {
		return nil
	}
	return l.store.AddStats(context.WithoutCancel(ctx), root, *s)
}

// crash records the crash, then kills this process with SIGKILL, like the
// OOM killer: no deferred function, no DBOS shutdown.
func (l *Lab) crash(ctx context.Context, root, where string, afterCommit bool) {
	l.count(root, func(s *store.Stats) {
		s.Crashes++
		s.InjectedFailures++
		if afterCommit {
			s.CommitCrashes++
		}
	})
	if err := l.flush(ctx, root); err != nil {
		fmt.Fprintf(l.notices, "durlab: could not record the crash: %v\n", err)
	}
	fmt.Fprintf(l.notices, "durlab: injected crash %s: SIGKILL to pid %d (workflow %s)\n", where, os.Getpid(), root)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// mainRole names a run's main workflow in fault decisions.
const mainRole = "main"

// maybeCrash crashes with probability p, decided by the seed, the role of
// the workflow in its run, its execution number and the crash point.
func (l *Lab) maybeCrash(ctx context.Context, seed int64, p float64, root, role string, execution int, where string) {
	if p > 0 && chance(seed, role, execution, where) < p {
		l.crash(ctx, root, where, false)
	}
}

// maybeCrashAfterCommit is the crash point right after an insert commits
// and before the workflow moves on (--commit-crash-prob), counted apart so
// the report can say what it did.
func (l *Lab) maybeCrashAfterCommit(ctx context.Context, in BatchInput, execution, attempt int) {
	where := fmt.Sprintf("after committing batch %d (attempt %d)", in.Batch, attempt)
	if p := l.faults.CommitCrashProb; p > 0 && chance(in.Seed, in.role(), execution, where) < p {
		l.crash(ctx, in.Root, where, true)
	}
}
