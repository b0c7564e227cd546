package chaos

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// TestLedgerThroughExternalKills kills dedup from outside at random moments,
// for several seeds, lets `run --until-success` finish it, and checks the
// report and the attempt ledger against independent queries of the users
// table and DBOS's own tables:
//   - the report's rows, unique users and duplicates are the table's, and
//     its duplicates by cause sum to them;
//   - the ledger's write events account for every row (none missing, none
//     extra), so "rows written" stayed exact through the kills;
//   - every step DBOS checkpointed has an attempt in the ledger that ended
//     as DBOS recorded it: no attempt of a killed process is missing;
//   - the processes the report says died are no fewer than the injected
//     crashes and no more than those plus the kills that landed.
func TestLedgerThroughExternalKills(t *testing.T) {
	base := *seed
	if base == 0 {
		base = rand.Uint64N(1 << 31)
	}
	const seeds = 10
	t.Logf("seeds %d..%d (replay with -args -chaos.seed %d)", base, base+seeds-1, base)
	for i := range uint64(seeds) {
		s := base + i
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			t.Parallel()
			checkLedgerThroughKills(t, s)
		})
	}
}

func checkLedgerThroughKills(t *testing.T, s uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()
	rng := rand.New(rand.NewPCG(s, s^0x1ed9e7))
	dir := t.TempDir()
	args := []string{"dedup", "--data-dir", dir, "--seed", strconv.FormatUint(s, 10),
		"--batches", "4", "--pages", "5", "--page-size", "10", "--commit-crash-prob", "0.2", "-q"}
	landed := 0
	for range 3 {
		c := durlab(ctx, append(args, "--output", "json")...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Duration(rng.Int64N(int64(700 * time.Millisecond)))):
			c.Process.Signal(syscall.SIGKILL)
			<-done
			landed++
		}
		if c.ProcessState.Success() {
			break
		}
	}
	out, err := durlab(ctx, append([]string{"run"}, append(args, "--until-success", "--restart-delay", "0", "--output", "json")...)...).Output()
	if err != nil {
		t.Fatalf("run --until-success: %v\n%s", err, out)
	}
	var sum struct {
		Crashes int `json:"crashes"`
		Report  struct {
			WorkflowID                  string `json:"workflow_id"`
			Attached                    bool   `json:"attached"`
			Rows                        int64  `json:"rows"`
			UniqueUsers                 int64  `json:"unique_users"`
			Duplicates                  int64  `json:"duplicates"`
			DuplicatesFromRetries       int64  `json:"duplicates_from_retries"`
			DuplicatesFromRecoveries    int64  `json:"duplicates_from_recoveries"`
			DuplicatesFromCommitCrashes int64  `json:"duplicates_from_commit_crashes"`
			InjectedCrashes             int64  `json:"injected_crashes"`
			Crashes                     int64  `json:"crashes"`
			KilledFromOutside           int64  `json:"killed_from_outside"`
			AsExpected                  bool   `json:"as_expected"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("run output: %v\n%s", err, out)
	}
	r := sum.Report
	t.Logf("%d kills landed; workflow %s: %d rows, %d unique, %d duplicates (%d retries, %d recoveries, %d commit crashes); %d processes died (%d injected, %d killed)",
		landed, r.WorkflowID, r.Rows, r.UniqueUsers, r.Duplicates, r.DuplicatesFromRetries, r.DuplicatesFromRecoveries,
		r.DuplicatesFromCommitCrashes, r.Crashes, r.InjectedCrashes, r.KilledFromOutside)
	if !r.AsExpected {
		t.Fatalf("not as expected: %s", out)
	}

	users, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "users.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer users.Close()
	var rows, unique, written int64
	if err := users.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT id) FROM users_ledger WHERE workflow_id = ?`, r.WorkflowID).Scan(&rows, &unique); err != nil {
		t.Fatal(err)
	}
	if r.Rows != rows || r.UniqueUsers != unique || r.Duplicates != rows-unique {
		t.Errorf("report: %d rows, %d unique, %d duplicates; the table: %d rows, %d unique", r.Rows, r.UniqueUsers, r.Duplicates, rows, unique)
	}
	if by := r.DuplicatesFromRetries + r.DuplicatesFromRecoveries + r.DuplicatesFromCommitCrashes; by != r.Duplicates {
		t.Errorf("duplicates by cause sum to %d, not %d", by, r.Duplicates)
	}
	if err := users.QueryRow(`SELECT COALESCE(SUM(rows_written), 0) FROM durlab_events WHERE root_id = ? AND kind = 'write'`, r.WorkflowID).Scan(&written); err != nil {
		t.Fatal(err)
	}
	if written != rows {
		t.Errorf("the ledger's writes account for %d rows, the table holds %d", written, rows)
	}
	if r.Crashes < r.InjectedCrashes || r.KilledFromOutside > int64(landed) {
		t.Errorf("%d processes died, %d of them killed from outside; %d crashes were injected and %d kills landed", r.Crashes, r.KilledFromOutside, r.InjectedCrashes, landed)
	}

	// Every step DBOS checkpointed was run by an attempt the ledger knows,
	// which ended as DBOS recorded it.
	type step struct {
		workflow string
		id       int
	}
	ended := map[step]string{}
	trace, err := durlab(ctx, "workflow", "trace", "--data-dir", dir, r.WorkflowID, "-o", "jsonl").Output()
	if err != nil {
		t.Fatalf("workflow trace: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(trace))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Kind       string `json:"kind"`
			WorkflowID string `json:"workflow_id"`
			StepID     int    `json:"step_id"`
			Outcome    string `json:"outcome"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Kind == "attempt" && rec.StepID >= 0 && (rec.Outcome == "ok" || ended[step{rec.WorkflowID, rec.StepID}] == "") {
			ended[step{rec.WorkflowID, rec.StepID}] = rec.Outcome
		}
	}
	sys, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "dbos.sqlite")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	q, err := sys.Query(`SELECT o.workflow_uuid, o.function_id, o.function_name, o.error IS NOT NULL FROM operation_outputs o
		JOIN workflow_status w ON w.workflow_uuid = o.workflow_uuid
		WHERE (w.workflow_uuid = ? OR w.parent_workflow_id = ?) AND o.child_workflow_id IS NULL`, r.WorkflowID, r.WorkflowID)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	checkpointed := 0
	for q.Next() {
		var wf, name string
		var id int
		var failed bool
		if err := q.Scan(&wf, &id, &name, &failed); err != nil {
			t.Fatal(err)
		}
		checkpointed++
		got, want := ended[step{wf, id}], "ok"
		if failed {
			want = "error"
		}
		if got != want && !(failed && got != "" && got != "ok") {
			t.Errorf("%s step %d %s: DBOS checkpointed it (failed: %v), the ledger's attempts say %q", shortID(wf), id, name, failed, got)
		}
	}
	if checkpointed == 0 {
		t.Fatal("DBOS checkpointed no step: the query looked at nothing")
	}
	checkSummarizeAgrees(t, ctx, dir, r.WorkflowID)
}

// checkSummarizeAgrees: the report's counts, read one workflow at a time
// (lab.Summarize), are those of the whole run assembled at once.
func checkSummarizeAgrees(t *testing.T, ctx context.Context, dir, root string) {
	t.Helper()
	st, err := store.OpenForReading(ctx, filepath.Join(dir, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	client, err := dbos.NewClient(ctx, dbos.ClientConfig{DatabaseURL: "sqlite:" + filepath.Join(dir, "dbos.sqlite"), AppName: lab.AppName,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Shutdown(client, 5*time.Second)
	whole, err := lab.ReadRun(ctx, client, st, root, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum, faults, err := lab.Summarize(ctx, client, st, root, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := whole.Summary(); sum != want {
		t.Errorf("one workflow at a time: %+v\nthe whole run:      %+v", sum, want)
	}
	if want := whole.Schedule(); faults != want {
		t.Errorf("schedule one workflow at a time %q, of the whole run %q", faults, want)
	}
}

func shortID(id string) string {
	if i := strings.LastIndexByte(id, '-'); i > 8 {
		return id[:8] + "..." + id[i:]
	}
	return id
}
