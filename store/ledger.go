package store

// The attempt ledger. DBOS records only each step's final outcome; durlab
// records, beside the users tables, every execution of every workflow,
// every attempt at every step, every page an attempt wrote and every fault
// it injected, so that reports count from the databases and a trace can
// show what happened.
//
// It is one append-only table of events, durlab_events, because an
// append is one statement: a flush of everything pending is one round trip,
// and a page's write event commits in the same transaction as the page's
// rows, so "rows written" is exact even when the process dies right after
// the commit. Three views assemble the events into one record per
// execution, per attempt and per fault, for anyone reading the store with
// sqlite3 or psql:
//
//	durlab_executions  workflow, root, execution number, executor, pid, host,
//	                   start, end, how it ended (null: running, or killed)
//	durlab_attempts    workflow, step, attempt, execution, start, end,
//	                   outcome (null: running, or died), rows written, error
//	durlab_faults      kind, site, what decided it
//
// Times are microseconds since the Unix epoch, UTC.
//
// On Postgres the events that are not part of a write (begins, ends,
// faults) are appended with synchronous_commit off: the process that wrote
// them may die, the server keeps them; a server crash could lose the last
// few hundred milliseconds of them, but never one older than a write that
// survived, because the WAL is replayed in order.

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/durlab/durlab/fake"
)

// EventKind says what an event records.
type EventKind string

const (
	// ExecutionBegan: a workflow function started (its first execution or a
	// recovery). Number, ExecutorID, PID, Host, Name and Parent are set, and
	// Detail is the workflow's role in its run ("main", "batch-3").
	ExecutionBegan EventKind = "exec-begin"
	// ExecutionEnded: the execution ended as Outcome says, at Site for a
	// crash, with Detail the error of a failed workflow.
	ExecutionEnded EventKind = "exec-end"
	// AttemptBegan: an attempt at a step (StepID, StepName, AttemptNo)
	// started. Attempt is its ID.
	AttemptBegan EventKind = "attempt-begin"
	// AttemptEnded: the attempt ended as Outcome says; Detail is its error.
	// With Began set it is the attempt's only event: one that wrote nothing
	// and succeeded is recorded once, when it ends.
	AttemptEnded EventKind = "attempt-end"
	// PageWritten: the attempt committed Rows users of page Page. It
	// commits in the same transaction as those rows. With StepID -1 and
	// Began set it is a write from a workflow body, the only event of its
	// one-attempt operation StepName.
	PageWritten EventKind = "write"
	// FaultInjected: a fault of kind Outcome was injected at Site, decided
	// as Detail says.
	FaultInjected EventKind = "fault"
	// StepReplayed: the execution took step StepID from its checkpoint
	// instead of running it.
	StepReplayed EventKind = "replay"
)

// Event is one record of the attempt ledger. Fields a kind does not use are
// zero (StepID -1).
type Event struct {
	Root      string // the run's main workflow
	Workflow  string
	Execution string // the execution's ID, unique among all executions
	Seq       int64  // orders the events of one process
	Kind      EventKind
	At        time.Time
	// Began is when the attempt began, on an event that stands for its
	// begin too (see AttemptEnded, PageWritten); zero otherwise.
	Began     time.Time
	Attempt   string // the attempt's ID
	StepID    int
	StepName  string
	AttemptNo int
	Page      int
	Rows      int
	Outcome   string
	Site      string
	Detail    string
	// Set on ExecutionBegan.
	Number     int
	ExecutorID string
	PID        int
	Host       string
	Name       string
	Parent     string
}

var eventColumns = []string{"root_id", "workflow_id", "execution_id", "seq", "kind", "at_us", "began_us", "attempt_id",
	"step_id", "step_name", "attempt", "page", "rows_written", "outcome", "site", "detail",
	"execution", "executor_id", "pid", "host", "name", "parent_id"}

func (e *Event) values() []any {
	return []any{e.Root, e.Workflow, e.Execution, e.Seq, string(e.Kind), e.At.UnixMicro(), micros(e.Began), e.Attempt,
		e.StepID, e.StepName, e.AttemptNo, e.Page, e.Rows, e.Outcome, e.Site, e.Detail,
		e.Number, e.ExecutorID, e.PID, e.Host, e.Name, e.Parent}
}

// micros is t in microseconds since the epoch, 0 for the zero time.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func (e *Event) dest(kind *string, at, began *int64) []any {
	return []any{&e.Root, &e.Workflow, &e.Execution, &e.Seq, kind, at, began, &e.Attempt,
		&e.StepID, &e.StepName, &e.AttemptNo, &e.Page, &e.Rows, &e.Outcome, &e.Site, &e.Detail,
		&e.Number, &e.ExecutorID, &e.PID, &e.Host, &e.Name, &e.Parent}
}

