package cmd

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/durlab/durlab/lab"
	"github.com/durlab/durlab/store"
)

// Exit codes are an interface: run's supervisor restarts on 4 and stops on
// 2, and scripts read them. An environment fault is 4 however it is
// wrapped, bad usage 2, each said in one line.
func TestExitCodesOfFaults(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"bad flag", usagef("--pages must be positive"), exitUsage},
		{"malformed store URL", fmt.Errorf("%w: malformed Postgres URL", store.ErrUnavailable), exitUsage},
		{"bad system database", fmt.Errorf("%w: unsupported", lab.ErrSystemDB), exitUsage},
		{"refused", fmt.Errorf("open: %w", store.Environment("store", "postgres://u:pw@h/db", syscall.ECONNREFUSED)), exitEnvironment},
		{"shutting down", store.Environment("system database", "postgres://h/db", &pgconn.PgError{Code: "57P03", Message: "the database system is shutting down"}), exitEnvironment},
		{"disk full", store.Environment("store", "users.db", syscall.ENOSPC), exitEnvironment},
		{"a failed run", errors.New("workflow failed"), exitUnexpected},
	} {
		var stderr bytes.Buffer
		if got := exitCode(c.err, &stderr); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
		if n := strings.Count(stderr.String(), "\n"); n != 1 || strings.Contains(stderr.String(), ":pw@") {
			t.Errorf("%s: %q: want one line, without the password", c.name, stderr.String())
		}
	}
	if exitEnvironment != lab.ExitEnvironment || exitFenced != lab.ExitFenced {
		t.Error("cmd's exit codes and lab's disagree")
	}
}
