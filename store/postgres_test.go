package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durlab/durlab/fake"
	"github.com/durlab/durlab/internal/pgtest"
)

// Postgres joins the contract tests unconditionally: pgtest.Database skips
// loudly without a server, or fails under CI.
func init() {
	openers["postgres"] = func(t *testing.T) Store {
		s, err := Open(context.Background(), pgtest.Database(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// pgScratch is a fresh database and a pool on it, closed when t ends.
func pgScratch(t *testing.T) (context.Context, string, *pgxpool.Pool) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return ctx, dsn, pool
}

func TestPostgresForeignTableIsRefusedAndUntouched(t *testing.T) {
	ctx, dsn, pool := pgScratch(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE users (email TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO users VALUES ('a@b.c')`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn); !errors.Is(err, ErrForeignSchema) {
		t.Fatalf("Open: got %v, want ErrForeignSchema", err)
	}
	var email string
	if err := pool.QueryRow(ctx, `SELECT email FROM users`).Scan(&email); err != nil || email != "a@b.c" {
		t.Fatalf("foreign table changed: %q, %v", email, err)
	}
	var events bool
	pool.QueryRow(ctx, `SELECT to_regclass('durlab_events') IS NOT NULL`).Scan(&events)
	if events {
		t.Fatal("Open wrote durlab_events beside a foreign table")
	}
}

func TestPostgresForeignKeyIsRefused(t *testing.T) {
	ctx, dsn, pool := pgScratch(t)
	// durlab's columns, the other variant's key.
	if _, err := pool.Exec(ctx, `CREATE TABLE users_ledger (
		id TEXT, external_id TEXT, name TEXT, workflow_id TEXT,
		analyzed_at TIMESTAMPTZ, created_at TIMESTAMPTZ, PRIMARY KEY (id, workflow_id, analyzed_at))`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dsn); !errors.Is(err, ErrForeignSchema) {
		t.Fatalf("got %v, want ErrForeignSchema", err)
	}
}

func TestPostgresUnreachableHidesPassword(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	const secret = "s3cr3t-Pa55w0rd"
	for i, dsn := range []string{
		fmt.Sprintf("postgres://durlab:%s@127.0.0.1:%d/durlab?sslmode=disable", secret, port),
		fmt.Sprintf("postgresql://durlab@127.0.0.1:%d/durlab?sslmode=disable&password=%s", port, secret),
		"postgres://durlab:" + secret + "@127.0.0.1:notaport/durlab",
		"postgres://durlab:" + secret + "@127.0.0.1:5432/durlab?connect_timeout=soon",
		"postgres://durlab:" + secret + "@[::1/durlab",
		// pgx masks only the part before the first '@' here.
		"postgres://durlab:p@" + secret + "%zz@127.0.0.1/durlab",
	} {
		unreachable := i < 2 // the others are malformed
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := Open(ctx, dsn)
		cancel()
		if err == nil {
			s.Close()
			t.Fatalf("%s: opened", strings.ReplaceAll(dsn, secret, "xxxxx"))
		}
		// Unreachable is the environment's (exit 4), malformed is
		// configuration (exit 2).
		if errors.Is(err, ErrUnreachable) != unreachable || errors.Is(err, ErrUnavailable) == unreachable {
			t.Errorf("got %v, want unreachable %v", err, unreachable)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
		t.Log(err)
	}
}

func TestPostgresConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := Open(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = s.Close()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Table(Ledger).InsertPage(ctx, fake.Page(0, 3), "wf", time.Now()); err != nil {
		t.Fatal(err)
	}
}

// The README's store URL names a database a fresh server does not have:
// Open creates it, as DBOS creates its system database.
func TestPostgresCreatesAMissingDatabase(t *testing.T) {
	dsn := pgtest.UnbornDatabase(t)
	ctx := context.Background()
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open on a database that does not exist: %v", err)
	}
	defer s.Close()
	if err := s.Table(Ledger).InsertPage(ctx, fake.Page(1, 3), "wf", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Reading creates nothing: a second unborn database stays unborn.
	other := pgtest.UnbornDatabase(t)
	if _, err := OpenForReading(ctx, other); err == nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("OpenForReading on a missing database: %v, want ErrUnavailable", err)
	}
}

// A role that may not create databases gets one line that says what to do.
func TestPostgresMissingDatabaseWithoutCreateDB(t *testing.T) {
	dsn := pgtest.UnbornDatabase(t)
	role := fmt.Sprintf("durlab_nocreatedb_%d", time.Now().UnixNano())
	if err := pgtest.Exec("CREATE ROLE " + role + " LOGIN NOCREATEDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pgtest.Exec("DROP ROLE IF EXISTS " + role) })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "s3cret-pw")
	_, err = Open(context.Background(), u.String())
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	msg := err.Error()
	db := strings.TrimPrefix(u.Path, "/")
	for _, want := range []string{"does not exist", "may not create it", "CREATEDB", "createdb " + db, role} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "s3cret-pw") {
		t.Errorf("error %q: want one line, no password", msg)
	}
}
