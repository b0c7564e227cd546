// Package dburl is durlab's one reading of database URLs: the DBOS system
// database and the users store are named the same ways, and every command,
// the store and the runtime parse, classify and redact them here.
//
// A database is named by
//
//	postgres://... or postgresql://...   Postgres
//	sqlite:PATH, sqlite:file:PATH?...    a SQLite file (DBOS's own spelling)
//	PATH                                 a SQLite file (the store only)
//
// and sqlite::memory: or ?mode=memory names a SQLite database in memory.
//
// Redaction is one function, Redact, for every message durlab prints or
// logs: it hides the password of any URL or key=value connection string in
// it, and every spelling of the passwords of the URLs it is given, which
// catches a driver echoing a malformed URL piecemeal.
package dburl

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Kind is what a database URL names.
type Kind int

const (
	// SQLite is a SQLite file.
	SQLite Kind = iota
	// SQLiteMemory is a SQLite database in memory: no other process sees it.
	SQLiteMemory
	// Postgres is a Postgres database.
	Postgres
)

// ErrMalformed: the text names no database durlab can use.
var ErrMalformed = errors.New("not a database URL")

// malformedError says what is wrong with a URL and matches ErrMalformed.
type malformedError struct{ msg string }

func (e malformedError) Error() string        { return e.msg }
func (e malformedError) Is(target error) bool { return target == ErrMalformed }

func malformedf(format string, args ...any) error {
	return malformedError{fmt.Sprintf(format, args...)}
}

// URL is a parsed database URL.
type URL struct {
	// Raw is the text as given.
	Raw  string
	Kind Kind
	// Path is the SQLite file, as given (relative paths stay relative).
	Path string
}

// IsPostgres tells whether raw names a Postgres database.
func IsPostgres(raw string) bool {
	return strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://")
}

// Normalize gives a libpq key=value connection string ("host=db
// dbname=users password=...") as the postgres:// URL of the same
// connection, and anything else as it is: every part of durlab, and DBOS,
// reads one form.
func Normalize(raw string) (string, error) {
	if !isKeyValue(raw) {
		return raw, nil
	}
	return fromKeyValue(raw)
}

// schemeLike is a word and a colon at the start: a URL's scheme, which a
// plain path never has here (it is not a Windows drive on this platform).
var schemeLike = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// Parse reads a database URL. A plain path is accepted as a SQLite file
// only when plainPath is set (the store takes one, the system database
// takes DBOS's URLs only). Nothing that looks like a URL or a connection
// string is ever taken for a file name: a file created from it would hold
// its password in its name.
func Parse(raw string, plainPath bool) (URL, error) {
	u := URL{Raw: raw}
	if isKeyValue(raw) {
		pg, err := fromKeyValue(raw)
		if err != nil {
			return u, err
		}
		u.Raw, u.Kind = pg, Postgres
		return u, nil
	}
	switch {
	case raw == "":
		return u, malformedf("the database URL is empty")
	case IsPostgres(raw):
		u.Kind = Postgres
		return u, nil
	case strings.HasPrefix(raw, "sqlite:"), strings.HasPrefix(raw, "sqlite3:"):
		return parseSQLite(u)
	case strings.Contains(raw, "://"):
		return u, malformedf("unsupported database URL %s: use postgres://, postgresql:// or sqlite:", Redact(raw))
	case !plainPath:
		return u, malformedf("%q is not a database URL: use sqlite:PATH or postgres://...", Redact(raw))
	case strings.HasPrefix(raw, ":"), strings.HasPrefix(raw, "file:"):
		// SQLite's own names (:memory:, file:x?mode=memory) read as DBOS
		// reads them after sqlite:.
		sq, err := parseSQLite(URL{Raw: "sqlite:" + raw})
		sq.Raw = raw
		return sq, err
	case schemeLike.MatchString(raw):
		return u, malformedf("unsupported database URL %s: use postgres://, postgresql:// or sqlite: (a file named so: ./%s)", Redact(raw), Redact(raw))
	}
	u.Path = raw
	return u, nil
}

