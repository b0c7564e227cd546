// Package lab is durlab's runtime: the one DBOS runtime every command
// shares. It launches DBOS, claims the executor ID, serialises migrations,
// serves queues, decides and injects faults, counts what happens, and
// builds the common part of every report. It knows no single experiment.
//
// Who calls whom:
//
//	cmd ──> lab.Open(Config{Experiments: workflows.Experiments()}) ──> Runtime
//	cmd ──> Runtime.Run(experiment, params) ──> Report
//	DBOS ──> a workflow function of package workflows
//	          ──> lab.Execute ──> Execution ──> lab's steps, writes, crash points ──> store
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
//   - The execution number is read with the Runtime's own DBOS context,
//     outside the workflow: read from inside, DBOS would checkpoint it as a
//     step and replay the first execution's value forever.
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
//     (claim.go): DBOS would let a second live process with the same ID
//     take the first one's workflows over.
//   - Queues (queues.go): a worker listens to its queue only; an experiment
//     listens to none, and runs the batches it enqueued itself only while
//     no worker serves their queue. The per-worker concurrency is stored
//     with the queue in the system database and shared by all its workers.
//   - Workflow functions are top-level functions (DBOS names a registered
//     workflow by its function), registered from the experiments'
//     descriptors; they find their Runtime in their DBOS context, whose
//     parent carries it.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	_ "github.com/dbos-inc/dbos-transact-golang/dbos/driver/sqlite" // SQLite system database

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/store"
)

const (
	// AppName is the DBOS application name of every durlab process.
	AppName = "durlab"
	// AppVersion is the DBOS application version; see the package comment.
	AppVersion = "durlab-4"
	// pollInterval replaces DBOS's 1 s handle polling, which would add a
	// second to every recovered child workflow.
	pollInterval = 20 * time.Millisecond
)

var (
	// ErrInterrupted: the run was stopped by a signal; its workflow stays
	// PENDING and the next run resumes it.
	ErrInterrupted = errors.New("stopped; the workflow stays PENDING and the next run resumes it")
	// ErrSystemDB: the DBOS system database could not be opened.
	ErrSystemDB = errors.New("system database unavailable")
)

// Config opens a Runtime.
type Config struct {
	SystemDB   string // DBOS system database URL (sqlite:... or postgres://...)
	Store      string // users store DSN
	ExecutorID string
	Logger     *slog.Logger // DBOS's logger
	Notices    io.Writer    // one-line notices for the user (stderr)
	// Stream, if set, gets durlab's one-line events of a run: retries,
	// recoveries (stream.go).
	Stream io.Writer
	Faults Faults
	// Schedule, if set, replaces the random fault knobs: the faults it lists
	// fire, once each, and no other (faults.go).
	Schedule *Schedule
	// OnPoint, if set, is told every crash point the process reaches, by
	// its site (explore enumerates them so).
	OnPoint func(site string)
	// Experiments are registered with DBOS, so that Launch can recover a
	// workflow of any of them.
	Experiments []*Experiment
	// Progress, if set, is told when a batch of a batch experiment is done.
	Progress func(done, total int)
	// Serve, if set, makes this process a worker: it dequeues the batch
	// workflows enqueued on the queue of that name. Without it the process
	// listens to no queue of its own (see queues.go).
	Serve string
	// Concurrency, if positive, sets the per-worker concurrency of the
	// Serve queue, for every worker of that queue; 0 keeps the stored one.
	Concurrency int
	// New: the command starts a new workflow even when this executor left
	// some pending; those stay PENDING, untouched (leftovers.go).
	New bool
	// OutageTimeout is how long an unreachable store or system database
	// is waited out before the process stops with ExitEnvironment, its
	// workflows PENDING (environment.go); 0: DefaultOutageTimeout.
	OutageTimeout time.Duration
	// AdoptAfter, if positive, makes this process adopt the pending
	// workflows of executors whose claim no live process has held for that
	// long (adopt.go); at least MinAdoptAfter.
	AdoptAfter time.Duration
}

// Runtime is a launched DBOS runtime with the store open and the workflows
// of every experiment registered.
type Runtime struct {
	dbos    dbos.Context
	store   store.Store
	faults  Faults
	notices io.Writer
	stream  io.Writer

	schedule   *Schedule
	onPoint    func(site string)
	scheduleMu sync.Mutex
	points     map[string]int // crash points reached, by run

	// registered are the workflows registered with this runtime's DBOS.
	registered map[any]bool
	// leftPending are the workflows this executor had left PENDING or
	// ENQUEUED before Launch recovered (or dead-lettered) them, by name.
	leftPending map[string][]string
	// parked are those whose executions wait for the shutdown, untouched
	// (Config.New, leftovers.go).
	parked map[string]bool
	newRun bool

	rec *recorder // the attempt ledger
	// running are the executions under way in this process; stopping is
	// set when the process is stopping, so that their ends say so.
	runningMu sync.Mutex
	running   map[*Execution]bool
	stopping  atomic.Bool
	// dying is set once an injected crash is decided, before its record
	// is stamped; an execution beginning after that would be recorded as
	// starting after its process died (see Execute). deathMu orders them.
	dying   bool
	deathMu sync.RWMutex
	// analyzedAt is taken once per process, as in the Python ex1 to ex4.
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

	// Adoption (adopt.go). waited: an adopter held this executor ID's
	// claim when the process started, and it waited for it (claim.go).
	systemDB  string
	waited    bool
	adoptMu   sync.Mutex
	adoptions []*Adoption // what this process adopted
}