// eventsKey is the ledger's primary key. It clusters a run's events by
// workflow, then execution: reading a run is a range scan, reading it one
// workflow at a time (EachWorkflow) streams in key order, and appending an
// event touches the leaf its execution's last event went to, so a page's
// commit carries its events for little more than its rows.
const eventsKey = "root_id, workflow_id, execution_id, seq"

func (d dialect) createEventsTable(name string) string {
	text := func(c string) string { return c + ` TEXT NOT NULL DEFAULT ''` }
	num := func(c string) string { return c + ` ` + d.intType + ` NOT NULL DEFAULT 0` }
	cols := []string{text("root_id"), text("workflow_id"), text("execution_id"), num("seq"), text("kind"), num("at_us"),
		num("began_us"), text("attempt_id"), "step_id " + d.intType + ` NOT NULL DEFAULT -1`, text("step_name"),
		num("attempt"), num("page"), num("rows_written"), text("outcome"), text("site"), text("detail"),
		num("execution"), text("executor_id"), num("pid"), text("host"), text("name"), text("parent_id")}
	return `CREATE TABLE IF NOT EXISTS ` + name + ` (` + strings.Join(cols, ", ") + `, PRIMARY KEY (` + eventsKey + `))` + d.clusteredTable
}

// ledgerViews are the views over the ledger's table.
var ledgerViews = []string{"durlab_executions", "durlab_attempts", "durlab_faults"}

func (d dialect) createEvents() []string {
	return []string{
		d.createEventsTable("durlab_events"),
		d.createView("durlab_executions", `SELECT b.execution_id, b.workflow_id, b.root_id, b.parent_id, b.name,
			b.execution, b.executor_id, b.pid, b.host, b.at_us AS started_us,
			e.at_us AS ended_us, NULLIF(e.outcome, '') AS outcome, NULLIF(e.site, '') AS site, NULLIF(e.detail, '') AS error
			FROM durlab_events b LEFT JOIN durlab_events e ON e.execution_id = b.execution_id AND e.kind = 'exec-end'
			WHERE b.kind = 'exec-begin'`),
		// An attempt is an attempt-begin, with its end if it has one, or an
		// event that stands for both (began_us set).
		d.createView("durlab_attempts", `SELECT b.attempt_id, b.workflow_id, b.root_id, b.execution_id,
			b.step_id, b.step_name, b.attempt, b.at_us AS started_us, e.at_us AS ended_us,
			NULLIF(e.outcome, '') AS outcome,
			(SELECT COALESCE(SUM(w.rows_written), 0) FROM durlab_events w WHERE w.kind = 'write' AND w.attempt_id = b.attempt_id) AS rows_written,
			NULLIF(e.detail, '') AS error
			FROM durlab_events b LEFT JOIN durlab_events e ON e.attempt_id = b.attempt_id AND e.kind = 'attempt-end'
			WHERE b.kind = 'attempt-begin'
			UNION ALL
			SELECT attempt_id, workflow_id, root_id, execution_id, step_id, step_name, attempt, began_us, at_us,
			CASE WHEN kind = 'write' THEN 'ok' ELSE NULLIF(outcome, '') END,
			CASE WHEN kind = 'write' THEN rows_written ELSE 0 END, NULLIF(detail, '')
			FROM durlab_events WHERE began_us > 0 AND kind IN ('attempt-end', 'write')`),
		d.createView("durlab_faults", `SELECT execution_id, workflow_id, root_id, NULLIF(attempt_id, '') AS attempt_id,
			outcome AS kind, site, detail AS decided_by, at_us FROM durlab_events WHERE kind = 'fault'`),
	}
}

