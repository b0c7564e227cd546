package cmd_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/durlab/durlab/explore"
	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/internal/pgtest"
	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
	"github.com/durlab/durlab/workflows"
)

// brokenExperiment promises exactly-once but writes its page in a plain
// step, so that a crash after the write's commit and before its checkpoint
// writes the page twice: the explorer must catch it. TestMain registers it
// in the test binary only.
var brokenExperiment = &lab.Experiment{
	Name:        "broken",
	Origin:      "none (a test's)",
	Short:       "Claims exactly-once, writes in a plain step",
	Long:        "A test experiment whose guarantee a crash after its commit breaks.",
	Knobs:       []lab.Knob{lab.KnobPages, lab.KnobPageSize},
	Defaults:    lab.Params{Input: lab.Input{Pages: 1, PageSize: 10}},
	Table:       store.Ledger,
	Main:        lab.NewWorkflow("users_workflow", brokenWorkflow),
	PageNumbers: lab.PagesFrom1,
	Guarantee:   lab.Guarantee{Status: "SUCCESS", AllUsers: true, NoDuplicates: true},
	Expected:    lab.PagesExpected,
	Judge: func(rep *lab.Report) {
		rep.AsExpected = rep.Succeeded() && rep.Duplicates == 0
		rep.Lesson = fmt.Sprintf("%d duplicate rows", rep.Duplicates)
	},
}

func brokenWorkflow(ctx dbos.Context, in lab.Input) (store.Counts, error) {
	return lab.Execute(ctx, in, func(x *lab.Execution) (store.Counts, error) {
		for page := 1; page <= in.Pages; page++ {
			_, err := lab.Step(x, fmt.Sprintf("write_page_%d", page), func(a *lab.Attempt) (int, error) {
				return in.PageSize, a.InsertPage(store.Ledger, page, fake.Page(page, in.PageSize), time.Now().UTC())
			}, lab.Retries{})
			if err != nil {
				return store.Counts{}, err
			}
		}
		return x.Count(store.Ledger)
	})
}

// durlab runs the durlab binary TestMain put on PATH, as a real process,
// in dir, and returns its exit code and outputs.
func durlab(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	c := exec.Command("durlab", args...)
	c.Dir, c.Env = dir, append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	if c.ProcessState == nil {
		t.Fatalf("durlab %s: %v", strings.Join(args, " "), err)
	}
	return c.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// cleanEnv is this environment without database settings, which a
// developer's shell may carry.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains([]string{"DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR", "DURLAB_EXECUTOR_ID"}, k)
	})
}

func exploreJSON(t *testing.T, stdout string) explore.Result {
	t.Helper()
	var res explore.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("explore's JSON: %v\n%s", err, stdout)
	}
	return res
}

// trialCounts reads a kept trial's databases directly: its main workflows'
// statuses, and what the table holds for the workflow.
type trialCounts struct {
	statuses               []string
	rows, unique, latest   int64
	missing                int
	workflowID, tableError string
}

func readTrial(t *testing.T, dir string, e *lab.Experiment, in lab.Input) trialCounts {
	t.Helper()
	var c trialCounts
	sys, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "data", "dbos.sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	rows, err := sys.Query(`SELECT workflow_uuid, status FROM workflow_status WHERE name = ?`, e.WorkflowNames()[0])
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	for rows.Next() {
		var id, status string
		rows.Scan(&id, &status)
		c.workflowID, c.statuses = id, append(c.statuses, status)
	}
	rows.Close()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "data", "users.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	table := e.Table.Table()
	q := `SELECT count(*), count(DISTINCT id) FROM ` + table + ` WHERE workflow_id = ?`
	if err := db.QueryRow(q, c.workflowID).Scan(&c.rows, &c.unique); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	q = `SELECT count(*) FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY id, workflow_id ORDER BY created_at DESC) AS rn
		FROM ` + table + ` WHERE workflow_id = ?) WHERE rn = 1`
	if err := db.QueryRow(q, c.workflowID).Scan(&c.latest); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	for _, p := range e.PageNumbers(in) {
		for _, u := range fake.Page(p, in.PageSize) {
			var n int
			db.QueryRow(`SELECT count(*) FROM `+table+` WHERE workflow_id = ? AND id = ?`, c.workflowID, u.ID).Scan(&n)
			if n == 0 {
				c.missing++
			}
		}
	}
	return c
}

