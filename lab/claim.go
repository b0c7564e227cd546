package lab

// The executor claim. DBOS recovers, at Launch, every PENDING workflow whose
// executor ID matches its own, and does not ask whether the process that
// owns them is still alive: a second live process with the same executor ID
// silently takes the first one's in-flight workflows over. durlab therefore
// claims the executor ID for the whole life of the process, before Launch,
// with a lock that dies with the process, SIGKILL included:
//
//   - SQLite system database: flock(2) on a lock file beside the database,
//     <db>.<executor>.lock (mode 0600). The kernel drops it when the process
//     dies.
//   - Postgres system database: a session-level advisory lock on a
//     connection of its own, kept open for the process's lifetime. The
//     server drops it when the session ends, which a dead process's closed
//     socket ends.
//
// A worker also holds a shared lock on its queue's name while it serves it,
// so that an experiment can tell whether any worker serves the queue it
// enqueues on (queues.go).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/durlab/durlab/dburl"
	"github.com/durlab/durlab/store"
)

// ErrExecutorInUse: another live durlab process holds the executor ID.
var ErrExecutorInUse = errors.New("executor ID in use")

// executorInUseError names the executor ID and says what to do.
type executorInUseError struct{ id string }

func (e executorInUseError) Error() string {
	return fmt.Sprintf("executor ID %s is in use by another live durlab process; give this one another --executor-id (workers) or wait for it to finish", e.id)
}

func (e executorInUseError) Is(target error) bool { return target == ErrExecutorInUse }

// claim is a held executor ID.
type claim interface {
	// serve holds the queue's shared presence lock until release.
	serve(queue string) error
	// served tells whether any live process holds the queue's presence lock.
	served(ctx context.Context, queue string) (bool, error)
	// release gives the executor ID (and any presence lock) back.
	release() error
}

// claimExecutor claims executor ID id on the system database systemDB, or
// fails with an error matching ErrExecutorInUse.
func claimExecutor(ctx context.Context, systemDB, id string, notices io.Writer) (claim, error) {
	if dburl.IsPostgres(systemDB) {
		return claimPostgres(ctx, systemDB, id, notices)
	}
	path, err := systemDBFile(systemDB)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return noClaim{}, nil // in memory: no other process can see it
	}
	return claimFile(path, id)
}

// systemDBFile is the file of a SQLite system database, "" for one in
// memory or on Postgres.
func systemDBFile(systemDB string) (string, error) {
	u, err := dburl.Parse(systemDB, false)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSystemDB, err)
	}
	return u.File()
}

// lockName turns a name into a safe part of a file name (it is appended to
// the database's own name); a name that needed changing gets a hash, so
// that two names never share a lock file.
func lockName(name string) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, name)
	if safe != name || len(safe) > 100 {
		sum := sha256.Sum256([]byte(name))
		safe = safe[:min(len(safe), 60)] + "-" + hex.EncodeToString(sum[:6])
	}
	return safe
}

type noClaim struct{}

func (noClaim) serve(string) error                           { return nil }
func (noClaim) served(context.Context, string) (bool, error) { return false, nil }
func (noClaim) release() error                               { return nil }

// fileClaim holds flocks on files beside a SQLite system database.
type fileClaim struct {
	db    string // the system database file
	owner *os.File
	mu    sync.Mutex
	held  []*os.File // presence locks
}

func claimFile(db, id string) (*fileClaim, error) {
	f, err := flockFile(db+"."+lockName(id)+".lock", syscall.LOCK_EX)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, executorInUseError{id}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: claiming executor ID %s: %v", ErrSystemDB, id, err)
	}
	return &fileClaim{db: db, owner: f}, nil
}

