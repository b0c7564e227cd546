package cmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/durlab/durlab/trace"
)

// chromiumPath is Debian's chromium (apt-get install -y chromium).
const chromiumPath = "/usr/bin/chromium"

// cmdBrowser is the `browser` command of the scripts that test pages in a
// real headless Chromium:
//
//	browser need           with no Chromium, fail under CI=true, else log
//	                       loudly; with it, put an executable named
//	                       durlab-chromium on the script's PATH
//	browser PAGE REPORT    open PAGE, a `durlab workflow trace --html`
//	                       timeline, from file:// and check it against
//	                       REPORT, the JSON of the run (`run -o json`) or
//	                       of its report
//
// A custom command cannot skip a script, so a browser script goes on with:
//
//	[!exec:durlab-chromium] skip 'BROWSER TEST SKIPPED: no chromium'
//
// The checks: the page loads with no console error, no uncaught exception,
// and no network request but the page's own file; it shows one lane per
// execution of the main workflow (the report's recoveries + 1), all of the
// main workflow, with the child workflows folded; every data-count number
// is the report's field of that name, and every count of the trace is
// there; its markers and attempts add up to the report's faults, crashes
// and step attempts; every bar and marker has a tooltip; a click on a
// child's summary shows that child's lanes, and a click on a child's bar
// in its parent's lane opens it too. A screenshot goes to PAGE.png.
func cmdBrowser(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: browser need | browser PAGE REPORT")
	}
	switch {
	case len(args) == 1 && args[0] == "need":
		browserNeed(ts)
	case len(args) == 2:
		browserCheck(ts, args[0], args[1])
	default:
		ts.Fatalf("usage: browser need | browser PAGE REPORT")
	}
}

var chromiumMarker = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "durlab-chromium-marker-")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "durlab-chromium"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
})

func browserNeed(ts *testscript.TestScript) {
	if fi, err := os.Stat(chromiumPath); err != nil || fi.Mode()&0o111 == 0 {
		msg := fmt.Sprintf("no %s (install it with apt-get install -y chromium)", chromiumPath)
		if os.Getenv("CI") == "true" {
			ts.Fatalf("BROWSER TEST FAILED (CI=true): %s", msg)
		}
		ts.Logf("BROWSER TEST SKIPPED: %s", msg)
		fmt.Fprintln(os.Stderr, "durlab scripts: BROWSER TEST SKIPPED: "+msg)
		return
	}
	dir, err := chromiumMarker()
	ts.Check(err)
	ts.Setenv("PATH", dir+string(os.PathListSeparator)+ts.Getenv("PATH"))
}

// pageState is what the checks read from the page.
type pageState struct {
	Root     string         `json:"root"`
	Lanes    int            `json:"lanes"`   // every .lane, shown or not
	Visible  []visibleLane  `json:"visible"` // the .lanes shown
	Counts   [][2]string    `json:"counts"`  // data-count name, text
	Faults   map[string]int `json:"faults"`  // data-fault kind: markers
	Attempts int            `json:"attempts"`
	Untitled []string       `json:"untitled"` // bars and markers with no tooltip
	Children int            `json:"children"`
	Open     int            `json:"open"`
	Data     map[string]any `json:"data"` // script#trace-data
}

type visibleLane struct {
	Workflow  string `json:"workflow"`
	Execution string `json:"execution"`
}

const readPage = `(() => {
  const shown = e => e.checkVisibility();
  const faults = {};
  document.querySelectorAll('.lane [data-fault]').forEach(e => { faults[e.dataset.fault] = (faults[e.dataset.fault] || 0) + 1; });
  return {
    root: document.getElementById('root').dataset.workflow,
    lanes: document.querySelectorAll('.lane').length,
    visible: [...document.querySelectorAll('.lane')].filter(shown).map(l => ({workflow: l.dataset.workflow, execution: l.dataset.execution})),
    counts: [...document.querySelectorAll('[data-count]')].map(e => [e.dataset.count, e.textContent.trim()]),
    faults: faults,
    attempts: document.querySelectorAll('.lane [data-attempt]').length,
    untitled: [...document.querySelectorAll('.lane .in > *, .lane > .head')].filter(e => !e.title.trim()).map(e => e.outerHTML.slice(0, 120)),
    children: document.querySelectorAll('details.child').length,
    open: document.querySelectorAll('details.child[open]').length,
    data: JSON.parse(document.getElementById('trace-data').textContent),
  };
})()`

