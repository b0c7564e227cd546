package lab

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/store"
)

// Execution is one execution of a workflow, as its function sees it: the
// handle through which it runs steps, writes users and reaches its crash
// points.
type Execution struct {
	rt   *Runtime
	ctx  dbos.Context
	id   string // the workflow ID
	root string // the main workflow's ID: every row of a run carries it
	role string // the workflow's place in its run, for fault decisions
	seed int64
	// number is the execution number (see Runtime.execution), read only
	// when a fault decision may use it: it costs a system-database read.
	number int
}

// Execute runs body as the execution of the workflow ctx belongs to. A
// workflow function is Execute around its body.
func Execute[I runInput, O any](ctx dbos.Context, in I, body func(x *Execution) (O, error)) (O, error) {
	var zero O
	rt := runtimeOf(ctx)
	if rt == nil {
		return zero, errors.New("a durlab workflow runs only in a lab.Runtime")
	}
	id, err := dbos.GetWorkflowID(ctx)
	if err != nil {
		return zero, err
	}
	x := &Execution{rt: rt, ctx: ctx, id: id, root: in.rootOf(id), role: in.role(), seed: in.runSeed()}
	if rt.faults.any() {
		x.number = rt.execution(id)
	}
	defer rt.flush(ctx, x.root)
	return body(x)
}

// ID is the workflow's ID.
func (x *Execution) ID() string { return x.id }

// Faults are the fault knobs of the process running this execution.
func (x *Execution) Faults() Faults { return x.rt.faults }

// AnalyzedAt is taken once per process, as in the Python ex1 to ex4.
func (x *Execution) AnalyzedAt() time.Time { return x.rt.analyzedAt }

// Decide is a fault decision: true with probability p, fixed by the seed,
// the workflow's role, the execution number and the coordinates.
func (x *Execution) Decide(p float64, coords ...any) bool {
	return p > 0 && chance(x.seed, append([]any{x.role, x.number}, coords...)...) < p
}

