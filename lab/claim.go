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
// A claim is also what makes an executor dead or alive to the others: a
// worker adopts the pending workflows of an executor whose claim no live
// process has held for --adopt-after (adopt.go). The adopter takes the dead
// executor's claim first, behind an adoption marker (another lock, taken
// before and released after it) that tells a process restarted with that
// ID to wait rather than give up (claimOrWait).
//
// A Postgres claim can be lost while its process lives: a server restart,
// or a network partition, ends the session. Its watcher pings the session
// every pgClaimCheck and, when the ping fails, closes the claim's gate: the
// process's writes to the store wait (adopt_fence.go). It then takes the
// lock again on a new session. If it gets it, the process checks that
// nobody adopted what it was running before its writes resume; if another
// process holds it, this process's work belongs to someone else now, and it
// stops at once, writing nothing more (fence). Finding out takes at most
// pgClaimCheck + pgPingTimeout, which is why --adopt-after cannot be shorter
// than MinAdoptAfter.
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

const (
	// pgClaimCheck is how often a Postgres claim's session is checked.
	pgClaimCheck = time.Second
	// pgPingTimeout bounds one check: a session that does not answer in
	// that time counts as lost.
	pgPingTimeout = time.Second
	// claimWait is how often a process waiting for an adopter to let its
	// executor ID go tries again.
	claimWait = 500 * time.Millisecond
)

// ErrExecutorInUse: another live durlab process holds the executor ID.
var ErrExecutorInUse = errors.New("executor ID in use")

// ErrClaimLost: this process lost its executor claim, and a write could not
// wait for it to come back because the process is stopping.
var ErrClaimLost = errors.New("the executor claim is lost")

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
	// held is closed while the claim is held; a lost claim replaces it
	// with an open one until the claim is held again.
	held() <-chan struct{}
	// verify checks, now, that the claim is held.
	verify(ctx context.Context) error
	// onLoss sets what happens when the claim is lost (Postgres only).
	onLoss(p lossPolicy)
	// release gives the executor ID (and any presence lock) back.
	release() error
}

// lossPolicy is what a claim does after its session ended under it.
type lossPolicy struct {
	// regain runs when the claim was taken again, before writes resume;
	// lastHeld is the last time the lost session was known to hold it. nil
	// lets writes resume; an error matching errFenced hands the process to
	// taken; any other error is tried again at the next check.
	regain func(lastHeld time.Time) error
	// taken runs when another process holds the claim after a loss, or
	// regain fenced the process. The claim is given up.
	taken func(err error)
}

// errFenced: this process's work was taken over while it had lost its
// claim; it must not write again.
var errFenced = errors.New("fenced")

// claimTakenError: after a loss, another process holds the claim.
type claimTakenError struct{ id string }

func (e claimTakenError) Error() string {
	return fmt.Sprintf("executor ID %s was taken by another durlab process while this one had lost its database session (its pending workflows were adopted, or a process with its ID started)", e.id)
}

func (e claimTakenError) Is(target error) bool { return target == errFenced }

// closedChan is the held channel of a claim that cannot be lost.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// claimExecutor claims executor ID id on the system database systemDB, or
// fails with an error matching ErrExecutorInUse.
func claimExecutor(ctx context.Context, systemDB, id string, notices io.Writer) (claim, error) {
	if dburl.IsPostgres(systemDB) {
		return claimPostgres(ctx, systemDB, id, []int64{store.LockKey("executor", id)}, notices)
	}
	path, err := systemDBFile(systemDB)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return noClaim{}, nil // in memory: no other process can see it
	}
	return claimFile(path, id, false)
}

// claimOrWait claims executor ID id as claimExecutor does, except that
// while a process that adopted id's pending workflows holds the claim it
// waits for it, saying so once; waited tells whether it did. A live process
// with the same ID is still ErrExecutorInUse, at once.
func claimOrWait(ctx context.Context, systemDB, id string, notices io.Writer) (c claim, waited bool, err error) {
	if notices == nil {
		notices = io.Discard
	}
	var l *Liveness
	defer func() {
		if l != nil {
			l.Close()
		}
	}()
	for {
		c, err := claimExecutor(ctx, systemDB, id, notices)
		if !errors.Is(err, ErrExecutorInUse) {
			return c, waited, err
		}
		if l == nil {
			l = NewLiveness(ctx, systemDB)
		}
		if adopting, known := l.Adopting(id); !adopting || !known {
			// The adopter lets the claim go before its marker: try once
			// more before calling the holder a live twin.
			c, err := claimExecutor(ctx, systemDB, id, notices)
			return c, waited, err
		}
		if !waited {
			fmt.Fprintf(notices, "durlab: executor ID %s was adopted by another durlab process, which holds its claim until the workflows it adopted finish; waiting for it\n", id)
			waited = true
		}
		select {
		case <-ctx.Done():
			return nil, waited, fmt.Errorf("waiting for the claim of executor ID %s: %w", id, context.Cause(ctx))
		case <-time.After(claimWait):
		}
	}
}

