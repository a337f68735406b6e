package demo

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestStopPartsGoesOnWithoutAHungPart stops three parts at once: one that
// ignores its deadline, one that ends at it, and one that stops at once. The
// stop takes the deadline and its grace, not forever, and the log names the
// hung part and the one that failed.
func TestStopPartsGoesOnWithoutAHungPart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logged bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logged, nil))
		release := make(chan struct{})
		quick := false
		start := time.Now()
		stopParts(log, time.Second,
			part{"the hung one", func(context.Context) error { <-release; return nil }},
			part{"the slow one", func(ctx context.Context) error { <-ctx.Done(); return errors.New("queue not drained") }},
			part{"the quick one", func(context.Context) error { quick = true; return nil }},
		)
		took := time.Since(start)
		close(release) // the hung part's goroutine ends with the bubble
		if took != time.Second+stopGrace {
			t.Errorf("the stop took %v, want the deadline and its grace, %v", took, time.Second+stopGrace)
		}
		if !quick {
			t.Error("the quick part was not stopped")
		}
		out := logged.String()
		for _, want := range []string{
			`level=ERROR msg="parts of the demo did not stop in time; going on without them" parts="[the hung one]"`,
			`level=WARN msg="a part of the demo did not stop cleanly" part="the slow one" took=1s error="queue not drained"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("the log does not say %s:\n%s", want, out)
			}
		}
	})
}

// TestStopPartsReturnsOnceAllHaveStopped does not wait out the deadline when
// every part stops before it.
func TestStopPartsReturnsOnceAllHaveStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		stopParts(slog.New(slog.DiscardHandler), time.Minute,
			part{"a", func(context.Context) error { time.Sleep(2 * time.Second); return nil }},
			part{"b", func(context.Context) error { return nil }},
		)
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("the stop took %v, want the slower part's 2s", took)
		}
	})
}