// migrateEvents gives a ledger of an earlier durlab, keyed by (root_id,
// execution_id, seq), today's key, in the schema transaction tx: on SQLite
// by copying it into a table with the new key (a WITHOUT ROWID table's key
// is its layout), on Postgres by replacing the key's index.
func (s *sqlStore) migrateEvents(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, s.d.columnsSQL, "durlab_events")
	if err != nil {
		return err
	}
	exists, keyed := false, false
	for rows.Next() {
		var name string
		var inKey bool
		if err := rows.Scan(&name, &inKey); err != nil {
			rows.Close()
			return err
		}
		exists = true
		keyed = keyed || name == "workflow_id" && inKey
	}
	rows.Close()
	if err := rows.Err(); err != nil || !exists || keyed {
		return err
	}
	var stmts []string
	if s.d.name == "postgres" {
		var pkey string
		if err := tx.QueryRowContext(ctx, `SELECT conname FROM pg_constraint WHERE conrelid = to_regclass('durlab_events') AND contype = 'p'`).Scan(&pkey); err != nil {
			return fmt.Errorf("the ledger's key: %w", err)
		}
		stmts = []string{`ALTER TABLE durlab_events DROP CONSTRAINT "` + pkey + `", ADD PRIMARY KEY (` + eventsKey + `)`}
	} else {
		for _, v := range ledgerViews {
			stmts = append(stmts, "DROP VIEW IF EXISTS "+v)
		}
		cols := strings.Join(eventColumns, ", ")
		stmts = append(stmts, s.d.createEventsTable("durlab_events_rekeyed"),
			`INSERT INTO durlab_events_rekeyed (`+cols+`) SELECT `+cols+` FROM durlab_events`,
			`DROP TABLE durlab_events`,
			`ALTER TABLE durlab_events_rekeyed RENAME TO durlab_events`)
	}
	for _, q := range stmts {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("giving the ledger its new key: %w", err)
		}
	}
	return nil
}

// prepareEvents prepares the one-event INSERT, where the dialect prepares.
func (s *sqlStore) prepareEvents(ctx context.Context) error {
	if !s.d.prepare {
		return nil
	}
	var err error
	s.insertEvent, err = s.db.PrepareContext(ctx, s.d.appendEvents([]Event{{}})[0].sql)
	return err
}

// eventsChunk bounds the events of one INSERT, below both backends' limits
// on bound parameters.
const eventsChunk = 100

func (d dialect) appendEvents(events []Event) []statement {
	var stmts []statement
	for start := 0; start < len(events); start += eventsChunk {
		chunk := events[start:min(start+eventsChunk, len(events))]
		var sb strings.Builder
		sb.WriteString("INSERT INTO durlab_events (" + strings.Join(eventColumns, ", ") + ") VALUES ")
		args := make([]any, 0, len(eventColumns)*len(chunk))
		for i := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for j := range eventColumns {
				if j > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString(d.placeholder(len(args) + j + 1))
			}
			sb.WriteByte(')')
			args = append(args, chunk[i].values()...)
		}
		stmts = append(stmts, statement{sb.String(), args})
	}
	return stmts
}

// WritePage writes a page and its events atomically (see Store). On
// Postgres a page that fits one INSERT is one statement with its events, a
// data-modifying CTE: one round trip, where a transaction would take three.
func (s *sqlStore) WritePage(ctx context.Context, tx Tx, v Variant, users []fake.User, workflowID string, analyzedAt time.Time, events []Event) error {
	if s.d.oneStatement && len(users) <= insertChunk && len(events) > 0 && len(events) <= eventsChunk {
		page := s.d.insertStatements(v, users, workflowID, analyzedAt)[0]
		evs := s.d.appendEvents(events)[0]
		// The events' placeholders follow the page's.
		evSQL := renumber(evs.sql, len(page.args))
		query := "WITH page AS (" + page.sql + ") " + evSQL
		args := append(page.args, evs.args...)
		var err error
		if tx != nil {
			_, err = tx.Exec(ctx, query, args...)
		} else {
			_, err = s.db.ExecContext(ctx, query, args...)
		}
		return s.d.classify(err)
	}
	write := func(tx Tx) error {
		if err := s.Table(v).Insert(ctx, tx, users, workflowID, analyzedAt); err != nil {
			return err
		}
		return s.AppendEvents(ctx, tx, events)
	}
	if tx != nil {
		return write(tx)
	}
	return s.Update(ctx, write)
}

// renumber shifts the $N placeholders of a Postgres statement by offset.
func renumber(query string, offset int) string {
	var sb strings.Builder
	for i := 0; i < len(query); i++ {
		if query[i] != '$' {
			sb.WriteByte(query[i])
			continue
		}
		j := i + 1
		for j < len(query) && query[j] >= '0' && query[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(query[i+1 : j])
		sb.WriteString("$" + strconv.Itoa(n+offset))
		i = j - 1
	}
	return sb.String()
}

// AppendEvents adds events to the ledger: in tx when it is not nil (they
// then commit or roll back with it), otherwise at once, atomically.
func (s *sqlStore) AppendEvents(ctx context.Context, tx Tx, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	if t, ok := tx.(sqlTx); ok && s.d.prepare && len(events) <= 4 {
		stmt := t.tx.StmtContext(ctx, s.insertEvent)
		for i := range events {
			if _, err := stmt.ExecContext(ctx, events[i].values()...); err != nil {
				return err
			}
		}
		return nil
	}
	stmts := s.d.appendEvents(events)
	if tx != nil {
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
				return err
			}
		}
		return nil
	}
	if len(stmts) == 1 {
		_, err := s.ledgerDB().ExecContext(ctx, stmts[0].sql, stmts[0].args...)
		return err
	}
	return s.Update(ctx, func(tx Tx) error { return s.AppendEvents(ctx, tx, events) })
}

