package lab

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/store"
)

// Liveness tells whether the process of an execution still runs. On this
// host it asks the kernel about the process; on another it asks whether
// the process's executor claim is held, which only a live process can do
// (claim.go): Postgres shows its advisory lock. Close releases what it
// opened.
type Liveness struct {
	host    string
	pg      *store.LockSession
	timeout time.Duration
}

// NewLiveness checks liveness against the system database systemDB.
func NewLiveness(ctx context.Context, systemDB string) *Liveness {
	l := &Liveness{timeout: 5 * time.Second}
	l.host, _ = os.Hostname()
	if dburl.IsPostgres(systemDB) {
		cctx, cancel := context.WithTimeout(ctx, l.timeout)
		defer cancel()
		if s, err := store.OpenLockSession(cctx, systemDB, "", "durlab liveness"); err == nil {
			l.pg = s
		}
	}
	return l
}

// Alive tells whether the process pid on host, running as executorID, is
// alive. A process it cannot ask about counts as alive: a follower then
// waits rather than calling it dead.
func (l *Liveness) Alive(executorID string, pid int, host string) bool {
	if host == l.host && pid > 0 {
		err := syscall.Kill(pid, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	if l.pg == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	held, err := l.pg.HeldByAnyone(ctx, store.LockKey("executor", executorID))
	return err != nil || held
}

// Close releases the connection Liveness holds.
func (l *Liveness) Close() {
	if l.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		defer cancel()
		l.pg.Close(ctx)
	}
}
