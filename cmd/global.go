package cmd

import (
	"cmp"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/lab"
)

// globalOptions are the flags every command shares: where the data lives and
// how to print.
type globalOptions struct {
	io         IOStreams
	dataDir    string
	systemDB   string
	store      string
	output     string
	logLevel   string
	executorID string
	quiet      bool
	// logLevelSet: --log-level was given, so DBOS's lines are the user's
	// choice, injected failures' included.
	logLevelSet bool
	// jsonlOK: the command prints JSON lines with --output jsonl.
	jsonlOK bool
}

func (g *globalOptions) addFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.dataDir, "data-dir", "", "folder for the embedded databases (env DURLAB_DATA_DIR, default ./.durlab)")
	f.StringVar(&g.systemDB, "system-db", "", "DBOS system database URL, sqlite:PATH or postgres://... (env DBOS_SYSTEM_DATABASE_URL or DBOS_DATABASE_URL; default sqlite:DATA-DIR/dbos.sqlite)")
	f.StringVar(&g.store, "store", "", "users store: a SQLite path or a postgres:// URL (env DURLAB_STORE; default DATA-DIR/users.db)")
	f.StringVarP(&g.output, "output", "o", "text", "output format: text or json (workflow trace: also jsonl)")
	f.StringVar(&g.logLevel, "log-level", "error", "DBOS log level on stderr: debug, info, warn, error or off (at the default, DBOS's lines for the failures durlab injects are left to durlab's own)")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "no event lines from durlab on stderr (retries, recoveries); reports and errors still print")
	f.StringVar(&g.executorID, "executor-id", "", "DBOS executor ID (env DURLAB_EXECUTOR_ID; default durlab-EXPERIMENT, or durlab-worker-HOSTNAME-QUEUE for workers); a restarted process must reuse its ID to recover its workflows")
}

// resolved is the configuration after flags, environment and defaults.
type resolved struct {
	systemDB string
	store    string
	json     bool
	jsonl    bool
	logger   *slog.Logger
	gate     *logGate
	// stream gets durlab's event lines (nil with --quiet).
	stream io.Writer
}

// resolve validates the shared flags and prepares the data folder, which is
// created 0700 only when an embedded database needs it.
func (g *globalOptions) resolve() (resolved, error) {
	return g.resolveFor(true)
}

// resolveFor resolves the configuration; with create false (the read-only
// commands) it creates neither the data folder nor a database file.
func (g *globalOptions) resolveFor(create bool) (resolved, error) {
	var r resolved
	switch g.output {
	case "text":
	case "json":
		r.json = true
	case "jsonl":
		if !g.jsonlOK {
			return r, usagef("unknown --output %q: use text or json (jsonl is for workflow trace)", g.output)
		}
		r.jsonl = true
	default:
		return r, usagef("unknown --output %q: use text or json", g.output)
	}
	var level slog.Level
	if g.logLevel == "off" {
		level = slog.LevelError + 100
	} else if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return r, usagef("unknown --log-level %q: use debug, info, warn, error or off", g.logLevel)
	}
	r.gate = &logGate{hideInjected: !g.logLevelSet}
	if !g.quiet {
		r.stream = g.io.Err
	}
	r.logger = slog.New(gatedHandler{slog.NewTextHandler(g.io.Err, &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr}), r.gate})
	dataDir := cmp.Or(g.dataDir, os.Getenv("DURLAB_DATA_DIR"), ".durlab")
	r.systemDB = cmp.Or(g.systemDB, os.Getenv("DBOS_SYSTEM_DATABASE_URL"), os.Getenv("DBOS_DATABASE_URL"))
	r.store = cmp.Or(g.store, os.Getenv("DURLAB_STORE"))
	if err := checkDatabaseURL("--system-db", r.systemDB, false); err != nil {
		return r, err
	}
	if err := checkDatabaseURL("--store", r.store, true); err != nil {
		return r, err
	}
	if id := cmp.Or(g.executorID, os.Getenv("DURLAB_EXECUTOR_ID")); id != "" {
		if err := lab.CheckExecutorID(id); err != nil {
			return r, usageError{err}
		}
	}
	// key=value connection strings go on as URLs (checked above).
	r.systemDB, _ = dburl.Normalize(r.systemDB)
	r.store, _ = dburl.Normalize(r.store)
	for _, db := range []struct{ name, url string }{
		{"system database", cmp.Or(r.systemDB, "sqlite:"+filepath.Join(dataDir, "dbos.sqlite"))},
		{"store", cmp.Or(r.store, filepath.Join(dataDir, "users.db"))},
	} {
		if err := checkSQLitePath(db.name, db.url); err != nil {
			return r, err
		}
	}
	if create && (r.systemDB == "" || r.store == "") {
		if err := ensureDataDir(dataDir); err != nil {
			return r, err
		}
	}
	if r.systemDB == "" {
		path := filepath.Join(dataDir, "dbos.sqlite")
		if create {
			if err := touch0600(path); err != nil {
				return r, usagef("cannot create the system database %s: %v", path, err)
			}
		}
		r.systemDB = "sqlite:" + path
	}
	if r.store == "" {
		r.store = filepath.Join(dataDir, "users.db")
	}
	return r, nil
}

// maxSQLitePath is the longest absolute path of a SQLite database durlab
// can use: SQLite's unix VFS opens at most 511 bytes, and the database's
// journal adds "-journal" to its name.
const maxSQLitePath = 511 - len("-journal")

// checkSQLitePath names the limit SQLite would otherwise report as
// "unable to open database file".
func checkSQLitePath(name, raw string) error {
	u, err := dburl.Parse(raw, true)
	if err != nil {
		return nil // refused elsewhere, with the flag's name
	}
	path, err := u.File()
	if err != nil || len(path) <= maxSQLitePath {
		return nil
	}
	return usagef("the %s's path %s… is %d bytes long; SQLite opens files of at most %d: choose a shorter --data-dir (or file)",
		name, path[:40], len(path), maxSQLitePath)
}

func (g *globalOptions) executor(defaultID string) string {
	return cmp.Or(g.executorID, os.Getenv("DURLAB_EXECUTOR_ID"), defaultID)
}

// checkDatabaseURL rejects, before any connection is tried, what names no
// database: a plain path is a SQLite file only where plainPath allows it.
func checkDatabaseURL(flag, v string, plainPath bool) error {
	if v == "" {
		return nil // the default
	}
	if _, err := dburl.Parse(v, plainPath); err != nil {
		return usagef("%s: %v", flag, err)
	}
	return nil
}

func ensureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return usagef("cannot create data folder %s: %v", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return usagef("data folder %s is not writable: %v", dir, unwrapPathError(err))
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// touch0600 creates path with mode 0600 if it is missing: SQLite would
// create it world-readable.
func touch0600(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindString {
		return slog.String(a.Key, dburl.Redact(a.Value.String()))
	}
	if a.Value.Kind() == slog.KindAny {
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, dburl.Redact(err.Error()))
		}
	}
	return a
}