// EachWorkflow calls fn with the events of each workflow of the run whose
// main workflow is root, one workflow at a time, each workflow's earliest
// first: it streams in the ledger's key order, so that memory holds one
// workflow's events, not the run's. fn must not keep the slice.
func (s *sqlStore) EachWorkflow(ctx context.Context, root, except string, fn func(events []Event) error) error {
	if s.noLedger {
		return nil
	}
	p := s.d.placeholder
	rows, err := s.db.QueryContext(ctx, `SELECT `+strings.Join(eventColumns, ", ")+
		` FROM durlab_events WHERE root_id = `+p(1)+` AND workflow_id <> `+p(2)+` AND kind <> 'notice' ORDER BY `+eventsKey, root, except)
	if err != nil {
		return err
	}
	defer rows.Close()
	var group []Event
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		slices.SortStableFunc(group, func(a, b Event) int {
			return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Seq, b.Seq))
		})
		err := fn(group)
		group = group[:0]
		return err
	}
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if len(group) > 0 && group[0].Workflow != e.Workflow {
			if err := flush(); err != nil {
				return err
			}
		}
		// IDs and words repeat on most rows: one copy each.
		if len(group) > 0 {
			first, last := &group[0], &group[len(group)-1]
			e.Root, e.Workflow = first.Root, first.Workflow
			if e.Execution == last.Execution {
				e.Execution = last.Execution
			}
		}
		e.Outcome = intern(e.Outcome)
		group = append(group, e)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}

// noticeKind marks, in the ledger, a workflow the system database did not
// know, once a run has said so (see lab): the next runs stay quiet.
const noticeKind EventKind = "notice"

// Noticed tells which of ids a run has already reported as unknown to
// the system database.
func (s *sqlStore) Noticed(ctx context.Context, ids []string) (map[string]bool, error) {
	noticed := map[string]bool{}
	if s.noLedger || len(ids) == 0 {
		return noticed, nil
	}
	for start := 0; start < len(ids); start += insertChunk {
		chunk := ids[start:min(start+insertChunk, len(ids))]
		args := make([]any, len(chunk))
		marks := make([]string, len(chunk))
		for i, id := range chunk {
			args[i], marks[i] = id, s.d.placeholder(i+1)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT root_id FROM durlab_events WHERE root_id IN (`+strings.Join(marks, ", ")+`) AND kind = 'notice'`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			noticed[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return noticed, nil
}

// MarkNoticed records that ids were reported as unknown.
func (s *sqlStore) MarkNoticed(ctx context.Context, ids []string) error {
	events := make([]Event, len(ids))
	for i, id := range ids {
		events[i] = Event{Root: id, Workflow: id, Execution: "notice", Kind: noticeKind, At: time.Now(), StepID: -1}
	}
	return s.AppendEvents(ctx, nil, events)
}

// plainSuccess is an attempt recorded by one event, its end, because it
// succeeded at once and wrote nothing (see AttemptEnded): a batch
// experiment's main workflow records one per batch.
const plainSuccess = `(kind = 'attempt-end' AND began_us > 0 AND outcome = 'ok' AND step_id >= 0)`

// WorkflowEvents returns the events of one workflow of the run, earliest
// first. With lean, the attempts that succeeded at once and did nothing
// else are left out, and counted instead: a summary of a workflow with no
// lost record needs no more of them.
func (s *sqlStore) WorkflowEvents(ctx context.Context, root, workflow string, lean bool) ([]Event, int, error) {
	if s.noLedger {
		return nil, 0, nil
	}
	p := s.d.placeholder
	where := ` FROM durlab_events WHERE root_id = ` + p(1) + ` AND workflow_id = ` + p(2)
	var plain int
	if lean {
		if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*)`+where+` AND `+plainSuccess, root, workflow).Scan(&plain); err != nil {
			return nil, 0, err
		}
		where += ` AND NOT ` + plainSuccess
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+strings.Join(eventColumns, ", ")+where+` ORDER BY at_us, seq`, root, workflow)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, 0, err
		}
		events = append(events, e)
	}
	return events, plain, rows.Err()
}

