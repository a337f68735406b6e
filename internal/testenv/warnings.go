package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Warnings is a slog handler keeping what is logged at warning and above, each
// record as its message followed by " key=value" per attribute, for tests
// asserting what an operator would see in the log. Its zero value is ready and
// it is safe for concurrent use.
type Warnings struct {
	mu   sync.Mutex
	msgs []string
}

// Enabled implements slog.Handler.
func (w *Warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

// WithAttrs implements slog.Handler; the attributes are not kept.
func (w *Warnings) WithAttrs([]slog.Attr) slog.Handler { return w }

// WithGroup implements slog.Handler.
func (w *Warnings) WithGroup(string) slog.Handler { return w }

// Handle implements slog.Handler.
func (w *Warnings) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	w.mu.Lock()
	w.msgs = append(w.msgs, b.String())
	w.mu.Unlock()
	return nil
}

// All returns a copy of the lines kept so far.
func (w *Warnings) All() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// Matching returns the lines kept so far that contain s.
func (w *Warnings) Matching(s string) []string {
	var out []string
	for _, m := range w.All() {
		if strings.Contains(m, s) {
			out = append(out, m)
		}
	}
	return out
}
