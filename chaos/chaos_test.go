// Package chaos kills durlab from outside, at random moments, and checks
// that nothing is lost: dedup is started and SIGKILLed N times, then
// `durlab run dedup --until-success` finishes it, and every page of every
// batch must be in the store, with exactly the expected users.
//
// The harness is seeded (-chaos.seed), bounded in kills and time, and stops
// by itself. CI runs the small size; -chaos.large runs 100,000 users under
// 20 kills:
//
//	go test ./chaos -run Chaos -args -chaos.large
package chaos

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/durlab/durlab/cmd"
	"github.com/durlab/durlab/fake"
)

var (
	large    = flag.Bool("chaos.large", false, "100,000 users under 20 kills instead of 1,000 under 5")
	seed     = flag.Uint64("chaos.seed", 0, "seed of the kill schedule and of dedup's faults (0: random, logged)")
	timeBox  = flag.Duration("chaos.timeout", 5*time.Minute, "give up after this long")
	asDurlab = "DURLAB_CHAOS_RUN_AS_DURLAB"
)

// TestMain lets this test binary run as durlab, so the harness kills real
// durlab processes without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv(asDurlab) == "1" {
		os.Exit(cmd.Main())
	}
	os.Exit(m.Run())
}

type sizes struct{ batches, pages, pageSize, kills int }

func TestChaosExternalKills(t *testing.T) {
	sz := sizes{batches: 10, pages: 10, pageSize: 10, kills: 5}
	maxDelay := 600 * time.Millisecond
	if *large {
		sz = sizes{batches: 100, pages: 10, pageSize: 100, kills: 20}
		maxDelay = 3 * time.Second
	}
	s := *seed
	if s == 0 {
		s = rand.Uint64N(1 << 31)
	}
	t.Logf("chaos seed %d (replay with -args -chaos.seed %d): %d kills, %dx%dx%d users", s, s, sz.kills, sz.batches, sz.pages, sz.pageSize)
	rng := rand.New(rand.NewPCG(s, s))
	ctx, cancel := context.WithTimeout(context.Background(), *timeBox)
	defer cancel()

	dir := t.TempDir()
	args := []string{"dedup", "--data-dir", dir, "--seed", strconv.FormatUint(s, 10),
		"--batches", strconv.Itoa(sz.batches), "--pages", strconv.Itoa(sz.pages), "--page-size", strconv.Itoa(sz.pageSize)}
	killed := 0
	var finished []byte
	for i := 0; i < sz.kills; i++ {
		delay := time.Duration(rng.Int64N(int64(maxDelay)))
		c := durlab(ctx, append(args, "--output", "json")...)
		var stdout strings.Builder
		c.Stdout = &stdout
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done: // finished, or crashed by its own injected fault, first
		case <-time.After(delay):
			c.Process.Signal(syscall.SIGKILL)
			<-done
			killed++
		}
		if ctx.Err() != nil {
			t.Fatalf("time box of %s exceeded after %d kills", *timeBox, killed)
		}
		if c.ProcessState.Success() {
			finished = []byte(`{"exit_code":0,"report":` + stdout.String() + `}`)
			break // the workflow finished before the next kill
		}
	}
	t.Logf("%d external SIGKILLs landed", killed)

	out := finished
	if out == nil {
		var err error
		out, err = durlab(ctx, append([]string{"run"}, append(args, "--until-success", "--restart-delay", "0", "--output", "json")...)...).Output()
		if err != nil {
			t.Fatalf("run --until-success: %v\n%s", err, out)
		}
	}
	var sum struct {
		ExitCode int `json:"exit_code"`
		Report   struct {
			WorkflowID  string `json:"workflow_id"`
			Result      int64  `json:"result"`
			UniqueUsers int64  `json:"unique_users"`
			Rows        int64  `json:"rows"`
			Recoveries  int    `json:"recoveries"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("run output: %v\n%s", err, out)
	}
	want := int64(sz.batches * sz.pages * sz.pageSize)
	r := sum.Report
	t.Logf("workflow %s: result %d, %d rows, %d unique, %d recoveries", r.WorkflowID, r.Result, r.Rows, r.UniqueUsers, r.Recoveries)
	if sum.ExitCode != 0 || r.Result != want || r.UniqueUsers != want {
		t.Fatalf("exit %d, result %d, unique users %d; want exit 0 and %d of each", sum.ExitCode, r.Result, r.UniqueUsers, want)
	}
	// No workflow the killed processes started is left behind: every one
	// finished. (A kill can land after a workflow finished and before its
	// process exited; the next process then rightly starts a new one.)
	list, err := durlab(ctx, "workflow", "list", "--data-dir", dir, "--name", "dedup.users_workflow", "--output", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var wfs []map[string]any
	if err := json.Unmarshal(list, &wfs); err != nil || len(wfs) == 0 || wfs[0]["workflow_id"] != r.WorkflowID {
		t.Fatalf("want the newest dedup workflow to be %s; got %s (%v)", r.WorkflowID, list, err)
	}
	for _, w := range wfs {
		if w["status"] != "SUCCESS" {
			t.Errorf("workflow %v ended %v, want SUCCESS", w["workflow_id"], w["status"])
		}
	}
	assertEveryPage(t, filepath.Join(dir, "users.db"), r.WorkflowID, sz)
}

// assertEveryPage checks that every user of every page of the run is in
// the store under the workflow's ID.
func assertEveryPage(t *testing.T, path, workflowID string, sz sizes) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT DISTINCT id FROM users_ledger WHERE workflow_id = ?`, workflowID)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for page := 1; page <= sz.batches*sz.pages; page++ {
		for _, u := range fake.Page(page, sz.pageSize) {
			if !stored[u.ID] {
				t.Fatalf("page %d: user %s (%s) is missing", page, u.ID, u.Name)
			}
		}
	}
}

func durlab(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, os.Args[0], args...)
	c.Env = append(os.Environ(), asDurlab+"=1", "DBOS_SYSTEM_DATABASE_URL=", "DBOS_DATABASE_URL=", "DURLAB_STORE=", "DURLAB_EXECUTOR_ID=")
	c.Stderr = os.Stderr
	if testing.Verbose() {
		return c
	}
	c.Stderr = nil
	return c
}