// MaybeCrash kills the process at crash point where with probability p.
func (x *Execution) MaybeCrash(p float64, where string) {
	if x.Decide(p, where) {
		x.crash(where, false)
	}
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

// crash records the crash, then kills this process with SIGKILL, like the
// OOM killer: no deferred function, no DBOS shutdown.
func (x *Execution) crash(where string, afterCommit bool) {
	x.count(func(s *store.Stats) {
		s.Crashes++
		s.InjectedFailures++
		if afterCommit {
			s.CommitCrashes++
		}
	})
	if err := x.rt.flush(x.ctx, x.root); err != nil {
		fmt.Fprintf(x.rt.notices, "durlab: could not record the crash: %v\n", err)
	}
	fmt.Fprintf(x.rt.notices, "durlab: injected crash %s: SIGKILL to pid %d (workflow %s)\n", where, os.Getpid(), x.root)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// count updates the in-memory counters of the execution's run.
func (x *Execution) count(f func(s *store.Stats)) {
	rt := x.rt
	rt.mu.Lock()
	defer rt.mu.Unlock()
	s := rt.counters[x.root]
	if s == nil {
		s = &store.Stats{}
		rt.counters[x.root] = s
	}
	f(s)
}

// flush adds root's counters to the store and zeroes them.
func (rt *Runtime) flush(ctx context.Context, root string) error {
	rt.mu.Lock()
	s := rt.counters[root]
	delete(rt.counters, root)
	rt.mu.Unlock()
	if s == nil || *s == (store.Stats{}) {
		return nil
	}
	return rt.store.AddStats(context.WithoutCancel(ctx), root, *s)
}

// Attempt is one attempt at a step: DBOS runs the step's function once per
// attempt.
type Attempt struct {
	x   *Execution
	ctx context.Context
	tx  store.Tx // the transaction of a Transaction step; nil in a plain step
	// N numbers the attempts of the step in this process, from 1. DBOS
	// itself does not tell a step which attempt it is on.
	N int
}

// Step runs fn as a DBOS step named name, once per attempt.
func Step[R any](x *Execution, name string, fn func(a *Attempt) (R, error), opts ...dbos.StepOption) (R, error) {
	n := 0 // DBOS calls this same closure for every retry in this process
	return dbos.RunAsStep(x.ctx, func(ctx context.Context) (R, error) {
		n++
		x.count(func(s *store.Stats) { s.StepAttempts++ })
		return fn(&Attempt{x: x, ctx: ctx, N: n})
	}, append(opts, dbos.WithStepName(name))...)
}

// Transaction runs fn as a DBOS transaction on the store named name, once
// per attempt: its writes and the step's checkpoint commit together, and an
// error rolls its writes back.
func Transaction[R any](x *Execution, name string, fn func(a *Attempt) (R, error), opts ...dbos.StepOption) (R, error) {
	n := 0
	return dbos.RunAsTransaction(x.ctx, x.rt.dataSource, func(ctx context.Context, tx dbos.Tx) (R, error) {
		n++
		x.count(func(s *store.Stats) { s.StepAttempts++ })
		return fn(&Attempt{x: x, ctx: ctx, tx: tx, N: n})
	}, append(opts, dbos.WithStepName(name))...)
}

// InsertPage writes a page of users to table v under the run's workflow
// ID: in the attempt's transaction, or in one of its own in a plain step.
func (a *Attempt) InsertPage(v store.Variant, users []fake.User, analyzedAt time.Time) error {
	t := a.x.rt.store.Table(v)
	return a.x.insert(func() error {
		if a.tx != nil {
			return t.Insert(a.ctx, a.tx, users, a.x.root, analyzedAt)
		}
		return t.InsertPage(a.ctx, users, a.x.root, analyzedAt)
	})
}

// InsertPage writes a page of users from the workflow body, outside any
// step: a recovered execution runs it again.
func (x *Execution) InsertPage(v store.Variant, users []fake.User, analyzedAt time.Time) error {
	return x.insert(func() error { return x.rt.store.Table(v).InsertPage(x.ctx, users, x.root, analyzedAt) })
}

// insert times a write and counts the UNIQUE violation it may hit.
func (x *Execution) insert(write func() error) error {
	err := x.rt.timings.TimeStore(write)
	if errors.Is(err, store.ErrDuplicateUser) {
		x.count(func(s *store.Stats) { s.UniqueViolations++ })
	}
	return err
}

// InjectedFailure counts a failure injected on purpose and returns it.
func (a *Attempt) InjectedFailure(format string, args ...any) error {
	a.x.count(func(s *store.Stats) { s.InjectedFailures++ })
	return fmt.Errorf(format, args...)
}

// Count counts what the run wrote to table v, as a step: the counts are the
// workflow's output, checkpointed, so the report never depends on rows a
// later run may empty away.
func (x *Execution) Count(v store.Variant) (store.Counts, error) {
	return dbos.RunAsStep(x.ctx, func(ctx context.Context) (store.Counts, error) {
		return x.rt.store.Table(v).Counts(ctx, x.root)
	}, dbos.WithStepName("count_users"))
}

// pageOutput is the generate step's checkpointed output. Attempts is read
// back by `durlab workflow steps`: DBOS itself does not record the attempts
// of a step that succeeded.
type pageOutput struct {
	Page     int         `json:"page"`
	Attempts int         `json:"attempts"`
	Users    []fake.User `json:"users"`
}

// GeneratePage generates one page of size users as a step. With failProb >
// 0 it fails with that probability, and DBOS retries it (3 attempts, DBOS's
// default intervals, as the Python original's retries_allowed step).
func GeneratePage(x *Execution, page, size int, failProb float64) ([]fake.User, error) {
	var opts []dbos.StepOption
	if failProb > 0 {
		opts = append(opts, dbos.WithStepMaxRetries(2))
	}
	out, err := Step(x, fmt.Sprintf("generate_page_%d", page), func(a *Attempt) (pageOutput, error) {
		if x.Decide(failProb, "generate", page, a.N) {
			return pageOutput{}, a.InjectedFailure("injected failure generating page %d (attempt %d)", page, a.N)
		}
		return pageOutput{Page: page, Attempts: a.N, Users: x.rt.timings.TimeGenerate(page, size)}, nil
	}, opts...)
	return out.Users, err
}

// WritePage is the Python ex1 to ex3's step: it generates a page and writes
// it, in one step. failAfterWrite, if set, is asked after a successful
// write whether this attempt must fail anyway.
func WritePage(x *Execution, page, size int, analyzedAt time.Time, failAfterWrite func(attempt int) bool, opts ...dbos.StepOption) error {
	_, err := Step(x, fmt.Sprintf("write_page_%d", page), func(a *Attempt) (int, error) {
		if err := a.InsertPage(store.Strict, fake.Page(page, size), analyzedAt); err != nil {
			return 0, err
		}
		if failAfterWrite != nil && failAfterWrite(a.N) {
			return 0, a.InjectedFailure("injected failure after writing page %d (attempt %d)", page, a.N)
		}
		return size, nil
	}, opts...)
	return err
}

// Timings accumulate where the time of a run went, for profile's breakdown.
type Timings struct {
	generate atomic.Int64 // ns in fake generation
	store    atomic.Int64 // ns in store writes
}

// Generation is the time spent generating fake users.
func (t *Timings) Generation() time.Duration { return time.Duration(t.generate.Load()) }

// StoreWrites is the time spent writing to the store.
func (t *Timings) StoreWrites() time.Duration { return time.Duration(t.store.Load()) }

// TimeGenerate generates a page, timed as generation.
func (t *Timings) TimeGenerate(page, size int) []fake.User {
	start := time.Now()
	users := fake.Page(page, size)
	t.generate.Add(int64(time.Since(start)))
	return users
}

// TimeStore runs a store write, timed as such.
func (t *Timings) TimeStore(f func() error) error {
	start := time.Now()
	err := f()
	t.store.Add(int64(time.Since(start)))
	return err
}