// adoptingError: another process is adopting the executor right now.
type adoptingError struct{ id string }

func (e adoptingError) Error() string {
	return fmt.Sprintf("executor %s is being adopted by another durlab process, which holds its claim until the workflows it adopted finish", e.id)
}

func (e adoptingError) Is(target error) bool { return target == ErrExecutorInUse }

// executorAliveError: the executor to adopt is alive.
type executorAliveError struct{ id string }

func (e executorAliveError) Error() string {
	return fmt.Sprintf("executor %s is alive: a live durlab process holds its claim, and adopting it would run its workflows twice", e.id)
}

func (e executorAliveError) Is(target error) bool { return target == ErrExecutorInUse }

// claimAdoption takes the claim of executor id for a process that adopts
// its pending workflows: the adoption marker first, then the executor's
// claim, both without waiting. It fails with adoptingError when another
// adopter has the marker and with executorAliveError when a live process
// holds the claim; both match ErrExecutorInUse.
func claimAdoption(ctx context.Context, systemDB, id string, notices io.Writer) (claim, error) {
	if dburl.IsPostgres(systemDB) {
		c, err := claimPostgres(ctx, systemDB, id, []int64{store.LockKey("adopt", id), store.LockKey("executor", id)}, notices)
		var taken keyTakenError
		if errors.As(err, &taken) {
			if taken.index == 0 {
				return nil, adoptingError{id}
			}
			return nil, executorAliveError{id}
		}
		return c, err
	}
	path, err := systemDBFile(systemDB)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return noClaim{}, nil
	}
	return claimFile(path, id, true)
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

// executorLockFile is the lock file of executor id's claim beside the
// SQLite system database db.
func executorLockFile(db, id string) string { return db + "." + lockName(id) + ".lock" }

// adoptionLockFile is the lock file of executor id's adoption marker. The
// '+' is a character lockName never writes, so no executor ID's lock file
// can be a marker's.
func adoptionLockFile(db, id string) string { return db + ".adopt+" + lockName(id) + ".lock" }

type noClaim struct{}

func (noClaim) serve(string) error                           { return nil }
func (noClaim) served(context.Context, string) (bool, error) { return false, nil }
func (noClaim) held() <-chan struct{}                        { return closedChan }
func (noClaim) verify(context.Context) error                 { return nil }
func (noClaim) onLoss(lossPolicy)                            {}
func (noClaim) release() error                               { return nil }

// fileClaim holds flocks on files beside a SQLite system database. A flock
// lives exactly as long as its process: it cannot be lost.
type fileClaim struct {
	db       string // the system database file
	mu       sync.Mutex
	owner    *os.File
	marker   *os.File   // an adopter's marker, released after owner
	presence []*os.File // presence locks
}

func claimFile(db, id string, adopt bool) (*fileClaim, error) {
	c := &fileClaim{db: db}
	if adopt {
		f, err := flockFile(adoptionLockFile(db, id), syscall.LOCK_EX)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, adoptingError{id}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: marking executor ID %s adopted: %v", ErrSystemDB, id, err)
		}
		c.marker = f
	}
	f, err := flockFile(executorLockFile(db, id), syscall.LOCK_EX)
	if err != nil {
		c.release()
	}
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK) && adopt:
		return nil, executorAliveError{id}
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, executorInUseError{id}
	case err != nil:
		return nil, fmt.Errorf("%w: claiming executor ID %s: %v", ErrSystemDB, id, err)
	}
	c.owner = f
	return c, nil
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
	c.presence = append(c.presence, f)
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

func (*fileClaim) held() <-chan struct{}        { return closedChan }
func (*fileClaim) verify(context.Context) error { return nil }
func (*fileClaim) onLoss(lossPolicy)            {}

func (c *fileClaim) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, f := range c.presence {
		errs = append(errs, f.Close())
	}
	c.presence = nil
	// The claim before the marker: a restarted executor that finds its
	// claim taken and no marker gives up (claimOrWait).
	for _, f := range []**os.File{&c.owner, &c.marker} {
		if *f != nil {
			errs = append(errs, (*f).Close())
			*f = nil
		}
	}
	return errors.Join(errs...)
}

// keyTakenError: another session holds one of a claim's keys.
type keyTakenError struct {
	index int    // which of the claim's keys
	pid   uint32 // the holder's server process, 0 when it could not be told
}

func (e keyTakenError) Error() string { return "the lock is held by another session" }

// pgClaim holds session-level advisory locks on a connection of its own:
// keys exclusively, in order, and the presence locks of the queues served
// shared.
type pgClaim struct {
	url     string
	id      string
	keys    []int64
	notices io.Writer

	mu        sync.Mutex // guards everything below
	conn      *store.LockSession
	queues    []string
	heldCh    chan struct{} // closed while the claim is held
	lostPID   uint32        // the server process of the session lost, 0 if none
	lastHeld  time.Time     // the last time a ping showed the claim held
	regaining bool          // taken again after a loss, not yet regained
	gone      bool          // given up for good (taken by another process)
	policy    lossPolicy

	stop chan struct{}
	done chan struct{}
}