// parseSQLite reads DBOS's sqlite: URLs (sqlite:PATH, sqlite:///PATH,
// sqlite:file:PATH?..., sqlite::memory:) exactly as DBOS reads them, so that
// durlab's locks sit beside the file DBOS opens.
func parseSQLite(u URL) (URL, error) {
	parsed, err := url.Parse(u.Raw)
	if err != nil {
		return u, malformedf("%s", Redact(err.Error(), u.Raw))
	}
	if parsed.Host != "" {
		return u, malformedf("a sqlite URL has no host: %s", Redact(u.Raw))
	}
	dsn := parsed.Opaque
	if dsn == "" {
		dsn = parsed.Path
	}
	if parsed.RawQuery != "" {
		dsn += "?" + parsed.RawQuery
	}
	if parsed.Fragment != "" {
		dsn += "#" + parsed.Fragment
	}
	if dsn == "" || strings.HasPrefix(dsn, ":memory:") || strings.HasPrefix(dsn, "file::memory:") ||
		strings.Contains(dsn, "mode=memory") {
		u.Kind = SQLiteMemory
		return u, nil
	}
	path := dsn
	if strings.HasPrefix(path, "file:") {
		if f, err := url.Parse(path); err == nil {
			path = f.Opaque
			if path == "" {
				path = f.Path
			}
		}
	} else if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	u.Path = path
	return u, nil
}

// File is the absolute path of a SQLite file, "" for a database in memory
// or on Postgres.
func (u URL) File() (string, error) {
	if u.Kind != SQLite {
		return "", nil
	}
	return filepath.Abs(u.Path)
}

// Redacted is the URL for display, without its password: the URL's own
// password field is masked, and what a malformed URL leaves is scrubbed.
func (u URL) Redacted() string {
	parsed, err := url.Parse(u.Raw)
	if err != nil || parsed.User == nil {
		return Redact(u.Raw, u.Raw)
	}
	if _, ok := parsed.User.Password(); ok {
		parsed.User = url.UserPassword(parsed.User.Username(), "xxxxx")
	}
	return keywordPassword.ReplaceAllString(parsed.String(), "${1}xxxxx")
}

// urlPassword finds user:password@ in any URL inside a message.
var urlPassword = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^:/@\s]+):([^@\s]*)@`)

// keywordPassword finds password=... in key=value connection strings and
// URL queries.
var keywordPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]+)`)

// Redact hides every password in msg: those of any URL or key=value
// string in it, and every spelling of the passwords of the given URLs.
func Redact(msg string, urls ...string) string {
	for _, s := range secrets(urls) {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	msg = urlPassword.ReplaceAllString(msg, "${1}:xxxxx@")
	return keywordPassword.ReplaceAllString(msg, "${1}xxxxx")
}

// secrets lists the spellings of the passwords of urls, longest first. It
// does not rely on a URL being valid, since the errors most likely to echo
// a URL are those about malformed ones.
func secrets(urls []string) []string {
	var raw []string
	for _, dsn := range urls {
		if u, err := url.Parse(dsn); err == nil {
			if p, ok := u.User.Password(); ok {
				raw = append(raw, p)
			}
		}
		if _, rest, ok := strings.Cut(dsn, "://"); ok {
			// Both the last '@' anywhere and the last one before the path,
			// in case the password holds an unescaped '/' or '@'.
			authority := rest
			if i := strings.IndexAny(rest, "/?#"); i >= 0 {
				authority = rest[:i]
			}
			for _, s := range []string{rest, authority} {
				if at := strings.LastIndex(s, "@"); at >= 0 {
					if _, pw, ok := strings.Cut(s[:at], ":"); ok {
						raw = append(raw, pw)
					}
				}
			}
		}
		for _, m := range keywordPassword.FindAllStringSubmatch(dsn, -1) {
			raw = append(raw, m[2])
		}
	}
	var out []string
	for _, s := range raw {
		// A short password would hide every match of its letters (the 1s
		// of 127.0.0.1); the URL patterns above cover it where it stands.
		if len(s) < minSecret {
			continue
		}
		out = append(out, s)
		// A driver may already have masked part of a password it misparsed,
		// leaving the rest, so the pieces between delimiters go too.
		for _, piece := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune("@:/?#[]", r) }) {
			if len(piece) >= minSecret {
				out = append(out, piece)
			}
		}
		if d, err := url.PathUnescape(s); err == nil {
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(s); err == nil {
			out = append(out, d)
		}
		q := strconv.Quote(s)
		out = append(out, q[1:len(q)-1])
	}
	out = uniqueNonEmpty(out)
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// minSecret is the shortest password text replaced wherever it appears.
const minSecret = 4

func uniqueNonEmpty(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Redacted is raw for display, without its password.
func Redacted(raw string) string { return URL{Raw: raw}.Redacted() }
