package explore

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/durlab/durlab/lab"
)

var discard = slog.New(slog.DiscardHandler)

// Result is what an exploration found. The JSON names are an interface.
type Result struct {
	Experiment string  `json:"experiment"`
	Mode       string  `json:"mode"`      // crash-points or seeds
	Guarantee  string  `json:"guarantee"` // what each trial was checked for
	Points     int     `json:"points,omitempty"`
	Trials     []Trial `json:"trials,omitempty"`
	Held       int     `json:"held"`
	Failed     int     `json:"failed"` // hung trials included
	// WithDuplicates are the trials whose run wrote duplicate rows.
	WithDuplicates int `json:"with_duplicates"`
	// CountedAway: the experiment's window-function count was checked
	// exact at every trial, so those duplicates were counted away.
	CountedAway bool `json:"counted_away"`
	// ReplayRow is the command that replays a row, with its site or seed
	// for SITE or SEED.
	ReplayRow string `json:"replay_row"`
	// Stats are the seeds' distributions, in seed mode.
	Stats  []Stat `json:"stats,omitempty"`
	WallMs int64  `json:"wall_ms"`
}

// Points enumerates the crash points of the experiment: one run in this
// process, which the runtime tells every crash point it reaches. The run
// has no random fault; a failure of probability 1 (retry-bad's after each
// write, its lesson) decides nothing, so it stays, as it does in the
// trials, whose --faults schedule keeps it too.
func (o *Options) Points(ctx context.Context) (sites []string, err error) {
	w, err := o.newWhere(ctx, "points")
	if err != nil {
		return nil, err
	}
	defer o.remove(w)
	p := o.Params
	p.Faults = Certain(p.Faults)
	rt, err := lab.Open(ctx, lab.Config{SystemDB: w.systemDB, Store: w.store, ExecutorID: "durlab-explore",
		Logger: discard, Experiments: o.Experiments, Faults: p.Faults,
		OnPoint: func(site string) { sites = append(sites, site) }})
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	if _, err := rt.Run(ctx, o.Experiment, p); err != nil {
		return nil, fmt.Errorf("the fault-free run: %w", err)
	}
	return sites, nil
}

// Certain keeps the fault knobs that decide nothing, the failures of
// probability 1: a schedule keeps them too. Crashes are off, since the
// enumeration runs in this process.
func Certain(f lab.Faults) lab.Faults {
	certain := func(p float64) float64 {
		if p >= 1 {
			return 1
		}
		return 0
	}
	f.FailProb, f.GenFailProb = certain(f.FailProb), certain(f.GenFailProb)
	f.CrashProb, f.CommitCrashProb = 0, 0
	return f
}

// CrashPoints crashes the experiment at each of the crash points in r
// (all when r is zero), one trial each.
func (o *Options) CrashPoints(ctx context.Context, sites []string, r Range) Result {
	start := time.Now()
	if r.From == 0 {
		r = Range{1, len(sites)}
	}
	r.To = min(r.To, len(sites))
	n := max(r.To-r.From+1, 0)
	res := Result{Experiment: o.Experiment.Name, Mode: "crash-points", Points: len(sites), Guarantee: o.Experiment.Guarantee.String(),
		ReplayRow: o.command("--faults", "crash@SITE")}
	res.Trials = o.pool(ctx, n, func(i int) Trial {
		k := r.From + i
		t := Trial{K: k, Site: sites[k-1], Seed: o.Params.Seed}
		fault := "crash@" + t.Site
		t = o.trial(ctx, "point-"+strconv.Itoa(k), t, []string{"--seed", strconv.FormatInt(o.Params.Seed, 10), "--faults", fault}, nil)
		// A point the fault-free run reached but the trial did not would
		// pass without testing anything.
		if t.WorkflowID != "" && !slices.Contains(strings.Split(t.Faults, ","), fault) {
			t.Held = false
			t.Why = strings.TrimPrefix(t.Why+"; the crash at "+t.Site+" never fired", "; ")
		}
		t.Replay = o.replay(fault)
		return t
	})
	res.tally(start, o.Experiment.Guarantee.LatestExact)
	return res
}

// Seeds runs one trial per seed in r, each with its random knobs and kills
// external SIGKILLs at random moments within killWithin of a process's
// start, the moments drawn from the seed.
func (o *Options) Seeds(ctx context.Context, r Range, kills int, killWithin time.Duration) Result {
	start := time.Now()
	res := Result{Experiment: o.Experiment.Name, Mode: "seeds", Guarantee: o.Experiment.Guarantee.String(),
		ReplayRow: o.command("--seed", "SEED")}
	res.Trials = o.pool(ctx, r.To-r.From+1, func(i int) Trial {
		seed := int64(r.From + i)
		rng := rand.New(rand.NewPCG(uint64(seed), 0x6b696c6c))
		var at []time.Duration
		for range kills {
			at = append(at, time.Duration(rng.Int64N(int64(killWithin))))
		}
		t := o.trial(ctx, "seed-"+strconv.FormatInt(seed, 10), Trial{Seed: seed}, []string{"--seed", strconv.FormatInt(seed, 10)}, at)
		t.Replay = o.replay(t.Faults)
		return t
	})
	res.tally(start, o.Experiment.Guarantee.LatestExact)
	res.Stats = stats(res.Trials)
	return res
}

func (res *Result) tally(start time.Time, latestExact bool) {
	for _, t := range res.Trials {
		if t.Held {
			res.Held++
		} else if t.Why != "stopped" {
			res.Failed++
		}
		if t.Duplicates > 0 {
			res.WithDuplicates++
		}
	}
	res.CountedAway = latestExact && res.Failed == 0 && res.WithDuplicates > 0
	res.WallMs = time.Since(start).Milliseconds()
}

// Stat is one distribution over the trials.
type Stat struct {
	Name   string    `json:"name"`
	Min    float64   `json:"min"`
	Median float64   `json:"median"`
	P90    float64   `json:"p90"`
	Max    float64   `json:"max"`
	Values []float64 `json:"-"`
}

func stats(trials []Trial) []Stat {
	pick := []struct {
		name string
		of   func(t Trial) float64
	}{
		{"duplicates", func(t Trial) float64 { return float64(t.Duplicates) }},
		{"crashes", func(t Trial) float64 { return float64(t.Crashes) }},
		{"recoveries", func(t Trial) float64 { return float64(t.Recoveries) }},
		{"step attempts", func(t Trial) float64 { return float64(t.StepAttempts) }},
		{"processes", func(t Trial) float64 { return float64(t.Processes) }},
		{"wall ms", func(t Trial) float64 { return float64(t.WallMs) }},
	}
	var out []Stat
	for _, p := range pick {
		var v []float64
		for _, t := range trials {
			if t.WorkflowID != "" {
				v = append(v, p.of(t))
			}
		}
		if len(v) == 0 {
			continue
		}
		slices.Sort(v)
		q := func(f float64) float64 { return v[min(len(v)-1, int(f*float64(len(v)-1)+0.5))] }
		out = append(out, Stat{Name: p.name, Min: v[0], Median: q(0.5), P90: q(0.9), Max: v[len(v)-1], Values: v})
	}
	return out
}
