// Package pgtest gives each test a throwaway Postgres database.
//
// Tests reach the server through an admin URL, DURLAB_TEST_POSTGRES, by
// default postgres://postgres@127.0.0.1:5432/test?sslmode=disable. When no
// server answers, a developer's run skips the Postgres tests with a loud
// message, while a CI run (CI=true) fails them: a missing server must never
// turn CI green by skipping.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultAdminURL is used when DURLAB_TEST_POSTGRES is unset.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

const connectTimeout = 10 * time.Second

// AdminURL is the URL of the database the test databases are created from.
func AdminURL() string {
	if u := os.Getenv("DURLAB_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// The probe runs once per test binary, so that a blackholed server costs one
// timeout rather than one per test.
var probe = sync.OnceValue(func() error {
	conn, err := connect()
	if err != nil {
		return err
	}
	conn.Close(context.Background())
	return nil
})

// Available tells whether the admin URL's server answers.
func Available() bool { return probe() == nil }

func connect() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	return pgx.Connect(ctx, AdminURL())
}

// Missing says why the Postgres tests cannot run: "" when the server
// answers. fatal is true under CI (CI=true), where a missing server must
// fail the tests instead of skipping them.
func Missing() (msg string, fatal bool) {
	admin, err := url.Parse(AdminURL())
	if err != nil {
		return fmt.Sprintf("DURLAB_TEST_POSTGRES is not a URL: %v", err), true
	}
	if err := probe(); err != nil {
		msg := fmt.Sprintf("no server at %s: %v; start it with pg_ctlcluster --skip-systemctl-redirect 15 main start",
			admin.Redacted(), err)
		if os.Getenv("CI") == "true" {
			return "POSTGRES TESTS FAILED (CI=true): " + msg, true
		}
		return "POSTGRES TESTS SKIPPED: " + msg, false
	}
	return "", false
}

// Database creates a fresh, uniquely named database, drops it when the test
// ends, and returns its URL. With no server it skips the test, or fails it
// under CI.
func Database(t testing.TB) string {
	t.Helper()
	return forTest(t, Create)
}

// forTest skips t with no server (fails it under CI), makes a database
// with make, and drops it when t ends.
func forTest(t testing.TB, make func() (string, func() error, error)) string {
	t.Helper()
	if msg, fatal := Missing(); msg != "" {
		if fatal {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	u, drop, err := make()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return u
}

// Create creates a fresh, uniquely named database and returns its URL and
// the function that drops it, for callers without a testing.TB (testscript
// commands). Check Missing first.
func Create() (dbURL string, drop func() error, err error) {
	dbURL, name, drop, err := Unborn()
	if err != nil {
		return "", nil, err
	}
	conn, err := connect()
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database %s: %v", name, err)
	}
	return dbURL, drop, nil
}

// Unborn names a database that does not exist yet, for tests of what
// creates one: its URL, its name, and the function that drops it if
// something created it. Check Missing first.
func Unborn() (dbURL, name string, drop func() error, err error) {
	admin, err := url.Parse(AdminURL())
	if err != nil {
		return "", "", nil, fmt.Errorf("DURLAB_TEST_POSTGRES is not a URL: %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	name = "durlab_test_" + hex.EncodeToString(b[:])
	drop = func() error {
		conn, err := connect()
		if err != nil {
			return fmt.Errorf("drop database %s: %v", name, err)
		}
		defer conn.Close(context.Background())
		// FORCE: a pool the test forgot to close, or a process still
		// running, must not keep the database.
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %v", name, err)
		}
		return nil
	}
	u := *admin
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), name, drop, nil
}

// UnbornDatabase is Unborn for a test: the URL of a database that does not
// exist yet, dropped when the test ends. With no server it skips the test,
// or fails it under CI.
func UnbornDatabase(t testing.TB) string {
	t.Helper()
	return forTest(t, func() (string, func() error, error) {
		u, _, drop, err := Unborn()
		return u, drop, err
	})
}

// Exec runs one statement on the admin database (creating roles, say).
func Exec(sql string) error {
	conn, err := connect()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), sql)
	return err
}