// flockFile opens (creating, 0600) path and locks it without waiting.
func flockFile(path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (c *fileClaim) queueLock(queue string) string {
	return c.db + ".queue-" + lockName(queue) + ".lock"
}

func (c *fileClaim) serve(queue string) error {
	f, err := flockFile(c.queueLock(queue), syscall.LOCK_SH)
	if err != nil {
		return fmt.Errorf("%w: announcing the worker of queue %s: %v", ErrSystemDB, queue, err)
	}
	c.mu.Lock()
	c.held = append(c.held, f)
	c.mu.Unlock()
	return nil
}

func (c *fileClaim) served(_ context.Context, queue string) (bool, error) {
	f, err := flockFile(c.queueLock(queue), syscall.LOCK_EX)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, f.Close()
}

func (c *fileClaim) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, f := range c.held {
		errs = append(errs, f.Close())
	}
	c.held = nil
	if c.owner != nil {
		errs = append(errs, c.owner.Close())
		c.owner = nil
	}
	return errors.Join(errs...)
}

// pgClaimCheck is how often the claim's connection is checked. A session
// lost in a server restart loses its locks: the check takes them again.
const pgClaimCheck = 2 * time.Second

// pgClaim holds session-level advisory locks on a connection of its own.
type pgClaim struct {
	url     string
	id      string
	notices io.Writer

	mu     sync.Mutex // guards conn, queues
	conn   *store.LockSession
	queues []string

	stop chan struct{}
	done chan struct{}
}

func claimPostgres(ctx context.Context, systemDB, id string, notices io.Writer) (*pgClaim, error) {
	if notices == nil {
		notices = io.Discard
	}
	c := &pgClaim{url: systemDB, id: id, notices: notices, stop: make(chan struct{}), done: make(chan struct{})}
	conn, ok, err := c.lock(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: claiming executor ID %s: %v", ErrSystemDB, id, err)
	}
	if !ok {
		return nil, executorInUseError{id}
	}
	c.conn = conn
	go c.watch()
	return c, nil
}

// lock connects and takes the executor lock (and the presence locks of the
// queues served), without waiting; ok is false when another session holds
// the executor lock.
func (c *pgClaim) lock(ctx context.Context) (*store.LockSession, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := store.OpenLockSession(cctx, c.url, "", "durlab executor "+c.id)
	if err != nil {
		return nil, false, err
	}
	if ok, err := conn.TryLock(cctx, store.LockKey("executor", c.id)); err != nil || !ok {
		conn.Close(context.Background())
		return nil, false, err
	}
	for _, q := range c.queues {
		if err := conn.LockShared(cctx, store.LockKey("queue", q)); err != nil {
			conn.Close(context.Background())
			return nil, false, err
		}
	}
	return conn, true, nil
}

// watch checks the connection and, when a server restart ended the
// session, takes the locks again on a new one.
func (c *pgClaim) watch() {
	defer close(c.done)
	t := time.NewTicker(pgClaimCheck)
	defer t.Stop()
	lost := false
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), pgClaimCheck)
		if c.conn != nil && c.conn.Ping(ctx) != nil {
			c.conn.Close(context.Background())
			c.conn = nil
		}
		if c.conn == nil {
			conn, ok, err := c.lock(ctx)
			switch {
			case err == nil && ok:
				c.conn = conn
				if lost {
					fmt.Fprintf(c.notices, "durlab: executor ID %s claimed again after losing the database connection\n", c.id)
				}
				lost = false
			case err == nil && !ok && !lost:
				lost = true
				fmt.Fprintf(c.notices, "durlab: WARNING: the claim on executor ID %s was lost with the database connection and another process holds it now\n", c.id)
			}
		}
		cancel()
		c.mu.Unlock()
	}
}

func (c *pgClaim) serve(queue string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.queues = append(c.queues, queue)
	if c.conn == nil {
		return nil // the watcher takes it with the executor lock
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.conn.LockShared(ctx, store.LockKey("queue", queue)); err != nil {
		return fmt.Errorf("%w: announcing the worker of queue %s: %v", ErrSystemDB, queue, err)
	}
	return nil
}

// served tries the queue's lock exclusively, for the length of one
// transaction: it is free only when no worker holds it shared.
func (c *pgClaim) served(ctx context.Context, queue string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return false, errors.New("no connection to the system database")
	}
	return c.conn.Held(ctx, store.LockKey("queue", queue))
}

func (c *pgClaim) release() error {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.conn.Close(ctx)
	c.conn = nil
	return err
}
