package startfd

import (
	"os/exec"
	"testing"
)

// A child writes to the descriptor its environment names; the supervisor
// reads what it wrote once it has exited, and nothing from a silent child.
func TestListenReadsWhatTheChildTold(t *testing.T) {
	for _, c := range []struct{ script, want string }{
		{`echo wf-1 >&"$` + Env + `"`, "wf-1"},
		{`true`, ""},
		{`kill -9 $$`, ""},
	} {
		cmd := exec.Command("sh", "-c", c.script)
		told, err := Listen(cmd)
		if err != nil {
			t.Fatal(err)
		}
		err = cmd.Start()
		told.Started()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if got := told.ID(); got != c.want {
			t.Errorf("%s: told %q, want %q", c.script, got, c.want)
		}
	}
}