// TestExploreCrashPoints explores small exactly-once and dedup runs at
// every crash point, keeping every trial's folder, and checks explore's
// table against the trials' databases, read here with plain SQL.
func TestExploreCrashPoints(t *testing.T) {
	for _, c := range []struct {
		name string
		exp  func() *lab.Experiment
	}{
		{"exactly-once", func() *lab.Experiment { return workflows.ExactlyOnce }},
		{"dedup", func() *lab.Experiment { return workflows.Dedup }},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			code, stdout, stderr := durlab(t, tmp, []string{"TMPDIR=" + tmp},
				"explore", c.name, "--batches", "2", "--pages", "2", "--crash-points", "--keep", "--parallel", "2", "-o", "json")
			if code != 0 {
				t.Fatalf("explore exited %d\n%s\n%s", code, stdout, stderr)
			}
			res := exploreJSON(t, stdout)
			e, in := c.exp(), lab.Input{Batches: 2, Pages: 2, PageSize: 10}
			want := int64(in.Users())
			if res.Points < 20 || len(res.Trials) != res.Points || res.Held != res.Points || res.Failed != 0 {
				t.Fatalf("%d points, %d trials, %d held, %d failed", res.Points, len(res.Trials), res.Held, res.Failed)
			}
			var sites []string
			withDuplicates := 0
			for _, tr := range res.Trials {
				sites = append(sites, tr.Site)
				if tr.Kept == "" {
					t.Fatalf("point %d: no folder kept under --keep", tr.K)
				}
				db := readTrial(t, tr.Kept, e, in)
				if len(db.statuses) != 1 || db.statuses[0] != "SUCCESS" {
					t.Errorf("point %d (%s): main workflows %v, want one SUCCESS", tr.K, tr.Site, db.statuses)
				}
				if db.rows != tr.Rows || db.unique != tr.Unique || db.latest != tr.Latest || db.workflowID != tr.WorkflowID {
					t.Errorf("point %d (%s): explore says %d rows, %d unique, %d latest of %s; the store holds %d, %d, %d of %s",
						tr.K, tr.Site, tr.Rows, tr.Unique, tr.Latest, tr.WorkflowID, db.rows, db.unique, db.latest, db.workflowID)
				}
				if db.missing != 0 || db.unique != want || db.latest != want {
					t.Errorf("point %d (%s): %d users missing, %d unique, %d latest; want all %d", tr.K, tr.Site, db.missing, db.unique, db.latest, want)
				}
				if tr.Recoveries != 1 || !strings.Contains(tr.Faults, "crash@"+tr.Site) {
					t.Errorf("point %d (%s): %d recoveries, faults %q: the crash did not happen there", tr.K, tr.Site, tr.Recoveries, tr.Faults)
				}
				if db.rows > db.unique {
					withDuplicates++
					if got := tr.DuplicatesFromRetries + tr.DuplicatesFromRecoveries + tr.DuplicatesFromCommitCrashes; got != db.rows-db.unique {
						t.Errorf("point %d (%s): causes add up to %d of %d duplicates", tr.K, tr.Site, got, db.rows-db.unique)
					}
				}
			}
			for _, s := range []string{"start-batch-1", "insert_batch_1:after-commit", "return-batch-2", "after-batch-2", "count_users:end"} {
				if !slices.Contains(sites, s) {
					t.Errorf("no crash point %s among %v", s, sites)
				}
			}
			if len(slices.Compact(slices.Sorted(slices.Values(sites)))) != len(sites) {
				t.Errorf("crash points repeat a site: %v", sites)
			}
			switch c.name {
			case "exactly-once":
				if withDuplicates != 0 {
					t.Errorf("exactly-once wrote duplicates at %d points", withDuplicates)
				}
			case "dedup":
				// The crashes between an insert's commits and its checkpoint
				// write duplicates: the lesson.
				if withDuplicates == 0 || res.WithDuplicates != withDuplicates || !res.CountedAway {
					t.Errorf("dedup: %d points with duplicates in the store, explore says %d (counted away %v)", withDuplicates, res.WithDuplicates, res.CountedAway)
				}
			}
		})
	}
}

