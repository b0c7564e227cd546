// Package profiling records the profiles of a durlab run and reads them
// back: a CPU profile (runtime/pprof) and a wall-clock profile (fgprof),
// both in pprof format, and the top packages by CPU read from a written
// CPU profile with github.com/google/pprof/profile.
//
// A CPU profile sees only the time goroutines spend on a CPU. Durable
// execution spends most of its time waiting on its databases, so the
// wall-clock profile, which samples every goroutine whether it runs or
// waits, is the one that shows where a run's time went.
package profiling

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/felixge/fgprof"
)

// Recording is a CPU profile and a wall-clock profile being written.
type Recording struct {
	cpu, wall  *os.File
	cpuRunning bool
	stopWall   func() error
}

// Create creates the profile files, so that a bad path fails before any
// work is done. An empty path leaves that profile out.
func Create(cpuPath, wallPath string) (*Recording, error) {
	r := &Recording{}
	var err error
	if cpuPath != "" {
		if r.cpu, err = os.Create(cpuPath); err != nil {
			return nil, err
		}
	}
	if wallPath != "" {
		if r.wall, err = os.Create(wallPath); err != nil {
			r.close()
			return nil, err
		}
	}
	return r, nil
}

// Start starts both profiles. Only one CPU profile can run in a process at
// a time.
func (r *Recording) Start() error {
	if r.cpu != nil {
		if err := pprof.StartCPUProfile(r.cpu); err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
		r.cpuRunning = true
	}
	if r.wall != nil {
		r.stopWall = fgprof.Start(r.wall, fgprof.FormatPprof)
	}
	return nil
}

// Stop stops the profiles, writes them out and closes the files. It is safe
// to call more than once, and without Start (the files are then empty).
func (r *Recording) Stop() error {
	var errs []error
	if r.cpuRunning {
		pprof.StopCPUProfile()
		r.cpuRunning = false
	}
	if r.stopWall != nil {
		errs = append(errs, r.stopWall())
		r.stopWall = nil
	}
	errs = append(errs, r.close())
	return errors.Join(errs...)
}

func (r *Recording) close() error {
	var errs []error
	for _, f := range []**os.File{&r.cpu, &r.wall} {
		if *f != nil {
			errs = append(errs, (*f).Close())
			*f = nil
		}
	}
	return errors.Join(errs...)
}
