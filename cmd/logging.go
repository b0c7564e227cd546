package cmd

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// mutableHandler drops records while muted. DBOS logs an ERROR line for a
// failure it also returns (a database it cannot reach at start-up), and
// another for every background task it stops at shutdown; durlab reports the
// returned error once instead, as the one line a bad configuration gets.
type mutableHandler struct {
	slog.Handler
	muted *atomic.Bool
}

func newMutableHandler(h slog.Handler) mutableHandler {
	return mutableHandler{Handler: h, muted: new(atomic.Bool)}
}

func (h mutableHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.muted.Load() && h.Handler.Enabled(ctx, l)
}

func (h mutableHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return mutableHandler{Handler: h.Handler.WithAttrs(attrs), muted: h.muted}
}

func (h mutableHandler) WithGroup(name string) slog.Handler {
	return mutableHandler{Handler: h.Handler.WithGroup(name), muted: h.muted}
}

// mute silences the logger until unmute.
func (r resolved) mute()   { r.logMuted.Store(true) }
func (r resolved) unmute() { r.logMuted.Store(false) }