// Crash is an injected crash of a process, as the ledger recorded it.
type Crash struct {
	Host string
	PID  int
	At   time.Time
	Site string
}

// Crashes lists the injected crashes of the run whose main workflow is
// root: the one fact of a run that concerns all its workflows, since a
// crash takes down every execution its process ran.
func (s *sqlStore) Crashes(ctx context.Context, root string) ([]Crash, error) {
	if s.noLedger {
		return nil, nil
	}
	p := s.d.placeholder
	rows, err := s.db.QueryContext(ctx, `SELECT b.host, b.pid, e.at_us, e.site FROM durlab_events e
		JOIN durlab_events b ON b.root_id = e.root_id AND b.workflow_id = e.workflow_id AND b.execution_id = e.execution_id AND b.kind = 'exec-begin'
		WHERE e.root_id = `+p(1)+` AND e.kind = 'exec-end' AND e.outcome = 'crashed'`, root)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var crashes []Crash
	for rows.Next() {
		var c Crash
		var at int64
		if err := rows.Scan(&c.Host, &c.PID, &at, &c.Site); err != nil {
			return nil, err
		}
		c.At = time.UnixMicro(at).UTC()
		crashes = append(crashes, c)
	}
	return crashes, rows.Err()
}

func (s *sqlStore) FaultDetails(ctx context.Context, root string) ([]string, error) {
	if s.noLedger {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT detail FROM durlab_events WHERE root_id = `+s.d.placeholder(1)+
		` AND kind = '`+string(FaultInjected)+`' ORDER BY at_us, seq`, root)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var details []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		details = append(details, d)
	}
	return details, rows.Err()
}

// HasEvent tells whether the ledger holds event e (by its key): whether
// the write that carried it committed.
func (s *sqlStore) HasEvent(ctx context.Context, e Event) (bool, error) {
	if s.noLedger {
		return false, nil
	}
	p := s.d.placeholder
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM durlab_events WHERE root_id = `+p(1)+` AND workflow_id = `+p(2)+
		` AND execution_id = `+p(3)+` AND seq = `+p(4), e.Root, e.Workflow, e.Execution, e.Seq).Scan(&n)
	return n > 0, err
}

// OpenExecution is an execution with a beginning and no end in the
// ledger, with its process.
type OpenExecution struct {
	Workflow   string
	ExecutorID string
	PID        int
	Host       string
}

func (s *sqlStore) OpenExecutions(ctx context.Context, root string) ([]OpenExecution, error) {
	if s.noLedger {
		return nil, nil
	}
	p := s.d.placeholder
	rows, err := s.db.QueryContext(ctx, `SELECT b.workflow_id, b.executor_id, b.pid, b.host FROM durlab_events b
		WHERE b.root_id = `+p(1)+` AND b.kind = 'exec-begin' AND NOT EXISTS (SELECT 1 FROM durlab_events e
			WHERE e.root_id = b.root_id AND e.workflow_id = b.workflow_id AND e.execution_id = b.execution_id AND e.kind = 'exec-end')`, root)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var open []OpenExecution
	for rows.Next() {
		var o OpenExecution
		if err := rows.Scan(&o.Workflow, &o.ExecutorID, &o.PID, &o.Host); err != nil {
			return nil, err
		}
		open = append(open, o)
	}
	return open, rows.Err()
}

// intern gives the ledger's common words one copy.
func intern(s string) string {
	switch s {
	case "":
		return ""
	case "ok":
		return "ok"
	case "injected":
		return "injected"
	}
	return s
}

func scanEvent(rows *sql.Rows) (Event, error) {
	var e Event
	var kind string
	var at, began int64
	if err := rows.Scan(e.dest(&kind, &at, &began)...); err != nil {
		return e, err
	}
	e.Kind, e.At = EventKind(kind), time.UnixMicro(at).UTC()
	for _, k := range []EventKind{ExecutionBegan, ExecutionEnded, AttemptBegan, AttemptEnded, PageWritten, FaultInjected, StepReplayed} {
		if e.Kind == k {
			e.Kind = k // one copy of the word
		}
	}
	if began != 0 {
		e.Began = time.UnixMicro(began).UTC()
	}
	return e, nil
}

// Events returns the events of the run whose main workflow is root, in the
// order they were appended by each process, earliest first.
func (s *sqlStore) Events(ctx context.Context, root string) ([]Event, error) {
	if s.noLedger {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+strings.Join(eventColumns, ", ")+
		` FROM durlab_events WHERE root_id = `+s.d.placeholder(1)+` ORDER BY at_us, seq`, root)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, rows.Err()
}
