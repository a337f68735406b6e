package opamp

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/opamplog"
)

// TestStopDuringAPollIsQuiet stops a polling agent while its check-in is
// under way: the stop cancels the request, which opamp-go reports as an
// error, but an orderly stop logs no warning.
func TestStopDuringAPollIsQuiet(t *testing.T) {
	arrived, answer := make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // a manager slow to answer
		case <-r.Context().Done():
		case <-answer:
		}
	}))
	defer srv.Close()
	defer close(answer)
	cfg := config.DefaultAgent()
	cfg.Manager, cfg.Token, cfg.Release, cfg.Transport, cfg.DataDir = srv.URL, "pdt_secret_token", "1.0.0", "http", t.TempDir()
	logs := &lockedBuffer{wrote: make(chan struct{}, 1)}
	a, err := New(cfg, Settings{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "context canceled") {
		t.Fatalf("the poll under way was not cancelled by the stop; logs:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("an orderly stop logged %s", line)
		}
	}
}

// TestOnlyOurStopQuietsACancelledRequest checks which of opamp-go's error
// lines stay warnings: a cancelled request is one unless the agent is
// stopping that client, and anything else is one while it does.
func TestOnlyOurStopQuietsACancelledRequest(t *testing.T) {
	for _, tc := range []struct {
		stopping bool
		msg      string
		warn     bool
	}{
		{true, `Post "http://manager/v1/opamp": context canceled`, false},
		{false, `Post "http://manager/v1/opamp": context canceled`, true},
		{true, `Post "http://manager/v1/opamp": context deadline exceeded`, true},
		{true, "Unexpected error while receiving: websocket: close 1006 (abnormal closure): unexpected EOF", true},
	} {
		var b lockedBuffer
		w := refusalWatcher{Logger: opamplog.Logger{L: slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))},
			refused: func(int) {}, isRefused: func() bool { return false }, stopping: func() bool { return tc.stopping }}
		w.Errorf(context.Background(), "%s", tc.msg)
		if warned := strings.Contains(b.String(), "level=WARN"); warned != tc.warn {
			t.Errorf("stopping=%v %q: warned %v, want %v; logged %s", tc.stopping, tc.msg, warned, tc.warn, b.String())
		}
	}
}
