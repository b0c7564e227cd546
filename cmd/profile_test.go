package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/durlab/durlab/profiling"
)

// parseProfile parses args with the profile command, without running it.
func parseProfile(t *testing.T, args ...string) (*profileOptions, error) {
	t.Helper()
	var got *profileOptions
	g := &globalOptions{io: IOStreams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}}
	c := newProfileCmd(g, func(o *profileOptions) error { got = o; return nil })
	c.SetArgs(args)
	c.SetOut(&bytes.Buffer{})
	c.SetErr(&bytes.Buffer{})
	err := c.Execute()
	return got, err
}

func TestProfileFlags(t *testing.T) {
	o, err := parseProfile(t)
	if err != nil {
		t.Fatal(err)
	}
	if o.cpuOut != "main.prof" || o.wallOut != "main.wall.prof" || o.noDurability || o.compare {
		t.Errorf("defaults: out %q wall-out %q no-durability %v compare %v", o.cpuOut, o.wallOut, o.noDurability, o.compare)
	}
	if in := o.params.Input; in.Batches != 10 || in.Pages != 10 || in.PageSize != 10 {
		t.Errorf("default sizes %dx%dx%d, want 10x10x10", in.Batches, in.Pages, in.PageSize)
	}
	o, err = parseProfile(t, "--out", "x.prof", "--wall-out", "", "--compare", "--batches", "3", "--seed", "7")
	if err != nil {
		t.Fatal(err)
	}
	if o.cpuOut != "x.prof" || o.wallOut != "" || !o.compare || o.params.Batches != 3 || o.params.Seed != 7 {
		t.Errorf("parsed %+v", o)
	}
}

func TestProfileUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-durability", "--compare"},
		{"--no-durability", "--queue", "q"},
		{"--top", "-1"},
		{"--out", "same.prof", "--wall-out", "same.prof"},
		{"--batches", "0"},
	} {
		_, err := parseProfile(t, args...)
		if code := exitCode(err, &bytes.Buffer{}); code != exitUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, code, err, exitUsage)
		}
	}
}

func TestProfileReplacesTheGenericExperimentCommand(t *testing.T) {
	for _, c := range experimentCommands(&globalOptions{}) {
		if c.Name() == "profile" {
			t.Fatal("experimentCommands still builds profile")
		}
	}
	root := newRootCmd(IOStreams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
	c, _, err := root.Find([]string{"profile"})
	if err != nil || c.Flags().Lookup("out") == nil || c.Flags().Lookup("page-size") == nil {
		t.Fatalf("durlab profile: %v, flags %v", err, c.Flags())
	}
}

// runProfileInProcess runs durlab profile with buffers, against embedded
// SQLite in a temporary folder.
func runProfileInProcess(t *testing.T, terminal bool, args ...string) (int, string, string) {
	t.Helper()
	for _, k := range []string{"DBOS_SYSTEM_DATABASE_URL", "DBOS_DATABASE_URL", "DURLAB_STORE", "DURLAB_DATA_DIR", "DURLAB_EXECUTOR_ID"} {
		t.Setenv(k, "")
	}
	var out, errb bytes.Buffer
	args = append([]string{"profile", "--data-dir", filepath.Join(t.TempDir(), "data")}, args...)
	code := Run(context.Background(), args, IOStreams{Out: &out, Err: &errb, IsTerminal: terminal})
	return code, out.String(), errb.String()
}

func TestProfileWritesReadableProfilesAndTheBreakdown(t *testing.T) {
	dir := t.TempDir()
	cpu, wall := filepath.Join(dir, "main.prof"), filepath.Join(dir, "main.wall.prof")
	code, stdout, stderr := runProfileInProcess(t, false, "--out", cpu, "--wall-out", wall, "--seed", "1")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"result      1000: as expected", "breakdown", "checkpoints     132", "business logic",
		"store writes", "per checkpoint", "top packages", "go tool pprof -http=: " + cpu} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if _, err := profiling.TopPackagesFile(cpu, 5); err != nil {
		t.Errorf("CPU profile: %v", err)
	}
	for _, path := range []string{cpu, wall} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := profile.Parse(f); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		f.Close()
	}
	if testing.Short() {
		return
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Log("go is not on PATH: go tool pprof not tried")
		return
	}
	out, err := exec.Command(goTool, "tool", "pprof", "-top", cpu).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Type: cpu") {
		t.Errorf("go tool pprof -top %s: %v\n%s", cpu, err, out)
	}
}

func TestProfileCompareInJSONHasTheProfileObjectAndNoProgressBar(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runProfileInProcess(t, true, "--compare", "--output", "json",
		"--batches", "2", "--pages", "3", "--page-size", "5", "--out", filepath.Join(dir, "c.prof"), "--wall-out", "")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep struct {
		Result     int64 `json:"result"`
		AsExpected bool  `json:"as_expected"`
		Rows       int64 `json:"rows"`
		Profile    struct {
			Mode        string   `json:"mode"`
			Workflows   int      `json:"workflows"`
			Steps       int      `json:"steps"`
			Checkpoints int      `json:"checkpoints"`
			PlainWallMs *float64 `json:"plain_wall_ms"`
			Ratio       *float64 `json:"ratio"`
			PerCkpt     *float64 `json:"overhead_per_checkpoint_ms"`
			Basis       string   `json:"overhead_basis"`
			TopPackages []any    `json:"top_packages"`
			WallProfile string   `json:"wall_profile"`
		} `json:"profile"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	p := rep.Profile
	if rep.Result != 30 || !rep.AsExpected || rep.Rows != 30 {
		t.Errorf("result %d rows %d as_expected %v, want 30", rep.Result, rep.Rows, rep.AsExpected)
	}
	// 2 children x 3 generate steps + count_users; 2 child records x 2
	// (started, awaited); one status record per workflow.
	if p.Mode != "compare" || p.Workflows != 3 || p.Steps != 7 || p.Checkpoints != 7+4+3 {
		t.Errorf("profile %+v, want compare, 3 workflows, 7 steps, 14 checkpoints", p)
	}
	if p.PlainWallMs == nil || p.Ratio == nil || p.PerCkpt == nil || p.Basis != "(durable - plain) / checkpoints" {
		t.Errorf("compare fields missing: %+v", p)
	}
	if p.TopPackages == nil || p.WallProfile != "" {
		t.Errorf("top packages %v, wall profile %q", p.TopPackages, p.WallProfile)
	}
	if strings.Contains(stderr, "batches") {
		t.Errorf("a progress bar with --output json:\n%s", stderr)
	}
}

func TestProfileNoDurabilityShowsProgressOnATerminal(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runProfileInProcess(t, true, "--no-durability",
		"--batches", "3", "--pages", "2", "--page-size", "5", "--out", filepath.Join(dir, "p.prof"), "--wall-out", "")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"result      30: as expected", "plain run, 30 users", "none: no workflow, step or checkpoint"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "checkpoints") {
		t.Errorf("a plain run reports checkpoints:\n%s", stdout)
	}
	if !strings.Contains(stderr, "batches") {
		t.Errorf("no progress bar on a terminal:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "p.prof")); err != nil {
		t.Error(err)
	}
}

func TestProfileRejectsAnUnwritableOutput(t *testing.T) {
	code, _, stderr := runProfileInProcess(t, false, "--out", filepath.Join(t.TempDir(), "missing", "main.prof"))
	if code != exitUsage || !strings.Contains(stderr, "cannot write the profile") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