// TestExploreCatchesABrokenGuarantee: an experiment that claims no
// duplicates but writes in a plain step fails at the points between its
// commit and its checkpoint; explore exits 1, and the replay command it
// prints reproduces the failure.
func TestExploreCatchesABrokenGuarantee(t *testing.T) {
	tmp := t.TempDir()
	code, stdout, stderr := durlab(t, tmp, []string{"TMPDIR=" + tmp}, "explore", "broken", "--crash-points")
	if code != 1 {
		t.Fatalf("explore exited %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"broken: guarantee held at 3 of 5 crash points",
		"point 2 (write_page_1:after-page-1): 10 duplicate rows",
		"point 3 (write_page_1:end): 10 duplicate rows"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("explore's output does not say %q:\n%s", want, stdout)
		}
	}
	var replay string
	for _, line := range strings.Split(stdout, "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(line), "replay: "); ok && strings.Contains(r, "after-page-1") {
			replay = r
		}
	}
	if replay == "" {
		t.Fatalf("no replay command for point 2:\n%s", stdout)
	}
	// The replay, pasted into a shell in an empty folder.
	dir := t.TempDir()
	c := exec.Command("sh", "-c", replay+" --output json")
	c.Dir, c.Env = dir, cleanEnv()
	// Exit 1: the run was not as its experiment expects.
	out, err := c.Output()
	if c.ProcessState == nil || c.ProcessState.ExitCode() != 1 {
		t.Fatalf("%s: %v, want exit 1\n%s", replay, err, out)
	}
	var sum struct {
		Crashes int         `json:"crashes"`
		Report  *lab.Report `json:"report"`
	}
	if err := json.Unmarshal(out, &sum); err != nil || sum.Report == nil {
		t.Fatalf("the replay's JSON: %v\n%s", err, out)
	}
	if sum.Crashes != 1 || sum.Report.Duplicates != 10 || sum.Report.DuplicatesFromCommitCrashes != 10 {
		t.Errorf("the replay: %d crashes, %d duplicates (%d from commit crashes); want 1, 10, 10",
			sum.Crashes, sum.Report.Duplicates, sum.Report.DuplicatesFromCommitCrashes)
	}
	// The failed trials keep their folders, the passing ones leave none.
	kept, _ := filepath.Glob(filepath.Join(tmp, "durlab-explore-*", "point-*"))
	if len(kept) != 2 {
		t.Errorf("kept %v, want the two failed points' folders", kept)
	}
}

// TestReplayingFaultsReproducesTheReport: a seeded random run's report
// carries the faults that fired; pasting them back as --faults gives the
// same report, IDs and timings aside.
func TestReplayingFaultsReproducesTheReport(t *testing.T) {
	args := []string{"run", "dedup", "--until-success", "--restart-delay", "0", "--batches", "3", "--pages", "2", "--output", "json"}
	code, stdout, stderr := durlab(t, t.TempDir(), nil, append(args, "--seed", "3", "--fail-prob", "0.5",
		"--commit-crash-prob", "0.3", "--crash-prob", "0.5", "--crash-after", "0", "--attempts", "4")...)
	if code != 0 {
		t.Fatalf("seeded run exited %d\n%s", code, stderr)
	}
	first := runReport(t, stdout)
	if first.Faults == "" || first.InjectedCrashes == 0 || first.InjectedFailures == 0 {
		t.Fatalf("seed 3 should inject failures and crashes: faults %q", first.Faults)
	}
	code, stdout, stderr = durlab(t, t.TempDir(), nil, append(args, "--faults", first.Faults)...)
	if code != 0 {
		t.Fatalf("replay exited %d\n%s", code, stderr)
	}
	again := runReport(t, stdout)
	for _, r := range []*lab.Report{&first, &again} {
		r.WorkflowID, r.Seed, r.Lesson, r.Error = "", 0, "", ""
	}
	a, _ := json.Marshal(first)
	b, _ := json.Marshal(again)
	if !bytes.Equal(normalizeReport(a), normalizeReport(b)) {
		t.Errorf("the replay's report differs:\nfirst  %s\nreplay %s", a, b)
	}
}

