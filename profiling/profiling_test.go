package profiling

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

func TestPackageOf(t *testing.T) {
	for name, want := range map[string]string{
		"runtime.mallocgc": "runtime",
		"github.com/durlab/durlab/lab.(*Runtime).flush":                 "github.com/durlab/durlab/lab",
		"github.com/mattn/go-sqlite3._Cfunc__sqlite3_step_row_internal": "github.com/mattn/go-sqlite3",
		"modernc.org/sqlite/lib._sqlite3VdbeExec":                       "modernc.org/sqlite/lib",
		"encoding/json.appendString[go.shape.string]":                   "encoding/json",
		"gopkg.in/yaml%2ev3.(*parser).parse":                            "gopkg.in/yaml.v3",
		"sqlite3BtreeInsert":                                            "C code (cgo)",
	} {
		if got := PackageOf(name); got != want {
			t.Errorf("PackageOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// cpuProfile builds a CPU profile whose samples have the given stacks
// (leaf first) and values in nanoseconds.
func cpuProfile(stacks [][]string, values []int64) *profile.Profile {
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10_000_000,
	}
	funcs := map[string]*profile.Function{}
	for i, stack := range stacks {
		var locs []*profile.Location
		for _, name := range stack {
			fn := funcs[name]
			if fn == nil {
				file := "x.go"
				if PackageOf(name) == "C code (cgo)" {
					file = "sqlite3-binding.c"
				}
				fn = &profile.Function{ID: uint64(len(funcs) + 1), Name: name, Filename: file}
				funcs[name] = fn
				p.Function = append(p.Function, fn)
			}
			loc := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: fn}}}
			p.Location = append(p.Location, loc)
			locs = append(locs, loc)
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{values[i] / 10_000_000, values[i]}})
	}
	return p
}

func TestTopPackagesAggregatesFlatSamplesByLeafPackage(t *testing.T) {
	p := cpuProfile([][]string{
		{"runtime.mallocgc", "github.com/durlab/durlab/fake.Page"},
		{"runtime.memmove", "github.com/durlab/durlab/fake.Page"},
		{"github.com/durlab/durlab/fake.Page", "main.main"},
		// a sample in C code: the runtime's cgo trampoline is the leaf
		{"runtime.cgocall", "github.com/mattn/go-sqlite3._Cfunc_sqlite3_step", "database/sql.(*DB).Exec"},
		// a sample in a symbolized C function
		{"sqlite3BtreeInsert", "runtime.asmcgocall", "github.com/mattn/go-sqlite3._Cfunc_sqlite3_step"},
	}, []int64{30e6, 20e6, 10e6, 30e6, 10e6})
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := TopPackages(&buf, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != 100*time.Millisecond || got.Samples != 10 {
		t.Fatalf("total %v in %d samples, want 100ms in 10", got.Total, got.Samples)
	}
	want := []PackageCPU{
		{"runtime", 50 * time.Millisecond, 0.5},
		{"github.com/mattn/go-sqlite3 (cgo)", 40 * time.Millisecond, 0.4},
	}
	if len(got.Packages) != len(want) {
		t.Fatalf("packages %+v, want %+v", got.Packages, want)
	}
	for i := range want {
		if got.Packages[i] != want[i] {
			t.Errorf("package %d = %+v, want %+v", i, got.Packages[i], want[i])
		}
	}
}

func TestTopPackagesRejectsAProfileWithoutCPU(t *testing.T) {
	p := cpuProfile(nil, nil)
	p.SampleType = []*profile.ValueType{{Type: "wall", Unit: "nanoseconds"}}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := TopPackages(&buf, 5); err == nil {
		t.Fatal("a wall-clock profile was read as a CPU profile")
	}
	if _, err := TopPackages(bytes.NewReader([]byte("not a profile")), 5); err == nil {
		t.Fatal("garbage was read as a profile")
	}
}

func TestRecordingWritesBothProfilesInPprofFormat(t *testing.T) {
	dir := t.TempDir()
	cpu, wall := filepath.Join(dir, "main.prof"), filepath.Join(dir, "main.wall.prof")
	rec, err := Create(cpu, wall)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(150 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		_ = bytes.Repeat([]byte{byte(n)}, 1024)
	}
	if err := rec.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := rec.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := TopPackagesFile(cpu, 5); err != nil {
		t.Fatalf("CPU profile: %v", err)
	}
	f, err := os.Open(wall)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("wall-clock profile: %v", err)
	}
	if len(p.SampleType) == 0 || p.SampleType[len(p.SampleType)-1].Type != "time" {
		t.Errorf("wall-clock sample types %v", p.SampleType)
	}
}

func TestCreateFailsOnAnUnwritablePath(t *testing.T) {
	if _, err := Create(filepath.Join(t.TempDir(), "missing", "main.prof"), ""); err == nil {
		t.Fatal("Create succeeded in a missing folder")
	}
}
