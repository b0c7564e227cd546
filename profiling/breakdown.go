package profiling

import (
	"fmt"
	"math"
	"time"
)

// Breakdown is where the time of a profile run went. In JSON it is the
// report's "profile" object, whose field names are an interface.
type Breakdown struct {
	Mode        string  `json:"mode"` // durable, plain or compare
	Users       int64   `json:"users"`
	WallMs      float64 `json:"wall_ms"`
	StartupMs   float64 `json:"startup_ms"` // DBOS start-up, not in wall_ms
	Workflows   int     `json:"workflows"`
	Steps       int     `json:"steps"`
	Checkpoints int     `json:"checkpoints"`
	BusinessMs  float64 `json:"business_logic_ms"`
	StoreMs     float64 `json:"store_writes_ms"`
	// LedgerMs is durlab's bookkeeping: the attempt ledger's own commits
	// (its events in the pages' transactions are in StoreMs) and the
	// status reads before each write (lab/tree.go).
	LedgerMs float64 `json:"ledger_ms"`
	RestMs   float64 `json:"rest_ms"`
	// PlainWallMs and Ratio are set when a plain run was measured.
	PlainWallMs *float64 `json:"plain_wall_ms"`
	Ratio       *float64 `json:"ratio"`
	// PerCheckpointMs is the overhead of one checkpoint, computed as
	// PerCheckpointBasis says; null with no checkpoints.
	PerCheckpointMs    *float64      `json:"overhead_per_checkpoint_ms"`
	PerCheckpointBasis string        `json:"overhead_basis"`
	CPUProfile         string        `json:"cpu_profile"`
	WallProfile        string        `json:"wall_profile"`
	CPUSampledMs       float64       `json:"cpu_sampled_ms"`
	TopPackages        []PackageTime `json:"top_packages"`
}

// PackageTime is one of the top packages by CPU.
type PackageTime struct {
	Package string  `json:"package"`
	CPUMs   float64 `json:"cpu_ms"`
	Percent float64 `json:"percent"`
}

// Ms is a duration in milliseconds, to the microsecond.
func Ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Fill computes the time split and the overhead per checkpoint from the
// run's wall time and its time in fake generation, in store writes and in
// the ledger's own commits.
func (bd *Breakdown) Fill(wall, generate, storeWrites, ledger time.Duration) {
	bd.WallMs = Ms(wall)
	bd.BusinessMs, bd.StoreMs, bd.LedgerMs = Ms(generate), Ms(storeWrites), Ms(ledger)
	bd.RestMs = Ms(wall - generate - storeWrites - ledger)
	if bd.PlainWallMs != nil && bd.Mode == "compare" && *bd.PlainWallMs > 0 {
		r := math.Round(bd.WallMs / *bd.PlainWallMs * 100) / 100
		bd.Ratio = &r
	}
	if bd.Checkpoints == 0 {
		return
	}
	var per float64
	if bd.Ratio != nil {
		bd.PerCheckpointBasis = "(durable - plain) / checkpoints"
		per = (bd.WallMs - *bd.PlainWallMs) / float64(bd.Checkpoints)
	} else {
		bd.PerCheckpointBasis = "rest / checkpoints"
		per = bd.RestMs / float64(bd.Checkpoints)
	}
	per = math.Round(per*1000) / 1000
	bd.PerCheckpointMs = &per
}

// ReadCPU fills the top packages from the CPU profile, if one was written.
func (bd *Breakdown) ReadCPU(top int) error {
	if bd.CPUProfile == "" {
		return nil
	}
	cpu, err := TopPackagesFile(bd.CPUProfile, top)
	if err != nil {
		return err
	}
	bd.CPUSampledMs = Ms(cpu.Total)
	bd.TopPackages = []PackageTime{}
	for _, p := range cpu.Packages {
		bd.TopPackages = append(bd.TopPackages, PackageTime{p.Package, Ms(p.CPU), math.Round(p.Share*1000) / 10})
	}
	return nil
}

// Lesson is one sentence on the price of durability this run measured.
func (bd *Breakdown) Lesson() string {
	switch {
	case bd.Mode == "plain":
		return "no durability: the same pages and inserts with no workflow, step or checkpoint; a crash would lose the run"
	case bd.Ratio != nil && bd.PerCheckpointMs != nil:
		return fmt.Sprintf("durability took %.2fx the time of the identical work with no DBOS: %.3f ms for each of %d checkpoints",
			*bd.Ratio, *bd.PerCheckpointMs, bd.Checkpoints)
	case bd.WallMs > 0:
		return fmt.Sprintf("%d checkpoints made %d users durable; %.0f%% of the time went to DBOS orchestration and checkpoints (--compare measures the price against no durability)",
			bd.Checkpoints, bd.Users, bd.RestMs/bd.WallMs*100)
	}
	return ""
}
