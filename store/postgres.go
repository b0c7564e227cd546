package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durlab/durlab/fake"
)

// pgOpenTimeout bounds the first connection, so a down or firewalled server
// fails the command instead of hanging it.
const pgOpenTimeout = 10 * time.Second

// pgSchemaLock is the advisory lock key ("durlab" in ASCII) that serialises
// schema changes: concurrent CREATE TABLE IF NOT EXISTS can still fail on
// Postgres's catalog unique indexes, and several processes may share the database.
const pgSchemaLock int64 = 0x6475726c6162

type pgStore struct {
	pool *pgxpool.Pool
}

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	scrub := pgScrubber(dsn)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's own redaction of a malformed URL is best effort.
		return nil, fmt.Errorf("%w: malformed Postgres URL: %s", ErrUnavailable, scrub(err.Error()))
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgOpenTimeout
	}
	where := pgRedacted(dsn, scrub)
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
	s := &pgStore{pool: pool}
	err = s.locked(ctx, func(tx pgx.Tx) error {
		// Refuse a foreign users table before writing anything beside it.
		for _, v := range []Variant{Strict, Ledger} {
			if err := pgCheckTable(ctx, tx, v); err != nil {
				return err
			}
		}
		for _, ddl := range pgSQL.createAll() {
			if _, err := tx.Exec(ctx, ddl); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrForeignSchema) {
		pool.Close()
		return nil, err
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, where, scrub(err.Error()))
	}
	return s, nil
}

// pgRedacted names the database for error messages, without its password.
func pgRedacted(dsn string, scrub func(string) string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "Postgres"
	}
	return scrub(u.Redacted())
}

var pgPasswordParam = regexp.MustCompile(`(?i)password=([^&\s]*)`)

// pgScrubber returns a function that cuts every spelling of dsn's password
// out of a message. It does not rely on dsn being a valid URL, since the
// errors most likely to echo the URL are those about malformed ones.
func pgScrubber(dsn string) func(string) string {
	var raw []string
	if u, err := url.Parse(dsn); err == nil {
		if p, ok := u.User.Password(); ok {
			raw = append(raw, p)
		}
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		// Both the last '@' anywhere and the last one before the path, in
		// case the password holds an unescaped '/' or '@'.
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
	for _, m := range pgPasswordParam.FindAllStringSubmatch(dsn, -1) {
		raw = append(raw, m[1])
	}
	var secrets []string
	for _, s := range raw {
		secrets = append(secrets, s)
		// pgx may already have masked part of a password it misparsed,
		// leaving the rest, so the pieces between delimiters go too.
		for _, piece := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune("@:/?#[]", r) }) {
			if len(piece) >= 3 {
				secrets = append(secrets, piece)
			}
		}
		if d, err := url.PathUnescape(s); err == nil {
			secrets = append(secrets, d)
		}
		if d, err := url.QueryUnescape(s); err == nil {
			secrets = append(secrets, d)
		}
		q := strconv.Quote(s)
		secrets = append(secrets, q[1:len(q)-1])
	}
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	return func(msg string) string {
		for _, s := range secrets {
			if s != "" {
				msg = strings.ReplaceAll(msg, s, "xxxxx")
			}
		}
		return msg
	}
}

// locked runs f in a transaction holding the schema lock.
func (s *pgStore) locked(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgSchemaLock); err != nil {
		return err
	}
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// pgSQL is the Postgres dialect: created_at from clock_timestamp(), the
// time of the insert itself rather than of its transaction.
var pgSQL = dialect{
	placeholder:  func(n int) string { return "$" + strconv.Itoa(n) },
	timeType:     "TIMESTAMPTZ",
	intType:      "BIGINT",
	createdAtNow: "clock_timestamp()",
}

// pgCheckTable returns ErrForeignSchema when the variant's table, as the
// search_path resolves it, exists with other columns or another primary key.
func pgCheckTable(ctx context.Context, tx pgx.Tx, v Variant) error {
	rows, err := tx.Query(ctx, `SELECT a.attname::text, COALESCE(a.attnum = ANY(i.indkey::int2[]), false)
		FROM pg_attribute a
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, v.Table())
	if err != nil {
		return err
	}
	defer rows.Close()
	var names, key []string
	for rows.Next() {
		var name string
		var inKey bool
		if err := rows.Scan(&name, &inKey); err != nil {
			return err
		}
		names = append(names, name)
		if inKey {
			key = append(key, name)
		}
	}
	if err := rows.Err(); err != nil || len(names) == 0 {
		return err
	}
	return checkSchema(v, names, key)
}

func (s *pgStore) Table(v Variant) Table { return pgTable{s: s, v: v} }

// pgTable is one of the store's two users tables.
type pgTable struct {
	s *pgStore
	v Variant
}

func (t pgTable) Variant() Variant { return t.v }

func (t pgTable) InsertStatements(users []fake.User, workflowID string, analyzedAt time.Time) []Statement {
	return pgSQL.insertStatements(t.v.Table(), users, workflowID, analyzedAt)
}

func (t pgTable) InsertPage(ctx context.Context, users []fake.User, workflowID string, analyzedAt time.Time) error {
	tx, err := t.s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, st := range t.InsertStatements(users, workflowID, analyzedAt) {
		if _, err := tx.Exec(ctx, st.SQL, st.Args...); err != nil {
			return classifyPostgres(err)
		}
	}
	return classifyPostgres(tx.Commit(ctx))
}

// classifyPostgres wraps a unique violation in ErrDuplicateUser, keeping
// Postgres's own message, which names the constraint.
func classifyPostgres(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return duplicateError{err}
	}
	return err
}

func (t pgTable) Counts(ctx context.Context, workflowID string) (Counts, error) {
	var c Counts
	err := t.s.pool.QueryRow(ctx,
		`SELECT COUNT(*), COUNT(DISTINCT id) FROM `+t.v.Table()+` WHERE workflow_id = $1`, workflowID).
		Scan(&c.Rows, &c.UniqueUsers)
	if err != nil {
		return c, err
	}
	err = t.s.pool.QueryRow(ctx, pgSQL.latestCount(t.v), workflowID).Scan(&c.Latest)
	return c, err
}

func (t pgTable) WorkflowIDs(ctx context.Context) ([]string, error) {
	rows, err := t.s.pool.Query(ctx, `SELECT DISTINCT workflow_id FROM `+t.v.Table())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (t pgTable) Delete(ctx context.Context, workflowIDs []string) (int64, error) {
	if len(workflowIDs) == 0 {
		return 0, nil
	}
	tag, err := t.s.pool.Exec(ctx, `DELETE FROM `+t.v.Table()+` WHERE workflow_id = ANY($1)`, workflowIDs)
	return tag.RowsAffected(), err
}

func (s *pgStore) AddStats(ctx context.Context, workflowID string, d Stats) error {
	_, err := s.pool.Exec(ctx, pgSQL.addStats(), addStatsArgs(workflowID, d)...)
	return err
}

func (s *pgStore) Stats(ctx context.Context, workflowID string) (Stats, error) {
	var st Stats
	err := s.pool.QueryRow(ctx, pgSQL.selectStats(), workflowID).Scan(statsDest(&st)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Stats{}, nil
	}
	return st, err
}

func (s *pgStore) Engine() any { return s.pool }

func (s *pgStore) Close() error {
	s.pool.Close()
	return nil
}
