package trace

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostile would run script if the page let it out of its escaping.
const hostile = `</script><img src=x onerror=alert(1)>`

// syntheticTrace is a run of three executions of the main workflow: the
// first crashed by an injected crash after its child retried an insert,
// the second was killed from outside with no end recorded, the third
// finished. Workflow data carries hostile strings.
func syntheticTrace() *Trace {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	ok := func(name string, id int, from, to float64) *Step {
		return &Step{StepID: id, Name: name, Attempts: []*Attempt{{N: 1, Start: at(from), End: at(to), Outcome: "ok"}}}
	}
	child := &Workflow{ID: "wf-1-0", Name: "dedup.users_batch_workflow", Status: "SUCCESS", Batch: 1,
		Executions: []*Execution{{ID: "c1", Number: 1, Host: "vm", PID: 100, Start: at(10), End: at(300), Outcome: "ok",
			Steps: []*Step{ok("generate_page_1", 0, 11, 12), {StepID: 1, Name: "insert_batch_1", Attempts: []*Attempt{
				{N: 1, Start: at(20), End: at(25), Outcome: "injected", Error: "injected failure " + hostile, Rows: 100,
					Faults: []*Fault{{Kind: "fail", Site: "insert_batch_1#1", DecidedBy: "seed 8, probability 0.4", At: at(25)}}},
				{N: 2, Start: at(125), End: at(130), Outcome: "injected", Rows: 100, Duplicates: 100, Cause: "retry",
					Faults: []*Fault{{Kind: "fail", Site: "insert_batch_1#2", DecidedBy: hostile, At: at(130)}}},
				{N: 3, Start: at(230), End: at(240), Outcome: "ok", Rows: 100, Duplicates: 100, Cause: "retry"},
			}}}}},
	}
	root := &Workflow{ID: "wf-1", Name: "dedup.users_workflow " + hostile, Status: "SUCCESS", Executions: []*Execution{
		{ID: "x1", Number: 1, Host: "vm", PID: 100, ExecutorID: "durlab-dedup", Start: at(0), End: at(400), Outcome: "crashed",
			Site: "after batch 1", Steps: []*Step{ok("batch_1_done", 2, 301, 302)}, Children: []*Workflow{child},
			Faults: []*Fault{{Kind: "crash", Site: "after batch 1", DecidedBy: "seed 8, probability 0.1", At: at(400)}}},
		{ID: "x2", Number: 2, Host: "vm", PID: 200, Start: at(450), Outcome: "killed", Derived: true,
			Replayed: []Replay{{StepID: 2, Name: "batch_1_done"}},
			Steps:    []*Step{{StepID: 3, Name: "count_users", Attempts: []*Attempt{{N: 1, Start: at(460), Outcome: "died", Derived: true}}}}},
		{ID: "x3", Number: 3, Host: "vm", PID: 300, Start: at(700), End: at(720), Outcome: "ok",
			Replayed: []Replay{{StepID: 2, Name: "batch_1_done"}}, Steps: []*Step{ok("count_users", 3, 701, 719)}},
	}}
	return &Trace{Root: root, TakenAt: at(1000), Finished: true, Summary: Summary{
		Rows: 300, UniqueUsers: 100, Duplicates: 200, DuplicatesFromRetries: 200, StepAttempts: 7,
		InjectedFailures: 3, InjectedCrashes: 1, Crashes: 2, KilledFromOutside: 1, Recoveries: 2,
	}}
}

func writeHTML(t *testing.T, tr *Trace) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteHTML(&b, tr); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestHTMLSelfContained(t *testing.T) {
	out := writeHTML(t, syntheticTrace())
	for _, re := range []string{
		`(?i)\b(src|href|action|poster|data)\s*=\s*["']?\s*(https?:|//|ftp:)`, // a fetch from elsewhere
		`(?i)url\s*\(`, `(?i)@import`, `(?i)<link\b`, `(?i)<(iframe|object|embed|img)\b`,
		`(?i)<script[^>]*\bsrc\b`, `(?i)https?://`, `(?i)@font-face`,
	} {
		if m := regexp.MustCompile(re).FindString(out); m != "" {
			t.Errorf("the page refers outside itself (%s): %q", re, m)
		}
	}
	if strings.Contains(out, "<meta http-equiv") {
		t.Error("the page redirects or refreshes itself")
	}
}

func TestHTMLEscapes(t *testing.T) {
	tr := syntheticTrace()
	out := writeHTML(t, tr)
	if strings.Contains(out, hostile) || strings.Contains(out, "<img") || strings.Contains(out, "onerror=alert(1)>") {
		t.Errorf("a hostile string appears unescaped:\n%s", out)
	}
	// Two scripts, each closed once: the trace's JSON and the page's code.
	if n := strings.Count(out, "</script"); n != 2 {
		t.Errorf("%d </script tags, want 2", n)
	}
	// The hostile text is still there, as text, in the tooltips.
	if !strings.Contains(out, "injected failure &lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") {
		t.Error("the error text is missing from the attempt's tooltip")
	}
	// The JSON copy of the trace reads back whole.
	m := regexp.MustCompile(`(?s)<script type="application/json" id="trace-data">(.*?)</script>`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no script#trace-data")
	}
	var back, want any
	if err := json.Unmarshal([]byte(m[1]), &back); err != nil {
		t.Fatalf("script#trace-data is not JSON: %v", err)
	}
	b, _ := json.Marshal(tr)
	json.Unmarshal(b, &want)
	if !reflect.DeepEqual(back, want) {
		t.Errorf("script#trace-data differs from the trace:\n%s\nwant\n%s", m[1], b)
	}
}

