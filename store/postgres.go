package store

import (
	"context"
	"errors"
	"fmt"
	"time"

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
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(err.Error()))
	}
	pingCtx, cancel := context.WithTimeout(ctx, pgOpenTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(err.Error()))
	}
	s := &sqlStore{db: stdlib.OpenDBFromPool(pool), d: postgresDialect, pool: pool, readOnly: readOnly}
	if readOnly {
		if err := s.checkLedger(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(err.Error()))
		}
		return s, nil
	}
	lcfg := cfg.Copy()
	lcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	lcfg.MaxConns = 2
	if s.ledgerPool, err = pgxpool.NewWithConfig(ctx, lcfg); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(err.Error()))
	}
	s.ledger = stdlib.OpenDBFromPool(s.ledgerPool)
	if err := s.prepare(ctx); err != nil {
		s.Close()
		if errors.Is(err, ErrForeignSchema) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(err.Error()))
	}
	if err := s.prepareEvents(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(err.Error()))
	}
	return s, nil
}
