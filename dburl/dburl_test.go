package dburl

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	for _, c := range []struct {
		raw       string
		plainPath bool
		kind      Kind
		file      string
	}{
		{"postgres://u@h/db", false, Postgres, ""},
		{"postgresql://u@h/db", true, Postgres, ""},
		{"sqlite:/data/dbos.sqlite", false, SQLite, "/data/dbos.sqlite"},
		{"sqlite:///data/dbos.sqlite", false, SQLite, "/data/dbos.sqlite"},
		{"sqlite:rel/dbos.sqlite", false, SQLite, abs("rel/dbos.sqlite")},
		{"sqlite:file:/data/x.db?_pragma=foreign_keys(1)", false, SQLite, "/data/x.db"},
		{"sqlite::memory:", false, SQLiteMemory, ""},
		{"sqlite:file::memory:?cache=shared", false, SQLiteMemory, ""},
		{"users.db", true, SQLite, abs("users.db")},
		{"sqlite:users.db", true, SQLite, abs("users.db")},
		// As DBOS reads it: the fragment is part of the file's name.
		{"sqlite:a#b.db", false, SQLite, abs("a#b.db")},
		{"sqlite3:x.db", false, SQLite, abs("x.db")},
	} {
		u, err := Parse(c.raw, c.plainPath)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.raw, err)
			continue
		}
		file, err := u.File()
		if u.Kind != c.kind || file != c.file || err != nil {
			t.Errorf("Parse(%q) = kind %v, file %q, %v; want kind %v, file %q", c.raw, u.Kind, file, err, c.kind, c.file)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct {
		raw       string
		plainPath bool
		want      string
	}{
		{"", true, "empty"},
		{"mysql://root:hunter2@db/x", true, "unsupported database URL mysql://root:xxxxx@db/x"},
		{"dbos.sqlite", false, `"dbos.sqlite" is not a database URL`},
	} {
		_, err := Parse(c.raw, c.plainPath)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want ErrMalformed saying %q", c.raw, err, c.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) shows the password: %v", c.raw, err)
		}
	}
}

func TestRedact(t *testing.T) {
	const secret = "s3cr3t-Pa55w0rd"
	for _, c := range []struct {
		msg  string
		urls []string
	}{
		{"dial postgres://durlab:" + secret + "@127.0.0.1:1/db failed", nil},
		{"cannot parse `postgresql://durlab@h/db?password=" + secret + "`", nil},
		{"host=h dbname=d password=" + secret + " sslmode=disable", nil},
		// A driver that misparsed the URL echoes a piece of the password.
		{"invalid port in p@" + secret + "%zz", []string{"postgres://durlab:p@" + secret + "%zz@127.0.0.1/durlab"}},
		{"unescaped: a/b@c" + secret, []string{"postgres://u:a/b@c" + secret + "@h/db"}},
	} {
		got := Redact(c.msg, c.urls...)
		if strings.Contains(got, secret) {
			t.Errorf("Redact(%q) = %q: the password shows", c.msg, got)
		}
		if !strings.Contains(got, "xxxxx") {
			t.Errorf("Redact(%q) = %q: no mark where the password was", c.msg, got)
		}
	}
	if got := Redact("postgres://u@h/db has no password"); got != "postgres://u@h/db has no password" {
		t.Errorf("a message without a password changed: %q", got)
	}
	// A short password is masked where it stands, not wherever its letters
	// appear.
	if got := Redact("dial 127.0.0.1:5432 for postgres://u:1@127.0.0.1/db", "postgres://u:1@127.0.0.1/db"); got != "dial 127.0.0.1:5432 for postgres://u:xxxxx@127.0.0.1/db" {
		t.Errorf("short password: %q", got)
	}
}

func TestRedacted(t *testing.T) {
	u, _ := Parse("postgres://u:pw@h:5432/db?sslmode=disable", false)
	if got, want := u.Redacted(), "postgres://u:xxxxx@h:5432/db?sslmode=disable"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
	// A password that is also a word of the URL leaves the rest alone.
	u, _ = Parse("postgres://postgres:postgres@h/postgres", false)
	if got, want := u.Redacted(), "postgres://postgres:xxxxx@h/postgres"; got != want {
		t.Errorf("Redacted() = %q, want %q", got, want)
	}
}

// A libpq key=value connection string is the postgres:// URL of the same
// connection; one with a keyword libpq does not know is refused, and so
// is anything URL-like that is not a database URL: none becomes a file.
func TestKeyValueAndURLLikeStrings(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"host=db.example port=6432 dbname=users user=lab password=s3cr3t sslmode=disable",
			"postgres://lab:s3cr3t@db.example:6432/users?sslmode=disable"},
		{"host=127.0.0.1 dbname=test user=postgres", "postgres://postgres@127.0.0.1/test"},
		{"dbname=users host=/var/run/postgresql", "postgres:///users?host=%2Fvar%2Frun%2Fpostgresql"},
		{"host = h1,h2 port=5432 dbname='my db' password='its' application_name='a b'",
			"postgres://:its@h1:5432,h2:5432/my%20db?application_name=a+b"},
		{`host=h password='a\'b c'`, "postgres://:a%27b%20c@h/"},
	} {
		got, err := Normalize(c.in)
		if err != nil || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		u, err := Parse(c.in, true)
		if err != nil || u.Kind != Postgres || u.Raw != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want Postgres %q", c.in, u, err, c.want)
		}
	}
	for _, in := range []string{"host=h passwrd=s3cr3t", "host=h password='s3cr3t", "mysql:users", "postgres:/x",
		"http:users.db", "dbname"} {
		_, err := Parse(in, true)
		if in == "dbname" {
			if err != nil {
				t.Errorf("Parse(%q): %v; a plain word is a file", in, err)
			}
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q): %v, want refused", in, err)
		} else if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Parse(%q): the error shows the password: %v", in, err)
		}
	}
	for _, in := range []string{":memory:", "file::memory:?cache=shared", "file:x.db?mode=memory"} {
		if u, err := Parse(in, true); err != nil || u.Kind != SQLiteMemory {
			t.Errorf("Parse(%q) = %v, %v; want a database in memory (which the store refuses)", in, u.Kind, err)
		}
	}
	if got := Redact("password='a b c' host=x"); strings.Contains(got, "b c") {
		t.Errorf("a quoted password leaks: %s", got)
	}
}
