package cmd

import (
	"github.com/dbos-inc/dbos-transact-golang/dbos"

	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/durlab/durlab/lab"
)

// logGate shapes DBOS's log around durlab's own error reporting. While DBOS
// starts, its records are held: a failure it logs and also returns (a
// database it cannot reach) is then reported once, as the one line a bad
// configuration gets, and on success the held records are written. While it
// stops, its ERROR records are dropped: it logs one for every background
// task it cancels.
//
// At the default log level it also drops DBOS's records of the failures the
// lab injects on purpose (a step retried after an injected failure): they
// make a correct run look broken, and durlab's own stream tells of them
// with more context.
type logGate struct {
	mu           sync.Mutex
	state        gateState
	held         []heldRecord
	hideInjected bool
}

type gateState int

const (
	gateOpen gateState = iota
	gateHolding
	gateQuiet
)

type heldRecord struct {
	h slog.Handler
	r slog.Record
}

type gatedHandler struct {
	slog.Handler
	gate *logGate
}

func (h gatedHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.gate.hideInjected && aboutInjected(r) {
		return nil
	}
	h.gate.mu.Lock()
	switch h.gate.state {
	case gateHolding:
		h.gate.held = append(h.gate.held, heldRecord{h.Handler, r.Clone()})
		h.gate.mu.Unlock()
		return nil
	case gateQuiet:
		if r.Level >= slog.LevelError {
			h.gate.mu.Unlock()
			return nil
		}
	}
	h.gate.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h gatedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return gatedHandler{Handler: h.Handler.WithAttrs(attrs), gate: h.gate}
}

func (h gatedHandler) WithGroup(name string) slog.Handler {
	return gatedHandler{Handler: h.Handler.WithGroup(name), gate: h.gate}
}

// aboutInjected tells whether a record is about a failure injected on
// purpose, or one durlab's stream told of: one of its attributes is an
// error matching lab.ErrInjected or lab.ErrAnnounced; or about a
// checkpoint DBOS refused because the workflow changed hands, which is how
// an execution of a cancelled (or adopted) workflow finds out, and which
// durlab tells as such.
func aboutInjected(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && (errors.Is(err, lab.ErrInjected) || errors.Is(err, lab.ErrAnnounced) ||
			errors.Is(err, dbos.ErrConflictingWorkflowID)) {
			found = true
		}
		return !found
	})
	return found
}

// hold keeps DBOS's records back until flush; records never flushed are
// dropped.
func (r resolved) hold() { r.gate.set(gateHolding) }

// flush writes the held records and lets the next ones through.
func (r resolved) flush() {
	g := r.gate
	g.mu.Lock()
	held := g.held
	g.held, g.state = nil, gateOpen
	g.mu.Unlock()
	for _, rec := range held {
		rec.h.Handle(context.Background(), rec.r)
	}
}

// quiet drops DBOS's ERROR records from now on: DBOS is stopping.
func (r resolved) quiet() { r.gate.set(gateQuiet) }

func (g *logGate) set(s gateState) {
	g.mu.Lock()
	g.state = s
	if s != gateHolding {
		g.held = nil
	}
	g.mu.Unlock()
}