func runReport(t *testing.T, stdout string) lab.Report {
	t.Helper()
	var sum struct {
		Report *lab.Report `json:"report"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Report == nil {
		t.Fatalf("run's JSON: %v\n%s", err, stdout)
	}
	return *sum.Report
}

// normalizeReport drops the fields that differ between any two runs: the
// timings.
func normalizeReport(b []byte) []byte {
	var m map[string]any
	json.Unmarshal(b, &m)
	for k := range m {
		if strings.HasSuffix(k, "_ms") || strings.HasSuffix(k, "_at") || k == "elapsed" {
			delete(m, k)
		}
	}
	out, _ := json.Marshal(m)
	return out
}

// TestExploreInterruptLeavesNothing: Ctrl-C in the middle of an
// exploration stops every trial's process and removes the folders.
func TestExploreInterruptLeavesNothing(t *testing.T) {
	tmp := t.TempDir()
	c := exec.Command("durlab", "explore", "exactly-once", "--crash-points", "--parallel", "2")
	c.Dir, c.Env = tmp, append(cleanEnv(), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until trials run: their folders appear.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(tmp, "durlab-explore-*", "point-*")); len(m) > 0 && trialProcesses(tmp) > 0 {
			break
		}
		if time.Now().After(deadline) {
			c.Process.Kill()
			t.Fatalf("no trial started within a minute\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Process.Signal(syscall.SIGINT)
	err := c.Wait()
	if c.ProcessState.ExitCode() != 130 {
		t.Errorf("explore after Ctrl-C: %v, want exit 130\n%s", err, stderr.String())
	}
	if n := trialProcesses(tmp); n > 0 {
		t.Errorf("%d trial processes outlived explore", n)
	}
	if m, _ := filepath.Glob(filepath.Join(tmp, "durlab-explore-*")); len(m) > 0 {
		t.Errorf("explore left %v", m)
	}
}

// TestExploreKilledTakesItsTrials: explore SIGKILLed mid-trial leaves no
// trial process running unsupervised: each dies with it, its workflow
// PENDING as a crash leaves it, where an orphan would have run on to
// SUCCESS (no crash is injected here, so nothing else stops it).
func TestExploreKilledTakesItsTrials(t *testing.T) {
	tmp := t.TempDir()
	c := exec.Command("durlab", "explore", "dedup", "--seeds", "1..1", "--batches", "100", "--crash-prob", "0", "--parallel", "1")
	c.Dir, c.Env = tmp, append(cleanEnv(), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	systemDBs := filepath.Join(tmp, "durlab-explore-*", "*", "data", "dbos.sqlite")
	deadline := time.Now().Add(time.Minute)
	for !(trialProcesses(tmp) > 0 && slices.Contains(trialStatuses(t, systemDBs), "PENDING")) {
		if time.Now().After(deadline) {
			t.Fatalf("no trial had started its workflow within a minute\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	for deadline := time.Now().Add(time.Minute); trialProcesses(tmp) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d trial processes still run a minute after explore was killed", trialProcesses(tmp))
		}
	}
	statuses := trialStatuses(t, systemDBs)
	if len(statuses) == 0 || slices.Contains(statuses, "SUCCESS") {
		t.Errorf("trial workflows %v after explore's death, want all PENDING: a trial ran on without it", statuses)
	}
}

// trialStatuses reads the statuses of the main workflows in the trials'
// system databases that match glob.
func trialStatuses(t *testing.T, glob string) []string {
	t.Helper()
	paths, _ := filepath.Glob(glob)
	var statuses []string
	for _, p := range paths {
		db, err := sql.Open("sqlite3", "file:"+p+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(`SELECT status FROM workflow_status WHERE name = ?`, workflows.Dedup.WorkflowNames()[0])
		if err == nil { // a trial's database may not have its tables yet
			for rows.Next() {
				var s string
				rows.Scan(&s)
				statuses = append(statuses, s)
			}
			rows.Close()
		}
		db.Close()
	}
	return statuses
}

// trialProcesses counts the processes whose command line names a folder
// under dir: the trials of an exploration there.
func trialProcesses(dir string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte("--data-dir\x00"+dir)) {
			n++
		}
	}
	return n
}

// TestExploreOnPostgres: with Postgres URLs each trial gets databases of
// its own on that server, checked there, and dropped when it passes.
func TestExploreOnPostgres(t *testing.T) {
	sys, st := pgtest.Database(t), pgtest.Database(t)
	tmp := t.TempDir()
	code, stdout, stderr := durlab(t, tmp, []string{"TMPDIR=" + tmp}, "explore", "exactly-once", "--batches", "1", "--pages", "1",
		"--crash-points", "--system-db", sys, "--store", st, "-o", "json")
	if code != 0 {
		t.Fatalf("explore exited %d\n%s\n%s", code, stdout, stderr)
	}
	res := exploreJSON(t, stdout)
	if res.Points < 10 || res.Held != res.Points {
		t.Fatalf("%d of %d points held", res.Held, res.Points)
	}
	for _, tr := range res.Trials {
		if tr.Rows != 10 || tr.Unique != 10 || tr.Recoveries != 1 {
			t.Errorf("point %d (%s): %d rows, %d unique, %d recoveries; want 10, 10, 1", tr.K, tr.Site, tr.Rows, tr.Unique, tr.Recoveries)
		}
	}
	if left := trialDatabases(t, sys, st); left != 0 {
		t.Errorf("%d trial databases left on the server", left)
	}
	// Under --keep they stay, so the count above could see them.
	code, stdout, stderr = durlab(t, tmp, []string{"TMPDIR=" + tmp}, "explore", "exactly-once", "--batches", "1", "--pages", "1",
		"--crash-points=1..2", "--keep", "--system-db", sys, "--store", st, "-o", "json")
	if code != 0 {
		t.Fatalf("explore --keep exited %d\n%s\n%s", code, stdout, stderr)
	}
	if kept := trialDatabases(t, sys, st); kept != 4 {
		t.Errorf("--keep kept %d trial databases, want 2 per trial", kept)
	}
	dropTrialDatabases(t, sys, st)
}

// trialPatterns are the LIKE patterns of the trial databases explore names
// after the databases of urls.
func trialPatterns(t *testing.T, urls ...string) []string {
	var pats []string
	for _, u := range urls {
		base, err := store.DatabaseOf(u)
		if err != nil {
			t.Fatal(err)
		}
		pats = append(pats, strings.ToLower(base[:min(len(base), 24)])+`\_x%`)
	}
	return pats
}

func trialDatabaseNames(t *testing.T, urls ...string) []string {
	t.Helper()
	admin, err := sql.Open("pgx", pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var names []string
	for _, p := range trialPatterns(t, urls...) {
		rows, err := admin.Query(`SELECT datname FROM pg_database WHERE datname LIKE $1`, p)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		rows.Close()
	}
	return names
}

func trialDatabases(t *testing.T, urls ...string) int { return len(trialDatabaseNames(t, urls...)) }

func dropTrialDatabases(t *testing.T, urls ...string) {
	admin, err := sql.Open("pgx", pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for _, n := range trialDatabaseNames(t, urls...) {
		if _, err := admin.Exec(`DROP DATABASE "` + n + `" WITH (FORCE)`); err != nil {
			t.Errorf("dropping %s: %v", n, err)
		}
	}
}

// TestExploreReportsHungTrials: a trial still running after
// --trial-timeout is reported as hung, fails the exploration, keeps its
// folder, and leaves no process behind.
func TestExploreReportsHungTrials(t *testing.T) {
	tmp := t.TempDir()
	code, stdout, stderr := durlab(t, tmp, []string{"TMPDIR=" + tmp}, "explore", "recover", "--crash-points=1..2",
		"--trial-timeout", "20ms", "--wait", "0s", "-o", "json")
	if code != 1 {
		t.Fatalf("explore exited %d, want 1\n%s\n%s", code, stdout, stderr)
	}
	res := exploreJSON(t, stdout)
	if len(res.Trials) != 2 || res.Failed != 2 {
		t.Fatalf("%d trials, %d failed; want 2 hung", len(res.Trials), res.Failed)
	}
	for _, tr := range res.Trials {
		if !tr.Hung || !strings.Contains(tr.Why, "still running after 20ms") || tr.Kept == "" {
			t.Errorf("point %d: hung %v, why %q, kept %q", tr.K, tr.Hung, tr.Why, tr.Kept)
		}
		if _, err := os.Stat(tr.Kept); err != nil {
			t.Errorf("point %d: its folder is gone: %v", tr.K, err)
		}
	}
	if n := trialProcesses(tmp); n > 0 {
		t.Errorf("%d trial processes outlived explore", n)
	}
}
