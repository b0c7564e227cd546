package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/internal/shell"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/workflows"
)

// workerOptions are the flags of `durlab worker`.
type workerOptions struct {
	global        *globalOptions
	queue         string
	concurrency   int
	adoptAfter    time.Duration
	faults        lab.Faults
	outageTimeout time.Duration // --outage-timeout
}

func newWorkerCmd(g *globalOptions) *cobra.Command {
	return newWorkerCmdF(g, nil)
}

// newWorkerCmdF builds worker; runF replaces the run in parsing tests.
func newWorkerCmdF(g *globalOptions, runF func(*workerOptions) error) *cobra.Command {
	opts := &workerOptions{global: g}
	c := &cobra.Command{
		Use:   "worker --queue NAME",
		Short: "Serve a DBOS queue: run the batch workflows experiments enqueue with --queue",
		Long: `Runs a DBOS executor that dequeues and runs the batch child workflows that
profile, dedup and exactly-once enqueue when given --queue NAME, until Ctrl-C,
SIGTERM or SIGHUP (exit 130, 143 or 129). A stopped or killed worker's in-flight
workflows stay PENDING; restarted with the same executor ID it puts them back
on the queue, where any worker finishes them.

A worker also finishes what dead processes left: when an executor with
PENDING workflows of this version has had no live claim on its ID for
--adopt-after (10s; 0 turns adoption off), one live worker adopts it. It
takes the dead executor's claim, puts its pending workflows back on their
queues, where it or any worker runs them, and holds the claim until they
finish; a process restarted with that ID meanwhile waits, then starts with
nothing to recover. A worker that lost its own claim with its database
session and finds it taken when the network returns, or finds the
workflows it was running adopted, exits 3 at once, writing nothing more.

Workers and experiments must share the system database (--system-db) and the
store (--store): on several machines both are Postgres URLs.

The executor ID (--executor-id, env DURLAB_EXECUTOR_ID) defaults to
durlab-worker-HOSTNAME-QUEUE. It must be unique among live processes, and a
restarted worker must get its old ID back: it is claimed for the life of the
process, and a second worker with the same ID exits 2. Give each worker on
one machine its own ID.

--concurrency is the number of batches one worker runs at a time. DBOS
stores it with the queue, shared by every worker of the queue: setting it
changes it for all of them (a new queue gets 4).

The fault flags describe this worker's environment: the batches it runs
obey them, as a recovered workflow obeys the process that recovers it. By
default a worker injects no fault.`,
		Example: `  durlab worker --queue batches --system-db postgres://... --store postgres://...
  durlab worker --queue batches --executor-id worker-2 --concurrency 8
  durlab worker --queue batches --adopt-after 30s`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := opts.validate(c); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return runWorker(c.Context(), opts)
		},
	}
	f := c.Flags()
	f.StringVar(&opts.queue, "queue", "", "the DBOS queue to serve (required), as given to the experiments' --queue")
	f.IntVar(&opts.concurrency, "concurrency", 0, "batches one worker runs at a time, set for every worker of the queue (default: keep the queue's, 4 for a new queue)")
	f.DurationVar(&opts.adoptAfter, "adopt-after", lab.DefaultAdoptAfter, fmt.Sprintf("adopt the pending workflows of an executor whose claim no live process has held for this long (at least %s; 0: never)", lab.MinAdoptAfter))
	f.Float64Var(&opts.faults.FailProb, string(lab.KnobFailProb), 0, "probability that an insert step fails after its write")
	f.Float64Var(&opts.faults.GenFailProb, string(lab.KnobGenFailProb), 0, "probability that a generate step fails")
	f.Float64Var(&opts.faults.CommitCrashProb, string(lab.KnobCommitCrashProb), 0, "probability that this worker dies (SIGKILL) right after an insert commits")
	f.IntVar(&opts.faults.Attempts, string(lab.KnobAttempts), 10, "attempts allowed to an insert step")
	f.DurationVar(&opts.outageTimeout, "outage-timeout", lab.DefaultOutageTimeout, "how long to wait for an unreachable database before stopping with exit 4, its batches left PENDING for a restart")
	return c
}

func (o *workerOptions) validate(c *cobra.Command) error {
	if !c.Flags().Changed("queue") {
		return usagef("worker needs --queue NAME: the queue the experiments enqueue on with --queue")
	}
	if err := lab.CheckQueueName(o.queue); err != nil {
		return usagef("--queue: %v", err)
	}
	if o.concurrency < 0 || c.Flags().Changed("concurrency") && o.concurrency == 0 {
		return usagef("--concurrency must be at least 1, got %d", o.concurrency)
	}
	if o.adoptAfter != 0 && o.adoptAfter < lab.MinAdoptAfter {
		return usagef("--adopt-after must be 0 (never adopt) or at least %s, got %s: a process takes up to 2s to find out it lost its claim, and must have stopped writing before anyone adopts its work", lab.MinAdoptAfter, o.adoptAfter)
	}
	if o.outageTimeout <= 0 {
		return usagef("--outage-timeout must be positive, got %s", o.outageTimeout)
	}
	if o.faults.Attempts < 1 {
		return usagef("--attempts must be at least 1, got %d", o.faults.Attempts)
	}
	return checkProbs(probFlag{"--fail-prob", o.faults.FailProb}, probFlag{"--gen-fail-prob", o.faults.GenFailProb},
		probFlag{"--commit-crash-prob", o.faults.CommitCrashProb})
}

