package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/durlab/durlab/dburl"
)

// pgOpenTimeout bounds the first connection, so a down or firewalled server
// fails the command instead of hanging it.
const pgOpenTimeout = 10 * time.Second

// openPostgres opens a pgx pool, which DBOS's data source needs, and the
// store's *sql.DB over that same pool.
func openPostgres(ctx context.Context, u dburl.URL, readOnly bool) (Store, error) {
	scrub := func(msg string) string { return dburl.Redact(msg, u.Raw) }
	cfg, err := pgxpool.ParseConfig(u.Raw)
	if err != nil {
		// pgx's own redaction of a malformed URL is best effort.
		return nil, fmt.Errorf("%w: malformed Postgres URL: %s", ErrUnavailable, scrub(err.Error()))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgOpenTimeout
	}
	where := u.Redacted()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, openFailed(u.Raw, where, err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, pgOpenTimeout)
	defer cancel()
	err = pool.Ping(pingCtx)
	if isMissingDatabase(err) && !readOnly {
		// DBOS creates a missing system database; the store's is created
		// the same way, so that the README's two URLs work on a fresh server.
		if err = createDatabase(pingCtx, cfg.ConnConfig); err == nil {
			err = pool.Ping(pingCtx)
		}
	}
	if err != nil {
		pool.Close()
		var denied errCannotCreate
		if errors.As(err, &denied) {
			return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(denied.Error()))
		}
		return nil, openFailed(u.Raw, where, err)
	}
	s := &sqlStore{db: stdlib.OpenDBFromPool(pool), d: postgresDialect, pool: pool, readOnly: readOnly}
	if readOnly {
		if err := s.checkLedger(ctx); err != nil {
			s.Close()
			return nil, openFailed(u.Raw, where, err)
		}
		return s, nil
	}
	lcfg := cfg.Copy()
	lcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	lcfg.MaxConns = 2
	if s.ledgerPool, err = pgxpool.NewWithConfig(ctx, lcfg); err != nil {
		s.Close()
		return nil, openFailed(u.Raw, where, err)
	}
	s.ledger = stdlib.OpenDBFromPool(s.ledgerPool)
	if err := s.prepare(ctx); err != nil {
		s.Close()
		if errors.Is(err, ErrForeignSchema) {
			return nil, err
		}
		return nil, openFailed(u.Raw, where, err)
	}
	if err := s.prepareEvents(ctx); err != nil {
		s.Close()
		return nil, openFailed(u.Raw, where, err)
	}
	return s, nil
}

// openFailed is a failure to open the database raw names, where for
// display: an environment fault as such (the command may succeed later,
// exit 4), anything else as ErrUnavailable (configuration, exit 2).
func openFailed(raw, where string, err error) error {
	if Classify(err) != FaultNone {
		return Environment("store", raw, err)
	}
	return fmt.Errorf("%w: %s: %s", ErrUnavailable, where, dburl.Redact(err.Error(), raw))
}

// isMissingDatabase tells whether err is the server's "database does not
// exist" (invalid_catalog_name).
func isMissingDatabase(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "3D000"
}

// errCannotCreate: the role may not create the missing database. Its text
// is the one line the user needs.
type errCannotCreate struct{ database, role string }

func (e errCannotCreate) Error() string {
	return fmt.Sprintf("database %q does not exist, and role %q may not create it (it needs CREATEDB): create it first (createdb %s), or grant the role CREATEDB",
		e.database, e.role, e.database)
}

// createDatabase creates the database cfg names, from the server's
// maintenance database "postgres", as DBOS creates its system database.
// A database another process created meanwhile is no error.
func createDatabase(ctx context.Context, cfg *pgx.ConnConfig) error {
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{cfg.Database}.Sanitize())
	var pe *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe) && pe.Code == "42P04": // duplicate_database
		return nil
	case errors.As(err, &pe) && pe.Code == "23505": // two CREATE DATABASE at once: the catalog's unique index
		return nil
	case errors.As(err, &pe) && pe.Code == "42501": // insufficient_privilege
		return errCannotCreate{database: cfg.Database, role: cfg.User}
	}
	return err
}
