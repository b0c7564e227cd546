package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/store"
)

// Liveness tells whether the process of an execution still runs. On this
// host it asks the kernel about the process; on another it asks whether
// the process's executor claim is held, which only a live process can do
// (claim.go): Postgres shows its advisory lock. Close releases what it
// opened.
type Liveness struct {
	host     string
	systemDB string
	pg       *store.LockSession
	timeout  time.Duration
}

// NewLiveness checks liveness against the system database systemDB. It is
// not safe for concurrent use.
func NewLiveness(ctx context.Context, systemDB string) *Liveness {
	l := &Liveness{timeout: 5 * time.Second, systemDB: systemDB}
	l.host, _ = os.Hostname()
	if dburl.IsPostgres(systemDB) && ctx.Err() == nil {
		l.session()
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
	if !dburl.IsPostgres(l.systemDB) {
		return true
	}
	held, known := l.ExecutorAlive(executorID)
	return !known || held
}

// ExecutorAlive tells whether a live process holds executor ID id's claim
// (claim.go); known is false when that cannot be told (a Postgres server
// that does not answer). It only reads: on Postgres the server's lock
// table, on SQLite the kernel's (/proc/locks), so it can never take a claim
// from under a process about to take it.
func (l *Liveness) ExecutorAlive(id string) (alive, known bool) {
	return l.lockHeld(store.LockKey("executor", id), executorLockFile, id)
}

// Adopting tells whether a process adopting executor ID id's workflows
// holds its adoption marker (claim.go), reading as ExecutorAlive does.
func (l *Liveness) Adopting(id string) (adopting, known bool) {
	return l.lockHeld(store.LockKey("adopt", id), adoptionLockFile, id)
}

// lockHeld reads whether the Postgres lock key, or the flock on the file
// beside a SQLite system database, is held.
func (l *Liveness) lockHeld(key int64, file func(db, id string) string, id string) (held, known bool) {
	if dburl.IsPostgres(l.systemDB) {
		s := l.session()
		if s == nil {
			return false, false
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		defer cancel()
		held, err := s.HeldByAnyone(ctx, key)
		if err != nil {
			// The next question gets a new session: a lost one never
			// answers again.
			s.Close(ctx)
			l.pg = nil
		}
		return held, err == nil
	}
	path, err := systemDBFile(l.systemDB)
	if err != nil || path == "" {
		return false, false
	}
	held, err = flocked(file(path, id))
	return held, err == nil
}

// session is the Postgres session Liveness asks on, opened again after one
// was lost; nil when the server cannot be reached.
func (l *Liveness) session() *store.LockSession {
	if l.pg == nil {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		defer cancel()
		if s, err := store.OpenLockSession(ctx, l.systemDB, "", "durlab liveness"); err == nil {
			l.pg = s
		}
	}
	return l.pg
}

// flocked tells whether a process holds a flock on the file at path, from
// the kernel's table of locks.
func flocked(path string) (bool, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return false, nil // never claimed
		}
		return false, err
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return false, err
	}
	// "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF": the device and
	// inode of the locked file, in hex and decimal.
	want := fmt.Sprintf(":%d", st.Ino)
	for _, line := range strings.Split(string(locks), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && strings.HasSuffix(f[5], want) {
			dev := strings.Split(f[5], ":")
			if len(dev) == 3 && devMatches(dev[0], dev[1], uint64(st.Dev)) {
				return true, nil
			}
		}
	}
	return false, nil
}

// devMatches compares a /proc/locks device (major and minor in hex) with
// a stat's.
func devMatches(major, minor string, dev uint64) bool {
	maj, err1 := strconv.ParseUint(major, 16, 32)
	min, err2 := strconv.ParseUint(minor, 16, 32)
	return err1 == nil && err2 == nil && unix.Major(dev) == uint32(maj) && unix.Minor(dev) == uint32(min)
}

// Close releases the connection Liveness holds.
func (l *Liveness) Close() {
	if l.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		defer cancel()
		l.pg.Close(ctx)
		l.pg = nil
	}
}
