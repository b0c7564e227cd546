package lab

// Faults by schedule. Every boundary durlab's code reaches in a run is a
// site with a name (see Site); a fault schedule (--faults SPEC) lists the
// faults to inject at sites, and replaces the random knobs for that run
// (a knob of probability 1 stays: it decides nothing, and retry-bad's
// failure after every write is its lesson):
//
//	fail@insert_batch_5#2            fail the 2nd attempt of step insert_batch_5
//	crash@insert_batch_3:after-commit crash right after its write committed
//	crash@insert_batch_3:after-page-21 ...after page 21 of it committed
//	crash@generate_page_7:start      crash as the step's 1st attempt starts (:end, as it ends)
//	crash@after-batch-8              the main workflow's crash point after batch 8
//	crash@before-page-2              recover's and split-steps' point before page 2
//	crash@before-batch-4             profile's, as batch 4's workflow starts
//	crash@start-batch-3              as the main workflow starts batch 3 (return-batch-3: once it returned)
//	crash@point:37                   at the 37th crash point the run reaches
//	.../2                            in the workflow's 2nd execution (default: its 1st)
//
// Each fault fires once per run, the first time its site is reached: the
// ledger records the faults that fired, so a recovered process does not
// fire them again. A report carries the schedule that fired (for seeded
// random runs too), in the same syntax, so that pasting it back replays the
// run.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Site names a point of a run where a fault can be injected.
type Site struct {
	// Name is a step's name, or a named point of the run (after-batch-8,
	// before-page-1, start-batch-3, return-batch-3).
	Name string
	// Attempt is the step's attempt (0 for a named point).
	Attempt int
	// Moment is where in the attempt: start, end, after-commit,
	// after-page-P; "" for a failure, which has its own place in the step.
	Moment string
}

// Named is a named point of a run.
func Named(name string) Site { return Site{Name: name} }

// In is moment of attempt n of step.
func In(step string, n int, moment string) Site { return Site{Name: step, Attempt: n, Moment: moment} }

// String is the site in the schedule's syntax: an attempt is written when
// it is not the first, or for a failure.
func (s Site) String() string {
	var sb strings.Builder
	sb.WriteString(s.Name)
	if s.Attempt > 1 || s.Attempt == 1 && s.Moment == "" {
		sb.WriteString("#" + strconv.Itoa(s.Attempt))
	}
	if s.Moment != "" {
		sb.WriteString(":" + s.Moment)
	}
	return sb.String()
}

// afterCommit tells whether the site is right after a write committed.
func (s Site) afterCommit() bool { return strings.HasPrefix(s.Moment, "after-") }

// Fault is one entry of a schedule.
type Fault struct {
	Kind string // fail or crash
	Site Site
	// Point, when positive, is the ordinal of the crash point (crash@point:K).
	Point int
	// Execution is the execution of the site's workflow it fires in.
	Execution int
}

// String is the fault in the schedule's syntax.
func (f Fault) String() string {
	s := f.Kind + "@"
	if f.Point > 0 {
		s += "point:" + strconv.Itoa(f.Point)
	} else {
		s += f.Site.String()
	}
	if f.Execution > 1 {
		s += "/" + strconv.Itoa(f.Execution)
	}
	return s
}

// Schedule is a parsed --faults SPEC.
type Schedule struct {
	Faults []Fault
}

// String is the schedule in its syntax: the faults joined by commas.
func (s *Schedule) String() string {
	var parts []string
	for _, f := range s.Faults {
		parts = append(parts, f.String())
	}
	return strings.Join(parts, ",")
}

// ErrBadFaults: a --faults SPEC that does not parse.
var ErrBadFaults = fmt.Errorf("bad fault schedule")

var (
	faultRe = regexp.MustCompile(`^(fail|crash)@(.+?)(?:/(\d+))?$`)
	siteRe  = regexp.MustCompile(`^([a-z][a-z0-9_-]*?)(?:#(\d+))?(?::(start|end|after-commit|after-page-\d+))?$`)
	pointRe = regexp.MustCompile(`^point:(\d+)$`)
	namedRe = regexp.MustCompile(`^(after-batch|before-batch|before-page|start-batch|return-batch)-\d+$`)
)

