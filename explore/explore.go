// Package explore runs an experiment many times under faults and checks its
// guarantee against the databases after each run: `durlab explore`.
//
// A trial is one run of the experiment in a data folder (or Postgres
// databases) of its own, as real processes: the experiment's command runs
// as a child of this process and is restarted after each death, as `durlab
// run --until-success` does, with external SIGKILLs when asked. Then the
// trial is checked against the store, the attempt ledger and DBOS's tables
// directly, never against the report: the main workflow's final status,
// every user of the input in the table, the window-function count, the
// duplicates and their causes (the ledger's attribution must account for
// every one), and the UNIQUE violations.
//
// Two ways to choose the faults:
//   - crash points: a fault-free run in this process enumerates every crash
//     point the experiment reaches (lab.Config.OnPoint), then trial k
//     crashes exactly at point k (--faults crash@SITE);
//   - seeds: trial s runs with --seed s and its random knobs, plus kills.
package explore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/internal/shell"
	"github.com/durlab/durlab/internal/startfd"
	"github.com/durlab/durlab/internal/tether"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// Options say what to explore and how.
type Options struct {
	Experiment *lab.Experiment
	// Experiments are registered by the in-process enumeration run.
	Experiments []*lab.Experiment
	Params      lab.Params
	// Flags are the experiment's flags as the user gave them, passed to
	// every trial (sizes, knobs; not --seed, --faults or --data-dir).
	Flags []string
	// Binary is the durlab executable trials run; Env their environment.
	Binary string
	Env    []string
	// Dir holds the trials' data folders. SystemDB and Store, when Postgres
	// URLs, name the servers on which each trial gets databases of its own.
	Dir             string
	SystemDB, Store string
	Parallel        int
	TrialTimeout    time.Duration
	Keep            bool
	// Progress, if set, is told as trials finish.
	Progress func(done, total int)
}

// Trial is one checked run. The JSON names are an interface.
type Trial struct {
	K                           int    `json:"k,omitempty"`    // the crash point, in crash-point mode
	Site                        string `json:"site,omitempty"` // its site
	Seed                        int64  `json:"seed"`
	Kills                       int    `json:"kills,omitempty"` // external SIGKILLs that landed
	WorkflowID                  string `json:"workflow_id"`
	Status                      string `json:"status"`
	Rows                        int64  `json:"rows"`
	Unique                      int64  `json:"unique_users"`
	Latest                      int64  `json:"latest"`
	Duplicates                  int64  `json:"duplicates"`
	DuplicatesFromRetries       int64  `json:"duplicates_from_retries"`
	DuplicatesFromRecoveries    int64  `json:"duplicates_from_recoveries"`
	DuplicatesFromCommitCrashes int64  `json:"duplicates_from_commit_crashes"`
	Recoveries                  int    `json:"recoveries"`
	Crashes                     int    `json:"crashes"`   // processes that died
	Processes                   int    `json:"processes"` // processes started
	StepAttempts                int64  `json:"step_attempts"`
	UniqueViolations            int64  `json:"unique_violations"`
	WallMs                      int64  `json:"wall_ms"`
	Held                        bool   `json:"held"`
	// Why says what did not hold; Hung, that the trial outlived its
	// timeout.
	Why  string `json:"why,omitempty"`
	Hung bool   `json:"hung,omitempty"`
	// Faults are the faults that fired, in the --faults syntax; Replay the
	// command that replays the trial.
	Faults string `json:"faults"`
	Replay string `json:"replay"`
	// Kept is the trial's folder, left for a look (failed or hung trials,
	// or --keep).
	Kept string `json:"kept,omitempty"`
}

// where is a trial's databases.
type where struct {
	dir             string // its folder (logs, SQLite files)
	systemDB, store string
	pgSys, pgStore  string // the Postgres databases made for it, "" on SQLite
	flags           []string
}

// newWhere makes the trial's folder, or databases, named after tag.
func (o *Options) newWhere(ctx context.Context, tag string) (*where, error) {
	w := &where{dir: filepath.Join(o.Dir, tag)}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return nil, err
	}
	if !dburl.IsPostgres(o.SystemDB) {
		w.systemDB, w.store = "sqlite:"+filepath.Join(w.dir, "data", "dbos.sqlite"), filepath.Join(w.dir, "data", "users.db")
		w.flags = []string{"--data-dir", filepath.Join(w.dir, "data")}
		return w, nil
	}
	sysBase, err := store.DatabaseOf(o.SystemDB)
	if err != nil {
		return nil, err
	}
	storeBase, err := store.DatabaseOf(o.Store)
	if err != nil {
		return nil, err
	}
	// The exploration's folder is unique on this machine: its name keeps
	// two explorations on one server out of each other's databases.
	unique := strings.NewReplacer("-", "_", ".", "_").Replace(strings.TrimPrefix(filepath.Base(o.Dir), "durlab-explore-"))
	name := func(base string) string {
		return strings.ToLower(fmt.Sprintf("%.24s_x%.12s_%s", base, unique, strings.ReplaceAll(tag, "-", "_")))
	}
	w.pgSys, w.pgStore = name(sysBase), name(storeBase)+"_users"
	if w.systemDB, err = store.WithDatabase(o.SystemDB, w.pgSys); err != nil {
		return nil, err
	}
	if w.store, err = store.WithDatabase(o.Store, w.pgStore); err != nil {
		return nil, err
	}
	if err := store.CreateDatabase(ctx, o.Store, w.pgStore); err != nil {
		return nil, err
	}
	w.flags = []string{"--data-dir", filepath.Join(w.dir, "data"), "--system-db", w.systemDB, "--store", w.store}
	return w, nil
}

