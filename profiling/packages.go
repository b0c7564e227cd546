package profiling

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// PackageCPU is the CPU time sampled in one package's own code.
type PackageCPU struct {
	Package string
	CPU     time.Duration
	// Share of all the profile's CPU samples, from 0 to 1.
	Share float64
}

// CPUProfile is what TopPackages reads from a CPU profile.
type CPUProfile struct {
	Total    time.Duration // all CPU samples
	Samples  int64         // number of samples
	Packages []PackageCPU  // by CPU, largest first
}

// TopPackagesFile reads the CPU profile at path; see TopPackages.
func TopPackagesFile(path string, n int) (CPUProfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return CPUProfile{}, err
	}
	defer f.Close()
	return TopPackages(f, n)
}

// TopPackages reads a CPU profile in pprof format and returns its n largest
// packages by flat CPU time: each sample counts for the package of its leaf
// function, the one that was on the CPU (the innermost inlined function of
// the sample's first location). Time in C code called through cgo is
// counted for the Go package that called it, marked " (cgo)".
func TopPackages(r io.Reader, n int) (CPUProfile, error) {
	p, err := profile.Parse(r)
	if err != nil {
		return CPUProfile{}, fmt.Errorf("reading the CPU profile: %w", err)
	}
	vi, ci := -1, -1
	for i, st := range p.SampleType {
		switch st.Type {
		case "cpu":
			vi = i
		case "samples":
			ci = i
		}
	}
	if vi < 0 {
		return CPUProfile{}, fmt.Errorf("not a CPU profile (sample types %v)", p.SampleType)
	}
	unit := time.Nanosecond
	if p.SampleType[vi].Unit == "microseconds" {
		unit = time.Microsecond
	}
	var out CPUProfile
	byPkg := map[string]time.Duration{}
	for _, s := range p.Sample {
		d := time.Duration(s.Value[vi]) * unit
		out.Total += d
		if ci >= 0 {
			out.Samples += s.Value[ci]
		}
		byPkg[leafPackage(s)] += d
	}
	for pkg, d := range byPkg {
		pc := PackageCPU{Package: pkg, CPU: d}
		if out.Total > 0 {
			pc.Share = float64(d) / float64(out.Total)
		}
		out.Packages = append(out.Packages, pc)
	}
	slices.SortFunc(out.Packages, func(a, b PackageCPU) int {
		return cmp.Or(cmp.Compare(b.CPU, a.CPU), strings.Compare(a.Package, b.Package))
	})
	if n >= 0 && len(out.Packages) > n {
		out.Packages = out.Packages[:n]
	}
	return out, nil
}

// cgoTrampolines are the runtime functions a sample ends in while C code
// runs: the time belongs to the package that made the cgo call.
var cgoTrampolines = map[string]bool{
	"runtime.cgocall":               true,
	"runtime.asmcgocall":            true,
	"runtime.asmcgocall_landingpad": true,
	"runtime._ExternalCode":         true,
}

// leafPackage is the package of the function a sample was taken in. C
// frames (unsymbolized, or from a file that is not Go) and the runtime's
// cgo trampolines are skipped, and the time goes to the Go package that
// called into C.
func leafPackage(s *profile.Sample) string {
	cgo := false
	for _, loc := range s.Location {
		if len(loc.Line) == 0 {
			cgo = true // an address the Go runtime could not name: C code
			continue
		}
		// Line[0] is the innermost function inlined at this location.
		for _, line := range loc.Line {
			fn := line.Function
			if fn == nil || !isGo(fn) || cgoTrampolines[fn.Name] {
				cgo = true
				continue
			}
			if cgo {
				return PackageOf(fn.Name) + " (cgo)"
			}
			return PackageOf(fn.Name)
		}
	}
	if cgo {
		return "C code (cgo)"
	}
	return "(unknown)"
}

// isGo tells Go functions (from .go or Go assembly files) from C ones.
func isGo(fn *profile.Function) bool {
	return strings.HasSuffix(fn.Filename, ".go") || strings.HasSuffix(fn.Filename, ".s")
}

// PackageOf returns the import path of a Go function's symbol name:
// "github.com/a/b.(*T).M.func1" is in "github.com/a/b". A name with no
// package (a C function linked through cgo) is "C code (cgo)".
func PackageOf(funcName string) string {
	slash := strings.LastIndexByte(funcName, '/')
	dot := strings.IndexByte(funcName[slash+1:], '.')
	if dot < 0 {
		return "C code (cgo)"
	}
	// The linker escapes dots in the last path element ("yaml%2ev3").
	return strings.ReplaceAll(funcName[:slash+1+dot], "%2e", ".")
}
