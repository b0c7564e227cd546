package store

import (
	"context"
	"fmt"
	"net/url"
	"regexp"

	"github.com/jackc/pgx/v5"
)

// Postgres databases for throwaway runs (durlab explore gives each trial
// its own). Names are restricted, since a database name cannot be a bound
// parameter.

var dbName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// WithDatabase is the Postgres URL u naming database name instead.
func WithDatabase(u, name string) (string, error) {
	parsed, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("%w: malformed Postgres URL", ErrUnavailable)
	}
	parsed.Path, parsed.RawPath = "/"+name, ""
	return parsed.String(), nil
}

// DatabaseOf is the database a Postgres URL names.
func DatabaseOf(u string) (string, error) {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return "", fmt.Errorf("%w: malformed Postgres URL", ErrUnavailable)
	}
	return cfg.Database, nil
}

// CreateDatabase creates database name on the server of Postgres URL u.
func CreateDatabase(ctx context.Context, u, name string) error {
	return onServer(ctx, u, "CREATE DATABASE "+name, name)
}

// DropDatabase drops database name on the server of Postgres URL u, with
// any session still in it.
func DropDatabase(ctx context.Context, u, name string) error {
	return onServer(ctx, u, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)", name)
}

func onServer(ctx context.Context, u, ddl, name string) error {
	if !dbName.MatchString(name) {
		return fmt.Errorf("%w: %q is not a database name durlab makes", ErrUnavailable, name)
	}
	s, err := OpenLockSession(ctx, u, "postgres", "durlab explore")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer s.Close(ctx)
	if _, err := s.conn.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}