// remove deletes the trial's folder and databases.
func (o *Options) remove(w *where) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if w.pgSys != "" {
		store.DropDatabase(ctx, o.SystemDB, w.pgSys)
		store.DropDatabase(ctx, o.Store, w.pgStore)
	}
	os.RemoveAll(w.dir)
}

// maxRestarts bounds a trial's restarts, as run --until-success's do.
const maxRestarts = 100

// run runs the experiment to its end in w, restarting it after each death,
// and SIGKILLs it from outside after each of kills (from a process's
// start). It returns the last child's report, the processes started, the
// deaths and the kills that landed.
func (o *Options) run(ctx context.Context, w *where, extra []string, kills []time.Duration) (rep *lab.Report, processes, deaths, landed int, err error) {
	args := append(append(append([]string{o.Experiment.Name}, o.Flags...), w.flags...), extra...)
	args = append(args, "--output", "json", "-q", "--log-level", "off")
	log, err := os.Create(filepath.Join(w.dir, "stderr.log"))
	if err != nil {
		return nil, 0, 0, 0, err
	}
	defer log.Close()
	for processes < maxRestarts {
		processes++
		var stdout strings.Builder
		c := exec.Command(o.Binary, args...)
		c.Env, c.Stdout, c.Stderr = o.Env, &stdout, log
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		told, err := startfd.Listen(c)
		if err != nil {
			return nil, processes, deaths, landed, err
		}
		done, err := tether.Start(c) // a trial dies with explore, SIGKILL included
		told.Started()
		if err != nil {
			return nil, processes, deaths, landed, err
		}
		var kill <-chan time.Time
		if len(kills) > 0 {
			kill = time.After(kills[0])
		}
	wait:
		for {
			select {
			case <-done:
				break wait
			case <-kill:
				kills = kills[1:]
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				landed++
				kill = nil
			case <-ctx.Done():
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				<-done
				return nil, processes, deaths, landed, ctx.Err()
			}
		}
		ws := c.ProcessState.Sys().(syscall.WaitStatus)
		if id := told.ID(); id != "" && !slices.Contains(args, "--workflow-id="+id) {
			args = append(args, "--workflow-id="+id) // see package startfd
		}
		if ws.Signaled() {
			deaths++
			continue
		}
		var r lab.Report
		if json.Unmarshal([]byte(stdout.String()), &r) != nil || r.WorkflowID == "" {
			return nil, processes, deaths, landed, fmt.Errorf("the experiment exited %d with no report (see %s)", ws.ExitStatus(), log.Name())
		}
		return &r, processes, deaths, landed, nil
	}
	return nil, processes, deaths, landed, fmt.Errorf("gave up after %d restarts", maxRestarts)
}

// Calibrate times one run of the experiment with seed, its random faults
// and no kill, as the trials run it, from its first process's start:
// external kills are drawn within it, so that they land while the
// experiment runs rather than all in its start-up.
func (o *Options) Calibrate(ctx context.Context, seed int64) (time.Duration, error) {
	w, err := o.newWhere(ctx, "calibrate")
	if err != nil {
		return 0, err
	}
	defer o.remove(w)
	start := time.Now()
	if _, _, _, _, err := o.run(ctx, w, []string{"--seed", strconv.FormatInt(seed, 10)}, nil); err != nil {
		return 0, fmt.Errorf("the run that times a trial: %w", err)
	}
	return time.Since(start), nil
}

// trial runs and checks one trial; tag names its folder.
func (o *Options) trial(ctx context.Context, tag string, t Trial, extra []string, kills []time.Duration) Trial {
	start := time.Now()
	w, err := o.newWhere(ctx, tag)
	if err != nil {
		t.Why = err.Error()
		return t
	}
	tctx, cancel := context.WithTimeout(ctx, o.TrialTimeout)
	defer cancel()
	rep, processes, deaths, landed, err := o.run(tctx, w, extra, kills)
	t.Processes, t.Crashes, t.Kills = processes, deaths, landed
	t.WallMs = time.Since(start).Milliseconds()
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		t.Hung, t.Why, t.Kept = true, fmt.Sprintf("hung: still running after %s", o.TrialTimeout), w.dir
		return t
	case ctx.Err() != nil:
		o.remove(w)
		t.Why = "stopped"
		return t
	case err != nil:
		t.Why, t.Kept = err.Error(), w.dir
		return t
	}
	t.WorkflowID, t.Faults = rep.WorkflowID, rep.Faults
	o.check(ctx, w, &t)
	if !t.Held || o.Keep {
		t.Kept = w.dir
	} else {
		o.remove(w)
	}
	return t
}

