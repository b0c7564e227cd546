package store

// Advisory locks. Beside the users tables, durlab's only SQL is the
// advisory locks its processes take on a Postgres system database: the
// executor claim and the migration lock (package lab). A session-level lock
// lives as long as its session, which the server ends when the process
// dies, SIGKILL included; that is what makes it a liveness signal.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LockSession is one Postgres connection of its own, holding advisory
// locks. It is not safe for concurrent use.
type LockSession struct {
	conn *pgx.Conn
}

// LockKey is the advisory lock key of a name of a kind ("executor",
// "queue").
func LockKey(kind, name string) int64 {
	sum := sha256.Sum256([]byte("durlab-" + kind + ":" + name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// OpenLockSession connects to the database of url, or to database when it
// is not "", with application as the session's application_name. A
// database that does not exist gives an error matching ErrNoDatabase.
func OpenLockSession(ctx context.Context, url, database, application string) (*LockSession, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("malformed Postgres URL")
	}
	if database != "" {
		cfg.Database = database
	}
	if application != "" {
		cfg.RuntimeParams["application_name"] = application
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
		return nil, errors.Join(ErrNoDatabase, err)
	}
	if err != nil {
		return nil, err
	}
	return &LockSession{conn: conn}, nil
}

// ErrNoDatabase: the Postgres database does not exist.
var ErrNoDatabase = errors.New("database does not exist")

// TryLock takes the exclusive lock key without waiting; false when another
// session holds it.
func (s *LockSession) TryLock(ctx context.Context, key int64) (bool, error) {
	var ok bool
	err := s.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok)
	return ok, err
}

// LockShared takes the shared lock key, waiting for an exclusive holder.
func (s *LockSession) LockShared(ctx context.Context, key int64) error {
	_, err := s.conn.Exec(ctx, "SELECT pg_advisory_lock_shared($1)", key)
	return err
}

// Held tells whether any session holds lock key, shared or exclusive, by
// trying it exclusively for the length of one transaction.
func (s *LockSession) Held(ctx context.Context, key int64) (bool, error) {
	var free bool
	err := s.conn.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", key).Scan(&free)
	return !free, err
}

// HeldByAnyone tells whether a session of this database holds lock key, as
// the server's lock table shows it: it only reads, so unlike trying the
// lock it can never take it from under a process that is about to.
func (s *LockSession) HeldByAnyone(ctx context.Context, key int64) (bool, error) {
	u := uint64(key)
	var held bool
	err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`,
		int64(u>>32), int64(u&0xffffffff)).Scan(&held)
	return held, err
}

// Holder is the server process ID of the session that holds lock key
// exclusively in this database, 0 when none does. It only reads, as
// HeldByAnyone does.
func (s *LockSession) Holder(ctx context.Context, key int64) (uint32, error) {
	u := uint64(key)
	var pid int64
	err := s.conn.QueryRow(ctx, `SELECT COALESCE((SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND mode = 'ExclusiveLock' AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1), 0)`,
		int64(u>>32), int64(u&0xffffffff)).Scan(&pid)
	return uint32(pid), err
}

// PID is the server process ID of the session, as pg_locks shows it: a
// session that lost its connection can tell its own old locks from another
// session's by it.
func (s *LockSession) PID() uint32 { return s.conn.PgConn().PID() }

// LockName takes the exclusive lock of a name, waiting for it.
func (s *LockSession) LockName(ctx context.Context, name string) error {
	_, err := s.conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, name)
	return err
}

// UnlockName releases the lock LockName took.
func (s *LockSession) UnlockName(ctx context.Context, name string) error {
	_, err := s.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, name)
	return err
}

// Ping checks that the session is alive.
func (s *LockSession) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Close releases every lock of the session, then ends it, within a few
// seconds whatever ctx allows: a stalled connection must not hold a process
// that is stopping. Closing alone would release the locks only once the
// server noticed; unlocking first makes the release visible at once.
func (s *LockSession) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.conn.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	return s.conn.Close(ctx)
}