// readChild is the state of the first child workflow's block: whether it
// is open and which of its own lanes show.
const readChild = `((sel) => {
  const d = document.querySelector(sel);
  const own = [...d.querySelectorAll('.lane')].filter(l => l.dataset.workflow === d.dataset.workflow);
  return {id: d.id, workflow: d.dataset.workflow, open: String(d.open), lanes: String(own.length),
    shown: String(own.filter(l => l.checkVisibility()).length)};
})`

func browserCheck(ts *testscript.TestScript, pagePath, reportPath string) {
	report := readReport(ts, reportPath)
	abs, err := filepath.Abs(ts.MkAbs(pagePath))
	ts.Check(err)
	pageURL := (&url.URL{Scheme: "file", Path: abs}).String()

	profile, err := os.MkdirTemp("", "durlab-chromium-profile-")
	ts.Check(err)
	defer os.RemoveAll(profile)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(1400, 900))
	defer cancelAlloc()

	var mu sync.Mutex
	var problems []string
	problem := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Request.URL != pageURL {
				problem("the page fetched %s", ev.Request.URL)
			}
		case *network.EventLoadingFailed:
			problem("a request failed: %s (%s)", ev.ErrorText, ev.Type)
		}
	}))
	defer cancel()
	// The first Run starts the browser; the checks run under a deadline
	// derived from it.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void]("1"))
	ts.Check(err)
	tctx, cancelRun := context.WithTimeout(ctx, 90*time.Second)
	defer cancelRun()
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range chromedp.Console(tctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				problem("console %s at %s:%d", m, m.URL, m.Line)
			}
		}
	}()

	ts.Check(chromedp.Do(tctx, chromedp.Navigate(pageURL), chromedp.WaitReady(chromedp.CSS("#root"))))
	st, err := chromedp.Run(tctx, chromedp.Evaluate[pageState](readPage))
	ts.Check(err)

	// One lane per execution of the main workflow, and only those show.
	executions := int(reportNumber(ts, report, "recoveries")) + 1
	if st.Root != report["workflow_id"] {
		ts.Fatalf("the page is of workflow %s, the report of %v", st.Root, report["workflow_id"])
	}
	var numbers []string
	for _, l := range st.Visible {
		if l.Workflow != st.Root {
			ts.Fatalf("a lane of workflow %s shows before anything was expanded", l.Workflow)
		}
		numbers = append(numbers, l.Execution)
	}
	want := make([]string, executions)
	for i := range want {
		want[i] = strconv.Itoa(i + 1)
	}
	if !slices.Equal(numbers, want) {
		ts.Fatalf("the page shows lanes of executions %v, want %v (the report's %d recoveries + 1)", numbers, want, executions-1)
	}
	if wf, _ := st.Data["workflow"].(map[string]any); wf == nil || len(asList(wf["executions"])) != executions {
		ts.Fatalf("script#trace-data does not hold %d executions of the main workflow", executions)
	}
	ts.Logf("browser: %d lanes shown of %d, %d child workflows, none open", len(st.Visible), st.Lanes, st.Children)
	if st.Children == 0 || st.Open != 0 {
		ts.Fatalf("%d child workflows, %d open: want some, all folded", st.Children, st.Open)
	}

	// Every count is the report's.
	seen := map[string]bool{}
	for _, c := range st.Counts {
		name, text := c[0], c[1]
		if seen[name] {
			ts.Fatalf("data-count=%q appears twice", name)
		}
		seen[name] = true
		got, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			ts.Fatalf("data-count=%q holds %q, not a number", name, text)
		}
		if want := reportNumber(ts, report, name); float64(got) != want {
			ts.Fatalf("data-count=%q is %d on the page, %v in the report", name, got, want)
		}
	}
	s := reflect.TypeFor[trace.Summary]()
	for i := range s.NumField() {
		name, _, _ := strings.Cut(s.Field(i).Tag.Get("json"), ",")
		if !seen[name] {
			ts.Fatalf("the page has no data-count=%q", name)
		}
	}
	ts.Logf("browser: %d counts, each equal to the report's", len(st.Counts))

	// What is drawn adds up to what the report counts.
	faults := 0
	for _, n := range st.Faults {
		faults += n
	}
	for _, c := range []struct {
		what  string
		got   int
		field string
	}{
		{"fault markers", faults, "injected_failures"},
		{"crash markers", st.Faults["crash"] + st.Faults["commit-crash"], "injected_crashes"},
		{"step attempts drawn", st.Attempts, "step_attempts"},
	} {
		if want := reportNumber(ts, report, c.field); float64(c.got) != want {
			ts.Fatalf("%d %s, want %v (the report's %s)", c.got, c.what, want, c.field)
		}
	}
	if len(st.Untitled) > 0 {
		ts.Fatalf("%d bars or markers have no tooltip, the first: %s", len(st.Untitled), st.Untitled[0])
	}

	// A click on a child's summary shows its lanes.
	first := "#root details.child"
	ts.Check(chromedp.Do(tctx, chromedp.Click(chromedp.CSS(first+" > summary"))))
	child, err := chromedp.Run(tctx, chromedp.Evaluate[map[string]string](readChild+"('"+first+"')"))
	ts.Check(err)
	if child["open"] != "true" || child["shown"] == "0" || child["shown"] != child["lanes"] {
		ts.Fatalf("after a click on its summary, child %s: %v; want it open with its lanes shown", child["workflow"], child)
	}
	ts.Logf("browser: expanding child %s shows its %s lanes", child["workflow"], child["shown"])
	// A click on another child's bar in its parent's lane opens it.
	second := "#root details.child:not([open])"
	other, err := chromedp.Run(tctx, chromedp.Evaluate[map[string]string](readChild+"('"+second+"')"))
	ts.Check(err)
	ts.Check(chromedp.Do(tctx, chromedp.Click(chromedp.CSS(`a.kid[href="#`+other["id"]+`"]`))))
	other, err = chromedp.Run(tctx, chromedp.Evaluate[map[string]string](readChild+"('#"+other["id"]+"')"))
	ts.Check(err)
	if other["open"] != "true" || other["shown"] == "0" {
		ts.Fatalf("after a click on its bar, child %s: %v; want it open with its lanes shown", other["workflow"], other)
	}

	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(pagePath+".png"), shot, 0o644))
	// Let the console report what the clicks caused, then stop reading it.
	_, err = chromedp.Run(tctx, chromedp.Evaluate[chromedp.Void]("new Promise(r => setTimeout(r, 100))", chromedp.EvalAwaitPromise))
	ts.Check(err)
	cancelRun()
	<-consoleDone
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		ts.Fatalf("in the browser:\n%s", strings.Join(problems, "\n"))
	}
}

// readReport reads a run's JSON (its report under "report") or a report.
func readReport(ts *testscript.TestScript, path string) map[string]any {
	var doc map[string]any
	if err := json.Unmarshal([]byte(ts.ReadFile(path)), &doc); err != nil {
		ts.Fatalf("%s: %v", path, err)
	}
	if r, ok := doc["report"].(map[string]any); ok {
		return r
	}
	return doc
}

func reportNumber(ts *testscript.TestScript, report map[string]any, field string) float64 {
	v, ok := report[field].(float64)
	if !ok || math.IsNaN(v) {
		ts.Fatalf("the report has no number %q (%v)", field, report[field])
	}
	return v
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