// check checks the experiment's guarantee against the trial's databases.
func (o *Options) check(ctx context.Context, w *where, t *Trial) {
	var why []string
	fail := func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }
	defer func() {
		t.Held = len(why) == 0
		t.Why = strings.Join(why, "; ")
	}()
	e, in, g := o.Experiment, o.Params.Input, o.Experiment.Guarantee
	client, err := dbos.NewClient(ctx, dbos.ClientConfig{DatabaseURL: w.systemDB, AppName: lab.AppName, Logger: discard})
	if err != nil {
		fail("system database: %v", err)
		return
	}
	defer client.Shutdown(client, 5*time.Second)
	wfs, err := dbos.ListWorkflows(client, dbos.WithFilterName(e.WorkflowNames()[0]),
		dbos.WithFilterLoadInput(false), dbos.WithFilterLoadOutput(false))
	if err != nil || len(wfs) != 1 {
		fail("the system database holds %d main workflows, want 1 (%v)", len(wfs), err)
		return
	}
	wf := wfs[0]
	t.WorkflowID, t.Status = wf.ID, string(wf.Status)
	if t.Status != g.Status {
		fail("the workflow ended %s, not %s", t.Status, g.Status)
	}
	st, err := store.OpenForReading(ctx, w.store)
	if err != nil {
		fail("store: %v", err)
		return
	}
	defer st.Close()
	tb := st.Table(e.Table)
	c, err := tb.Counts(ctx, wf.ID)
	if err != nil {
		fail("store: %v", err)
		return
	}
	t.Rows, t.Unique, t.Latest, t.Duplicates = c.Rows, c.UniqueUsers, c.Latest, c.Rows-c.UniqueUsers
	want := in.Users()
	if g.AllUsers {
		ids, err := tb.UserIDs(ctx, wf.ID)
		if err != nil {
			fail("store: %v", err)
			return
		}
		missing := 0
		for _, p := range e.PageNumbers(in) {
			for _, u := range fake.Page(p, in.PageSize) {
				if !ids[u.ID] {
					missing++
				}
			}
		}
		if missing > 0 {
			fail("%d of %d users are missing from the table", missing, want)
		}
	}
	if g.LatestExact && c.Latest != want {
		fail("the window-function count is %d, not %d", c.Latest, want)
	}
	if g.NoDuplicates && t.Duplicates != 0 {
		fail("%d duplicate rows", t.Duplicates)
	}
	run, err := lab.ReadRun(ctx, client, st, wf.ID, false, nil)
	if err != nil {
		fail("ledger: %v", err)
		return
	}
	t.Faults = run.Schedule()
	s := run.Summary()
	t.DuplicatesFromRetries, t.DuplicatesFromRecoveries, t.DuplicatesFromCommitCrashes =
		s.DuplicatesFromRetries, s.DuplicatesFromRecoveries, s.DuplicatesFromCommitCrashes
	t.Recoveries, t.StepAttempts, t.UniqueViolations = s.Recoveries, s.StepAttempts, s.UniqueViolations
	if s.Duplicates() != t.Duplicates {
		fail("the ledger explains %d of the %d duplicate rows", s.Duplicates(), t.Duplicates)
	}
	if g.Unique && s.UniqueViolations == 0 {
		fail("no UNIQUE violation")
	}
	if g.NoUnique && s.UniqueViolations > 0 {
		fail("%d UNIQUE violations", s.UniqueViolations)
	}
}

// replay is the command that replays a trial with the faults that fired.
func (o *Options) replay(faults string) string {
	if faults == "" {
		faults = "none"
	}
	return o.command("--faults", faults)
}

// command is `durlab run` of the experiment with its flags, until success,
// and extra, quoted for a shell.
func (o *Options) command(extra ...string) string {
	args := append([]string{"durlab", "run", o.Experiment.Name}, o.Flags...)
	args = append(append(args, "--until-success", "--restart-delay", "0"), extra...)
	return shell.Join(args...)
}

// pool runs n trials, Parallel at a time, in order of their index.
func (o *Options) pool(ctx context.Context, n int, one func(i int) Trial) []Trial {
	trials := make([]Trial, n)
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range max(o.Parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				trials[i] = one(i)
				mu.Lock()
				done++
				if o.Progress != nil {
					o.Progress(done, n)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return trials
}

// Range is A..B, inclusive, from 1.
type Range struct{ From, To int }

// ParseRange reads "A..B", or "A" alone.
func ParseRange(s string) (Range, error) {
	a, b, two := strings.Cut(s, "..")
	from, err1 := strconv.Atoi(strings.TrimSpace(a))
	to := from
	var err2 error
	if two {
		to, err2 = strconv.Atoi(strings.TrimSpace(b))
	}
	if err1 != nil || err2 != nil || from < 0 || to < from {
		return Range{}, fmt.Errorf("%q is not a range: write A..B with 0 <= A <= B", s)
	}
	return Range{from, to}, nil
}