// ParseFaults reads a --faults SPEC; "none" is a schedule of no fault.
func ParseFaults(spec string) (*Schedule, error) {
	s := &Schedule{}
	spec = strings.TrimSpace(spec)
	if spec == "none" {
		return s, nil
	}
	if spec == "" {
		return nil, fmt.Errorf("%w: it is empty (give faults, or none)", ErrBadFaults)
	}
	for _, raw := range strings.Split(spec, ",") {
		raw = strings.TrimSpace(raw)
		m := faultRe.FindStringSubmatch(raw)
		if m == nil {
			return nil, fmt.Errorf("%w: %q: write fail@STEP#ATTEMPT, crash@SITE or crash@point:K", ErrBadFaults, raw)
		}
		f := Fault{Kind: m[1], Execution: 1}
		if m[3] != "" {
			f.Execution, _ = strconv.Atoi(m[3])
			if f.Execution < 1 {
				return nil, fmt.Errorf("%w: %q: executions are numbered from 1", ErrBadFaults, raw)
			}
		}
		if pm := pointRe.FindStringSubmatch(m[2]); pm != nil {
			f.Point, _ = strconv.Atoi(pm[1])
			if f.Kind != "crash" || f.Point < 1 {
				return nil, fmt.Errorf("%w: %q: a point is a crash, numbered from 1", ErrBadFaults, raw)
			}
			s.Faults = append(s.Faults, f)
			continue
		}
		sm := siteRe.FindStringSubmatch(m[2])
		if sm == nil {
			return nil, fmt.Errorf("%w: %q: %q is not a site (STEP, STEP#ATTEMPT, STEP:MOMENT with MOMENT start, end, after-commit or after-page-P, or a point such as after-batch-3)", ErrBadFaults, raw, m[2])
		}
		f.Site = Site{Name: sm[1], Moment: sm[3]}
		if sm[2] != "" {
			f.Site.Attempt, _ = strconv.Atoi(sm[2])
			if f.Site.Attempt < 1 {
				return nil, fmt.Errorf("%w: %q: attempts are numbered from 1", ErrBadFaults, raw)
			}
		}
		named := namedRe.MatchString(f.Site.Name)
		switch {
		case named && (sm[2] != "" || f.Site.Moment != ""):
			return nil, fmt.Errorf("%w: %q: %s is a point, with no attempt or moment", ErrBadFaults, raw, f.Site.Name)
		case f.Kind == "fail" && (named || f.Site.Moment != ""):
			return nil, fmt.Errorf("%w: %q: a failure is of a step's attempt: fail@STEP#ATTEMPT", ErrBadFaults, raw)
		case f.Kind == "crash" && !named && f.Site.Moment == "":
			return nil, fmt.Errorf("%w: %q: say where in the step: :start, :end, :after-commit or :after-page-P", ErrBadFaults, raw)
		}
		if !named && f.Site.Attempt == 0 {
			f.Site.Attempt = 1
		}
		s.Faults = append(s.Faults, f)
	}
	return s, nil
}

// scheduledBy marks the ledger record of a fault a schedule fired: the
// entry that fired follows it, so that it fires once per run.
const scheduledBy = "scheduled: "

// firedFaults reads the schedule entries this run already fired.
func (x *Execution) firedFaults() map[string]bool {
	fired := map[string]bool{}
	details, err := x.rt.store.FaultDetails(x.ctx, x.root)
	if err != nil {
		// Unknown: fire nothing rather than fire twice.
		fmt.Fprintf(x.rt.notices, "durlab: reading the faults that fired: %v\n", err)
		return nil
	}
	for _, d := range details {
		if entry, ok := strings.CutPrefix(d, scheduledBy); ok {
			fired[entry] = true
		}
	}
	return fired
}

// scheduled finds the schedule's entry that fires a fault of kind at site,
// reached as crash point number n of the run (0: not a crash point), in
// execution x; it marks the entry fired and returns what decided it.
func (x *Execution) scheduled(kind string, site Site, n int) (string, bool) {
	rt := x.rt
	rt.scheduleMu.Lock()
	defer rt.scheduleMu.Unlock()
	if x.fired == nil {
		return "", false // unknown (see firedFaults): fire nothing rather than twice
	}
	for _, f := range rt.schedule.Faults {
		match := f.Kind == kind && f.Execution == x.number &&
			(f.Point > 0 && f.Point == n || f.Point == 0 && f.Site == site)
		if !match || x.fired[f.String()] {
			continue
		}
		x.fired[f.String()] = true
		return scheduledBy + f.String(), true
	}
	return "", false
}

// pointsWatched: a schedule or a listener (explore) looks at the crash
// points. A caller on a hot path asks before it names its point.
func (x *Execution) pointsWatched() bool { return x.rt.schedule != nil || x.rt.onPoint != nil }

// point is a crash point of the run: every boundary durlab's code reaches.
// With no schedule and nothing listening it costs nothing.
func (x *Execution) point(site Site) {
	rt := x.rt
	if !x.pointsWatched() {
		return
	}
	rt.scheduleMu.Lock()
	rt.points[x.root]++
	n := rt.points[x.root]
	rt.scheduleMu.Unlock()
	if rt.onPoint != nil {
		rt.onPoint(site.String())
	}
	if rt.schedule == nil {
		return
	}
	if decided, ok := x.scheduled("crash", site, n); ok {
		kind := FaultCrash
		if site.afterCommit() {
			kind = FaultCommitCrash
		}
		x.crash(kind, site.String(), decided)
	}
}

// CrashPoint is one of the experiment's own crash points, at site: it
// crashes with probability p, decided by the coordinates (the random
// knobs), or as the schedule says.
func (x *Execution) CrashPoint(site Site, p float64, coords ...any) {
	x.crashPoint(FaultCrash, site, p, coords)
}

// CommitCrashPoint is CrashPoint right after a write committed and before
// the workflow moves on: the report counts these crashes apart.
func (x *Execution) CommitCrashPoint(site Site, p float64, coords ...any) {
	x.crashPoint(FaultCommitCrash, site, p, coords)
}

func (x *Execution) crashPoint(kind string, site Site, p float64, coords []any) {
	x.point(site)
	if (x.rt.schedule == nil || p >= 1) && x.Decide(p, coords...) {
		x.crash(kind, site.String(), x.decidedBy(p))
	}
}
