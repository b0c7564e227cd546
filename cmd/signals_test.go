package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/durlab/durlab/lab"
)

// A command stopped by a signal exits 128 + that signal, whether or not it
// named the signal itself; anything else keeps its own code.
func TestExitCodeNamesTheSignal(t *testing.T) {
	byHUP, cancel := context.WithCancelCause(context.Background())
	cancel(signalError{syscall.SIGHUP})
	byTest, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for _, c := range []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"canceled by SIGHUP", byHUP, context.Canceled, exitHangup},
		{"interrupted by SIGHUP", byHUP, fmt.Errorf("stopping: %w", lab.ErrInterrupted), exitHangup},
		{"already named", byHUP, fmt.Errorf("%w: x", signalError{syscall.SIGTERM}), exitTerminated},
		{"canceled, no signal", byTest, context.Canceled, exitInterrupted},
		{"another error", byHUP, errors.New("disk full"), exitUnexpected},
		{"no error", byHUP, nil, exitOK},
	} {
		if got := exitCode(bySignal(c.ctx, c.err), io.Discard); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}
