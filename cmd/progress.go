package cmd

import (
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress shows units done out of the total, and the rate, on a
// terminal's stderr; it does nothing elsewhere and with --output json.
type progress struct {
	bar *progressbar.ProgressBar
}

func newProgress(streams IOStreams, asJSON bool, desc, unit string, total int) *progress {
	if !streams.IsTerminal || asJSON {
		return &progress{}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(streams.Err),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish())
	return &progress{bar: bar}
}

// start shows the empty bar, once the notices before the run are printed.
func (p *progress) start() {
	if p.bar != nil {
		p.bar.RenderBlank()
	}
}

// update is a lab.Config.Progress function.
func (p *progress) update(done, total int) {
	if p.bar == nil {
		return
	}
	if total != p.bar.GetMax() {
		p.bar.ChangeMax(total) // a resumed workflow's own size
	}
	p.bar.Set(done)
}

// finish clears the bar, so the report starts on a clean line.
func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar.Clear()
	}
}
