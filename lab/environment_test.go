package lab

import (
	"context"
	"io"
	"testing"
	"time"
)

// A write whose answer was lost is not written again when the ledger shows
// it committed, and is when it shows it did not: either way it is written
// once, and the run goes on.
func TestEndureWriteWritesOnce(t *testing.T) {
	for _, c := range []struct {
		name      string
		committed bool
		wantWrite int
	}{
		{"the lost write had committed", true, 1},
		{"the lost write had not", false, 2},
	} {
		e := &environment{timeout: time.Minute, notices: func(string, ...any) {},
			stop: func(err error) { t.Fatalf("%s: stopped: %v", c.name, err) }}
		writes, asked := 0, 0
		op := func() error {
			writes++
			if writes == 1 {
				return io.ErrUnexpectedEOF // the connection died after the statement was sent
			}
			return nil
		}
		committed := func() (bool, error) { asked++; return c.committed, nil }
		if err := e.endureWrite(context.Background(), nil, op, committed); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if writes != c.wantWrite || asked != 1 {
			t.Errorf("%s: %d writes, %d questions to the ledger; want %d and 1", c.name, writes, asked, c.wantWrite)
		}
	}
}
