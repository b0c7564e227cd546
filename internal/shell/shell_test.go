package shell

import (
	"os/exec"
	"testing"
)

// Each quoted word reaches a real shell's command as it was.
func TestQuoteRoundTripsThroughSh(t *testing.T) {
	for _, w := range []string{"plain-queue_1", "a b", "it's", `$HOME`, "a;rm -rf x", "back`tick`", `"dq"`, "*", "", "é"} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(w)).Output()
		if err != nil || string(out) != w {
			t.Errorf("Quote(%q) = %s: sh read %q (%v)", w, Quote(w), out, err)
		}
	}
	if got := Join("durlab", "worker", "--queue", "my q"); got != "durlab worker --queue 'my q'" {
		t.Errorf("Join: %s", got)
	}
}