// runtimeKey finds the Runtime in a workflow's DBOS context.
type runtimeKey struct{}

// Open claims the executor ID, opens the store and the system database,
// registers every experiment's workflows and launches DBOS, which recovers
// this executor's pending workflows. When another live process holds the
// executor ID it fails with an error matching ErrExecutorInUse, having run
// nothing.
func Open(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Serve != "" {
		if err := CheckQueueName(cfg.Serve); err != nil {
			return nil, err
		}
	}
	if len(cfg.Experiments) == 0 {
		// Nothing registered, Launch could recover nothing and a worker
		// would fail every batch it dequeued.
		return nil, errors.New("lab.Open needs the experiments to register (workflows.Experiments())")
	}
	notices := cfg.Notices
	if notices == nil {
		notices = io.Discard
	}
	rt := &Runtime{faults: cfg.Faults, notices: notices, stream: cfg.Stream, registered: map[any]bool{},
		schedule: cfg.Schedule, onPoint: cfg.OnPoint, points: map[string]int{},
		running: map[*Execution]bool{}, analyzedAt: time.Now().UTC(),
		progress: cfg.Progress, queues: map[string]dbos.Queue{},
		serve: cfg.Serve, selfServe: map[string]bool{}, stop: make(chan struct{})}
	// NewContext creates and migrates the system database (a missing
	// Postgres database included), which the claim needs; nothing runs
	// before Launch. Two processes doing that at once make DBOS fail.
	// Not ctx itself: a cancelled DBOS context CANCELS its running
	// workflows, while an interrupted durlab must leave them PENDING for
	// the next run (Close shuts DBOS down).
	parent := context.WithValue(context.WithoutCancel(ctx), runtimeKey{}, rt)
	err := WithMigrationLock(ctx, cfg.SystemDB, func() error {
		var err error
		rt.dbos, err = dbos.NewContext(parent, dbos.Config{
			AppName:            AppName,
			DatabaseURL:        cfg.SystemDB,
			ApplicationVersion: AppVersion,
			ExecutorID:         cfg.ExecutorID,
			Logger:             cfg.Logger,
		})
		if err != nil {
			return SystemDBError(cfg.SystemDB, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	cl, waited, err := claimOrWait(ctx, cfg.SystemDB, dbos.GetExecutorID(rt.dbos), notices)
	if err != nil {
		dbos.Shutdown(rt.dbos, time.Second)
		return nil, store.Environment("system database", cfg.SystemDB, err)
	}
	rt.claim, rt.waited, rt.systemDB = cl, waited, cfg.SystemDB
	rt.fenceOwn()
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		dbos.Shutdown(rt.dbos, time.Second)
		rt.claim.release()
		return nil, err
	}
	// Every write waits while the claim is lost (adopt_fence.go).
	env := &environment{timeout: cmpOr(cfg.OutageTimeout, DefaultOutageTimeout), raw: cfg.Store,
		systemDB: dburl.Redacted(cfg.SystemDB), stop: rt.stopOnFault,
		notices: func(format string, args ...any) { fmt.Fprintf(notices, "durlab: "+format+"\n", args...) }}
	rt.store = newFencedStore(st, cl, rt.stop, env)
	rt.watchClaim(env)
	rt.rec = newRecorder(rt.store, rt.ExecutorID(), &rt.timings)
	rt.flushIdle()
	rt.register(cfg.Experiments)
	// The DataSource must exist before Launch, which may recover an
	// exactly-once workflow that needs it.
	if rt.dataSource, err = rt.store.NewDataSource(rt.dbos); err != nil {
		rt.shutdown()
		if env := store.Environment("store", cfg.Store, err); env != err {
			return nil, env
		}
		return nil, fmt.Errorf("%w: transactional data source: %v", store.ErrUnavailable, err)
	}
	if err := rt.listen(cfg); err != nil {
		rt.shutdown()
		return nil, err
	}
	before, err := rt.pendingOf(rt.ExecutorID())
	if err != nil {
		rt.shutdown()
		return nil, SystemDBError(cfg.SystemDB, err)
	}
	if rt.newRun = cfg.New; cfg.New {
		rt.parkLeftovers(before)
	}
	if err := dbos.Launch(rt.dbos); err != nil {
		rt.shutdown()
		return nil, SystemDBError(cfg.SystemDB, fmt.Errorf("launch: %w", err))
	}
	rt.leftPending = before
	if cfg.AdoptAfter > 0 {
		rt.watchDead(max(cfg.AdoptAfter, MinAdoptAfter))
	}
	return rt, nil
}

// SystemDBError is a failure of the system database at start: an outage
// or another environment fault as such (exit 4: the same command succeeds
// later), anything else as ErrSystemDB (configuration, exit 2).
func SystemDBError(systemDB string, err error) error {
	if env := store.Environment("system database", systemDB, err); env != err {
		return env
	}
	return fmt.Errorf("%w: %v", ErrSystemDB, err)
}

// runtimeOf is the Runtime a workflow runs in.
func runtimeOf(ctx dbos.Context) *Runtime {
	rt, _ := ctx.Value(runtimeKey{}).(*Runtime)
	return rt
}

// Timings are where this process's workflow time went, for profile.
func (rt *Runtime) Timings() *Timings { return &rt.timings }

// Close shuts DBOS down, leaving in-flight workflows PENDING for the next
// Launch, and closes the store.
func (rt *Runtime) Close() error {
	return rt.shutdown()
}

func (rt *Runtime) shutdown() error {
	rt.closeOnce.Do(func() {
		close(rt.stop)
		rt.watchers.Wait()
		rt.stopping.Store(true)
		err := dbos.Shutdown(rt.dbos, 10*time.Second)
		// Ends and replays still waiting for a write are written now.
		err = errors.Join(err, rt.recordStopped())
		// The claim goes last: DBOS has stopped running this executor's
		// workflows when another process may take the ID.
		rt.closeErr = errors.Join(err, rt.store.Close(), rt.claim.release())
	})
	return rt.closeErr
}

// every runs fn every d until Close, on a watcher of its own.
func (rt *Runtime) every(d time.Duration, fn func()) {
	rt.watchers.Add(1)
	go func() {
		defer rt.watchers.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-rt.stop:
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

// track adds or removes a running execution.
func (rt *Runtime) track(x *Execution, running bool) {
	rt.runningMu.Lock()
	defer rt.runningMu.Unlock()
	if running {
		rt.running[x] = true
	} else {
		delete(rt.running, x)
	}
}

// recordStopped ends, in the ledger, the executions (and their attempts)
// that DBOS's shutdown left running: the process is stopping by a signal,
// and they stay PENDING for the next run.
func (rt *Runtime) recordStopped() error {
	if rt.rec == nil {
		return nil
	}
	rt.runningMu.Lock()
	var events []store.Event
	for x := range rt.running {
		x.mu.Lock()
		if a := x.current; a != nil && a.tx == nil {
			e := a.event(store.AttemptEnded)
			e.Outcome = OutcomeStopped
			events = append(events, append(a.unwritten(), e)...)
		}
		x.mu.Unlock()
		e := x.event(store.ExecutionEnded)
		e.Outcome = OutcomeStopped
		events = append(events, e)
	}
	rt.runningMu.Unlock()
	return rt.rec.now(context.Background(), events...)
}

// WaitedForAdopter tells whether this process started while another held
// its executor ID's claim, having adopted its pending workflows, and waited
// for it: what it then finds to recover, the adopter left.
func (rt *Runtime) WaitedForAdopter() bool { return rt.waited }

// ExecutorID is the executor ID this process claimed.
func (rt *Runtime) ExecutorID() string { return dbos.GetExecutorID(rt.dbos) }

// LeftPending counts the workflows this executor had left PENDING or
// ENQUEUED, which Launch recovered: a restarted worker's unfinished batches.
func (rt *Runtime) LeftPending() int {
	n := 0
	for _, ids := range rt.leftPending {
		n += len(ids)
	}
	return n
}

func (rt *Runtime) pendingOf(executorID string) (map[string][]string, error) {
	wfs, err := dbos.ListWorkflows(rt.dbos,
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

// status reads a workflow's status with the Runtime's own context: never
// from inside a workflow, where DBOS would checkpoint the read.
func (rt *Runtime) status(id string, opts ...dbos.ListWorkflowsOption) (dbos.WorkflowStatus, error) {
	wfs, err := dbos.ListWorkflows(rt.dbos, append(opts, dbos.WithFilterWorkflowIDs(id))...)
	if err != nil {
		return dbos.WorkflowStatus{}, err
	}
	if len(wfs) == 0 {
		return dbos.WorkflowStatus{}, fmt.Errorf("workflow %s not found", id)
	}
	return wfs[0], nil
}