func TestHTMLLanes(t *testing.T) {
	tr := syntheticTrace()
	out := writeHTML(t, tr)
	lanes := regexp.MustCompile(`<div class="row lane [a-z]+" data-workflow="([^"]*)" data-execution="(\d+)"`).FindAllStringSubmatch(out, -1)
	var root []string
	child := 0
	for _, l := range lanes {
		switch l[1] {
		case "wf-1":
			root = append(root, l[2])
		case "wf-1-0":
			child++
		default:
			t.Errorf("a lane of an unknown workflow %q", l[1])
		}
	}
	if got := strings.Join(root, ","); got != "1,2,3" {
		t.Errorf("lanes of the main workflow: executions %s, want 1,2,3", got)
	}
	if child != 1 {
		t.Errorf("%d lanes of the child, want 1", child)
	}
	_, main, _ := strings.Cut(out, "<main") // past the legend
	// The child folds under execution 1, closed.
	if n := strings.Count(out, `<details class="child trouble" id="wf-2" data-workflow="wf-1-0">`); n != 1 {
		t.Errorf("%d closed details for the child, want 1", n)
	}
	if !strings.Contains(out, "execution 1 started 1 child workflow") {
		t.Error("the child is not placed under execution 1")
	}
	for what, n := range map[string]int{
		`data-fault="fail"`:     2, // the child's injected failures
		`data-fault="crash"`:    1, // the crash, at the end of execution 1
		`class="mark crash"`:    1,
		`class="mark killed"`:   1, // execution 2
		`class="x unsure"`:      1, // execution 2 died between its last record and execution 3
		`class="tick"`:          2, // the child's retries
		`class="bar a ok dup"`:  1, // the retry that wrote duplicates and succeeded
		`class="bar kid ok"`:    1, // the child in execution 1's lane
		`class="mark replay"`:   2, // executions 2 and 3
		`class="bar a died"`:    1,
		`data-attempt=`:         7, // every step attempt
		`class="echo fail"`:     2, // the child's faults, in its parent's lane
		`href="#wf-2"`:          1,
		`<details class="child`: 1,
	} {
		if got := strings.Count(main, what); got != n {
			t.Errorf("%d × %s, want %d", got, what, n)
		}
	}
	// The axis of the main workflow starts at execution 1: its first bar
	// is at 0; the crash marker at its end (400ms of a 720ms run, with a
	// 2% margin).
	if !strings.Contains(out, `class="mark crash" style="left:`+pct(400/(720*1.02)*100)+`"`) {
		t.Errorf("the crash is not at the end of execution 1 (%s)", pct(400/(720*1.02)*100))
	}
	// The tooltip of an attempt says what happened.
	for _, want := range []string{
		"insert_batch_1 · attempt 2 of 3 (a retry)\n5ms · wrote 100 rows (100 again: a retry), then failed (injected)",
		"100 of its 100 rows were written again: a retry",
		"injected failure insert_batch_1#1, decided by seed 8, probability 0.4",
		"execution 1 ended by an injected crash after batch 1, decided by seed 8, probability 0.1",
		"killed from outside: its process died with no record of why",
	} {
		if !strings.Contains(out, strings.ReplaceAll(want, "\n", "&#10;")) && !strings.Contains(out, want) {
			t.Errorf("no tooltip says %q", want)
		}
	}
}

// Every count of the report is on the page once, in data-count="<its JSON name>".
func TestHTMLCounts(t *testing.T) {
	tr := syntheticTrace()
	out := writeHTML(t, tr)
	v := reflect.ValueOf(tr.Summary)
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		re := regexp.MustCompile(`data-count="` + name + `">(\d+)<`)
		all := re.FindAllStringSubmatch(out, -1)
		if len(all) != 1 {
			t.Errorf("data-count=%q appears %d times, want once", name, len(all))
			continue
		}
		if want := strconv.FormatInt(v.Field(i).Int(), 10); all[0][1] != want {
			t.Errorf("data-count=%q is %s, want %s", name, all[0][1], want)
		}
	}
}

// A workflow that never ran and an execution with nothing recorded draw
// without a panic.
func TestHTMLEmpty(t *testing.T) {
	out := writeHTML(t, &Trace{Root: &Workflow{ID: "w", Executions: []*Execution{{ID: "unrecorded:w", Outcome: "killed", Derived: true}}}})
	if !strings.Contains(out, `data-execution="0"`) {
		t.Error("no lane for the unrecorded execution")
	}
	writeHTML(t, &Trace{Root: &Workflow{ID: "w"}})
}