// defaultWorkerID is stable across restarts on one machine, and differs
// between machines and queues.
func defaultWorkerID(queue string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "durlab-worker-" + host + "-" + queue
}

func runWorker(ctx context.Context, o *workerOptions) error {
	g := o.global
	cfg, err := g.resolve()
	if err != nil {
		return err
	}
	if dburl.IsPostgres(cfg.systemDB) && !dburl.IsPostgres(cfg.store) {
		fmt.Fprintf(g.io.Err, "durlab worker: note: the store is the local file %s; workers and experiments on other machines must share a Postgres --store\n", cfg.store)
	}
	cfg.hold() // DBOS's own lines for an error Open returns anyway
	rt, err := lab.Open(ctx, lab.Config{
		SystemDB:      cfg.systemDB,
		Store:         cfg.store,
		ExecutorID:    g.executor(defaultWorkerID(o.queue)),
		Logger:        cfg.logger,
		Notices:       g.io.Err,
		Stream:        cfg.stream,
		Faults:        o.faults,
		Experiments:   workflows.Experiments(),
		Serve:         o.queue,
		Concurrency:   o.concurrency,
		AdoptAfter:    o.adoptAfter,
		OutageTimeout: o.outageTimeout,
	})
	if err != nil {
		var se signalError
		if errors.Is(err, context.Canceled) && errors.As(context.Cause(ctx), &se) {
			return fmt.Errorf("%w: %w", se, err) // stopped while waiting for its claim
		}
		return err
	}
	cfg.flush()
	start := time.Now()
	id := rt.ExecutorID()
	where := "SQLite (this machine only)"
	if dburl.IsPostgres(cfg.systemDB) {
		where = "Postgres"
	}
	limit := "no limit"
	if n := rt.Concurrency(); n > 0 {
		limit = fmt.Sprintf("%d at a time", n)
	}
	fmt.Fprintf(g.io.Err, "durlab worker: executor %s serves queue %s (%s) on %s; stop it with Ctrl-C or SIGTERM\n", id, o.queue, limit, where)
	if n := rt.LeftPending(); n > 0 {
		fmt.Fprintf(g.io.Err, "durlab worker: %d workflow(s) left unfinished by executor %s are back on their queue\n", n, id)
	} else if rt.WaitedForAdopter() {
		fmt.Fprintf(g.io.Err, "durlab worker: executor %s starts with nothing to recover: the process that adopted it finished its pending workflows\n", id)
	}
	<-ctx.Done()
	done, countErr := rt.Finished(start)
	cfg.quiet() // DBOS logs every background task it stops
	closeErr := rt.Close()
	if countErr == nil {
		elapsed := time.Since(start).Round(time.Millisecond)
		sum := workerSummary{ExecutorID: id, Queue: o.queue, Finished: done, Elapsed: elapsed.String(), AdoptedExecutors: []string{}}
		for _, a := range rt.Adopted() {
			sum.Adoptions++
			sum.AdoptedWorkflows += len(a.Snapshot())
			sum.AdoptedExecutors = append(sum.AdoptedExecutors, a.Executor)
		}
		fmt.Fprintf(g.io.Err, "durlab worker: executor %s finished %d workflow(s) of queue %s in %s; %s\n", id, done, o.queue, elapsed,
			lab.Count(sum.Adoptions, "adoption", "adoptions"))
		if cfg.json {
			json.NewEncoder(g.io.Out).Encode(sum)
		}
	}
	if closeErr != nil {
		fmt.Fprintf(g.io.Err, "durlab worker: shutdown: %s\n", oneLine(dburl.Redact(closeErr.Error())))
	}
	stopped := fmt.Errorf("worker %s stopped; its unfinished workflows stay PENDING until a worker with %s starts", id, shell.Join("--executor-id", id))
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		return fmt.Errorf("%w: %w", se, stopped)
	}
	return fmt.Errorf("%w: %w", lab.ErrInterrupted, stopped)
}

// workerSummary is what a stopped worker prints with --output json.
type workerSummary struct {
	ExecutorID string `json:"executor_id"`
	Queue      string `json:"queue"`
	Finished   int    `json:"finished"`
	Elapsed    string `json:"elapsed"`
	// Adoptions counts the dead executors this worker adopted, and
	// AdoptedWorkflows the pending workflows it put back on their queues.
	Adoptions        int      `json:"adoptions"`
	AdoptedWorkflows int      `json:"adopted_workflows"`
	AdoptedExecutors []string `json:"adopted_executors"`
}
