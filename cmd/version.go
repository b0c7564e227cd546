package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/durlab/durlab/lab"
)

// Stamped at build time by scripts/ (and so by the Dockerfile):
//
//	-ldflags "-X github.com/durlab/durlab/cmd.stampedVersion=v1.2.0 -X github.com/durlab/durlab/cmd.stampedCommit=3f2a..."
//
// A build that stamps nothing falls back on what Go recorded (the module
// version of `go install module@version`, the VCS revision of a build in a
// checkout), then on "dev".
var (
	stampedVersion string
	stampedCommit  string
)

// dbosModule is the module whose version `durlab version` reports.
const dbosModule = "github.com/dbos-inc/dbos-transact-golang"

// versionInfo is `durlab version`'s JSON. The names are an interface.
type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go"`
	DBOS    string `json:"dbos"`
	// AppVersion is the DBOS application version durlab's workflows are
	// recorded under: only processes of the same one recover them.
	AppVersion string `json:"app_version"`
}

// buildVersion reads what this binary knows of its own build.
func buildVersion() versionInfo {
	v := versionInfo{Version: stampedVersion, Commit: stampedCommit, Go: runtime.Version(), DBOS: "unknown", AppVersion: lab.AppVersion}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		if v.Commit == "" {
			v.Commit = vcsRevision(bi)
		}
		for _, d := range bi.Deps {
			if d.Path == dbosModule {
				v.DBOS = d.Version
				if d.Replace != nil {
					v.DBOS = d.Replace.Version
				}
			}
		}
	}
	if v.Version == "" {
		v.Version = "dev"
	}
	return v
}

// vcsRevision is the revision Go recorded for a build in a checkout (none
// with -buildvcs=false), marked -dirty when the tree had changes.
func vcsRevision(bi *debug.BuildInfo) string {
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// String is the one line of `durlab --version`.
func (v versionInfo) String() string {
	var parts []string
	if v.Commit != "" && !sameCommit(v.Version, v.Commit) {
		parts = append(parts, "commit "+short(v.Commit))
	}
	parts = append(parts, v.Go, "DBOS Transact for Go "+v.DBOS, "application version "+v.AppVersion)
	return fmt.Sprintf("durlab %s (%s)", v.Version, strings.Join(parts, ", "))
}

// sameCommit: the version is the commit itself (git describe in a
// repository with no tag), so the commit need not be shown twice.
func sameCommit(version, commit string) bool {
	ver, _ := strings.CutSuffix(version, "-dirty")
	rev, _ := strings.CutSuffix(commit, "-dirty")
	return len(ver) >= 7 && strings.HasPrefix(rev, ver)
}

// short is a commit hash cut to 12 characters, as git shows them, keeping
// a -dirty mark.
func short(commit string) string {
	rev, dirty := strings.CutSuffix(commit, "-dirty")
	rev = rev[:min(len(rev), 12)]
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// versionOptions are the flags of `durlab version`.
type versionOptions struct {
	global *globalOptions
}

func newVersionCmd(g *globalOptions, runF func(*versionOptions) error) *cobra.Command {
	opts := &versionOptions{global: g}
	return &cobra.Command{
		Use:   "version",
		Short: "Print durlab's version, with the Go and DBOS versions it was built with",
		Long: `Print durlab's version (the one stamped by scripts/ and the Dockerfile, else
the module version or the commit Go recorded, else "dev"), the commit, the Go
and DBOS Transact versions it was built with, and the DBOS application
version its workflows are recorded under. -o json prints one object:
version, commit, go, dbos, app_version.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runVersion(opts)
		},
	}
}

func runVersion(o *versionOptions) error {
	switch o.global.output {
	case "json":
		return printVersion(o.global.io.Out, true)
	case "text":
		return printVersion(o.global.io.Out, false)
	}
	return usagef("unknown --output %q: use text or json", o.global.output)
}

func printVersion(w io.Writer, asJSON bool) error {
	v := buildVersion()
	if asJSON {
		return json.NewEncoder(w).Encode(v)
	}
	_, err := fmt.Fprintln(w, v)
	return err
}