func claimPostgres(ctx context.Context, systemDB, id string, keys []int64, notices io.Writer) (*pgClaim, error) {
	if notices == nil {
		notices = io.Discard
	}
	c := &pgClaim{url: systemDB, id: id, keys: keys, notices: notices, heldCh: closedChan,
		stop: make(chan struct{}), done: make(chan struct{})}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := c.lock(cctx)
	var taken keyTakenError
	switch {
	case errors.As(err, &taken) && len(keys) == 1:
		return nil, executorInUseError{id}
	case errors.As(err, &taken):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: claiming executor ID %s: %v", ErrSystemDB, id, err)
	}
	c.conn, c.lastHeld = conn, time.Now()
	go c.watch()
	return c, nil
}

// lock connects and takes the claim's keys (and the presence locks of the
// queues served), without waiting; it fails with keyTakenError when
// another session holds a key.
func (c *pgClaim) lock(ctx context.Context) (*store.LockSession, error) {
	conn, err := store.OpenLockSession(ctx, c.url, "", "durlab executor "+c.id)
	if err != nil {
		return nil, err
	}
	for i, key := range c.keys {
		ok, err := conn.TryLock(ctx, key)
		if err == nil && !ok {
			pid, _ := conn.Holder(ctx, key)
			err = keyTakenError{index: i, pid: pid}
		}
		if err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	for _, q := range c.queues {
		if err := conn.LockShared(ctx, store.LockKey("queue", q)); err != nil {
			conn.Close(context.Background())
			return nil, err
		}
	}
	return conn, nil
}

// watch checks the session every pgClaimCheck until release.
func (c *pgClaim) watch() {
	defer close(c.done)
	t := time.NewTicker(pgClaimCheck)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if !c.check() {
			return
		}
	}
}

// check pings the session; when it is lost, closes the gate and takes the
// locks again on a new session. It returns false once the claim is given
// up.
func (c *pgClaim) check() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && !c.regaining {
		ctx, cancel := context.WithTimeout(context.Background(), pgPingTimeout)
		err := c.conn.Ping(ctx)
		cancel()
		if err == nil {
			c.lastHeld = time.Now()
			return true
		}
		c.lostPID = c.conn.PID()
		// Closing a connection to a server that does not answer takes
		// its full timeout: not on the watcher's time.
		go c.conn.Close(context.Background())
		c.conn = nil
		c.heldCh = make(chan struct{})
		fmt.Fprintf(c.notices, "durlab: WARNING: lost the database session that holds the claim of executor ID %s; this process writes nothing until it holds the claim again\n", c.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgClaimCheck+pgPingTimeout)
	defer cancel()
	if c.conn == nil {
		conn, err := c.lock(ctx)
		var taken keyTakenError
		switch {
		case errors.As(err, &taken) && (taken.pid == 0 || taken.pid == c.lostPID):
			// Our own old session, which the server has not ended yet
			// (or a holder that let go meanwhile): try again.
			return true
		case errors.As(err, &taken):
			c.giveUp(claimTakenError{c.id})
			return false
		case err != nil:
			return true // unreachable still
		}
		c.conn, c.regaining = conn, true
	}
	if c.regaining {
		if c.policy.regain != nil {
			if err := c.policy.regain(c.lastHeld); errors.Is(err, errFenced) {
				c.giveUp(err)
				return false
			} else if err != nil {
				return true
			}
		}
		c.regaining, c.lostPID, c.lastHeld = false, 0, time.Now()
		close(c.heldCh)
		fmt.Fprintf(c.notices, "durlab: executor ID %s claimed again after losing the database session; writes resume\n", c.id)
	}
	return true
}

// giveUp lets the claim go for good and tells the policy. Called with mu
// held.
func (c *pgClaim) giveUp(err error) {
	c.gone = true
	if c.conn != nil {
		c.conn.Close(context.Background())
		c.conn = nil
	}
	if c.policy.taken != nil {
		c.policy.taken(err)
		return
	}
	fmt.Fprintf(c.notices, "durlab: WARNING: %v\n", err)
}

func (c *pgClaim) onLoss(p lossPolicy) {
	c.mu.Lock()
	c.policy = p
	c.mu.Unlock()
}

func (c *pgClaim) held() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heldCh
}

// verify pings the session now.
func (c *pgClaim) verify(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.regaining || c.gone {
		return ErrClaimLost
	}
	if err := c.conn.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrClaimLost, err)
	}
	return nil
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

// release closes the session, which drops its locks, an adopter's marker
// with its claim; claimOrWait's second try covers the instant between.
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
