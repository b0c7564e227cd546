package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/store"
)

// WithMigrationLock runs f, which may create or migrate the DBOS system
// database, while no other durlab process does the same. Two processes
// migrating a fresh Postgres system database at once (two workers started
// together, or a listing beside a first run) make DBOS's migrations fail
// with "deadlock detected"; SQLite would answer "database is locked".
func WithMigrationLock(ctx context.Context, systemDB string, f func() error) error {
	if !dburl.IsPostgres(systemDB) {
		path, err := systemDBFile(systemDB)
		if err != nil || path == "" {
			return f() // DBOS reports a malformed URL; memory needs no lock
		}
		lock, err := os.OpenFile(path+".migrate.lock", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return f() // a read-only folder: DBOS will say what is wrong
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return fmt.Errorf("%w: lock %s: %v", ErrSystemDB, lock.Name(), err)
		}
		defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
		return f()
	}
	// The lock lives in the server's maintenance database: the system
	// database may not exist yet (DBOS creates it), and creating it is part
	// of what must not race.
	cfg, err := pgx.ParseConfig(systemDB)
	if err != nil {
		return f() // DBOS reports the malformed URL
	}
	conn, err := store.OpenLockSession(ctx, systemDB, "postgres", "")
	if err != nil {
		// DBOS flattens its connection errors into text, so an outage is
		// told apart here, by the driver's typed error, before DBOS tries.
		if env := store.Environment("system database", systemDB, err); env != err {
			return env
		}
		return f()
	}
	defer conn.Close(context.WithoutCancel(ctx))
	key := fmt.Sprintf("durlab-migrate:%s", cfg.Database)
	if err := conn.LockName(ctx, key); err != nil {
		return SystemDBError(systemDB, fmt.Errorf("migration lock: %w", err))
	}
	defer conn.UnlockName(context.WithoutCancel(ctx), key)
	return f()
}

// SystemDBExists tells whether the system database exists, without
// creating it: a SQLite file that is there and not empty, or a Postgres
// database the server knows.
func SystemDBExists(ctx context.Context, systemDB string) (bool, error) {
	if !dburl.IsPostgres(systemDB) {
		path, err := systemDBFile(systemDB)
		if err != nil || path == "" {
			return true, nil // DBOS reports a malformed URL; memory always exists
		}
		st, err := os.Stat(path)
		return err == nil && st.Size() > 0, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := store.OpenLockSession(cctx, systemDB, "", "")
	if errors.Is(err, store.ErrNoDatabase) {
		return false, nil
	}
	if err != nil {
		return true, nil // malformed or unreachable: DBOS reports it
	}
	conn.Close(context.WithoutCancel(ctx))
	return true, nil
}
