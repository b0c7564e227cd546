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
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/workflows"
)

// workerOptions are the flags of `durlab worker`.
type workerOptions struct {
	global      *globalOptions
	queue       string
	concurrency int
	faults      lab.Faults
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
profile, dedup and exactly-once enqueue when given --queue NAME, until Ctrl-C
or SIGTERM (exit 130 or 143). A stopped or killed worker's in-flight
workflows stay PENDING; restarted with the same executor ID it puts them back
on the queue, where any worker finishes them.

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
  durlab worker --queue batches --executor-id worker-2 --concurrency 8`,
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
	f.Float64Var(&opts.faults.FailProb, string(lab.KnobFailProb), 0, "probability that an insert step fails after its write")
	f.Float64Var(&opts.faults.GenFailProb, string(lab.KnobGenFailProb), 0, "probability that a generate step fails")
	f.Float64Var(&opts.faults.CommitCrashProb, string(lab.KnobCommitCrashProb), 0, "probability that this worker dies (SIGKILL) right after an insert commits")
	f.IntVar(&opts.faults.Attempts, string(lab.KnobAttempts), 10, "attempts allowed to an insert step")
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
		SystemDB:    cfg.systemDB,
		Store:       cfg.store,
		ExecutorID:  g.executor(defaultWorkerID(o.queue)),
		Logger:      cfg.logger,
		Notices:     g.io.Err,
		Stream:      cfg.stream,
		Faults:      o.faults,
		Experiments: workflows.Experiments(),
		Serve:       o.queue,
		Concurrency: o.concurrency,
	})
	if err != nil {
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
	}
	<-ctx.Done()
	done, countErr := rt.Finished(start)
	cfg.quiet() // DBOS logs every background task it stops
	closeErr := rt.Close()
	if countErr == nil {
		elapsed := time.Since(start).Round(time.Millisecond)
		fmt.Fprintf(g.io.Err, "durlab worker: executor %s finished %d workflow(s) of queue %s in %s\n", id, done, o.queue, elapsed)
		if cfg.json {
			json.NewEncoder(g.io.Out).Encode(workerSummary{ExecutorID: id, Queue: o.queue, Finished: done, Elapsed: elapsed.String()})
		}
	}
	if closeErr != nil {
		fmt.Fprintf(g.io.Err, "durlab worker: shutdown: %s\n", oneLine(dburl.Redact(closeErr.Error())))
	}
	stopped := fmt.Errorf("worker %s stopped; its unfinished workflows stay PENDING until a worker with --executor-id %s starts", id, id)
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
}
