package cmd_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuiltBinaryNamesItsVersions builds durlab as a user does, stamped
// the way scripts/version-ldflags.sh stamps it, and checks that --version
// and `durlab version -o json` name the version, the commit and DBOS v1.8.0
// (from go.mod): a test binary records no dependency versions, a real
// build does.
func TestBuiltBinaryNamesItsVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds durlab")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	bin := filepath.Join(t.TempDir(), "durlab")
	flags := "-X github.com/durlab/durlab/cmd.stampedVersion=v0.0.0-test -X github.com/durlab/durlab/cmd.stampedCommit=0123456789abcdef0123"
	build := exec.Command(goTool, "build", "-ldflags", flags, "-o", bin, "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "durlab v0.0.0-test (commit 0123456789ab, go"
	if line := string(out); !strings.HasPrefix(line, want) || !strings.Contains(line, "DBOS Transact for Go v1.8.0") {
		t.Errorf("--version printed %q, want %q... with DBOS Transact for Go v1.8.0", line, want)
	}
	out, err = exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v["version"] != "v0.0.0-test" || v["commit"] != "0123456789abcdef0123" || v["dbos"] != "v1.8.0" {
		t.Errorf("version -o json: %s", out)
	}
}
