package workflows

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// WithMigrationLock runs f, which may create or migrate the DBOS system
// database, while no other durlab process does the same. Two processes
// migrating a fresh Postgres system database at once (two workers started
// together, or a listing beside a first run) make DBOS's migrations fail
// with "deadlock detected"; SQLite would answer "database is locked".
func WithMigrationLock(ctx context.Context, systemDB string, f func() error) error {
	if strings.HasPrefix(systemDB, "sqlite:") {
		path := strings.TrimPrefix(systemDB, "sqlite:")
		if path == "" || strings.HasPrefix(path, ":memory:") {
			return f()
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
	target := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return f()
	}
	defer conn.Close(context.WithoutCancel(ctx))
	key := fmt.Sprintf("durlab-migrate:%s", target)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1))`, key); err != nil {
		return fmt.Errorf("%w: migration lock: %v", ErrSystemDB, err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext($1))`, key)
	return f()
}
