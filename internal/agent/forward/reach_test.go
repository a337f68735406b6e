package forward

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/reach"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
)

// syncBuffer is a log destination the forwarder's goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A manager that drops the connection for a dozen attempts, then answers: the
// agent's log says it is unreachable once and back once, not a warning per
// retry, and the request's URL is never repeated in a line.
func TestAManagerDownIsLoggedOncePerChangeOfState(t *testing.T) {
	m := &manager{}
	var mu sync.Mutex
	drops := 12
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		drop := drops > 0
		drops--
		mu.Unlock()
		if drop {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // no HTTP answer: the manager is not there
			}
			return
		}
		m.ServeHTTP(w, r)
	}))
	defer srv.Close()
	q, err := queue.Open(queue.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	enqueue(t, q, 3)

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	aq := acking{Queue: q, acked: make(chan struct{}, 1)}
	f, err := New(otlp.Logs, aq, Settings{Endpoint: srv.URL, Token: "pdt_acme", Linger: -1, Logger: log,
		InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Reach: reach.New(log, nil, srv.URL, time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	select {
	case <-aq.acked:
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered in 10s")
	}
	cancel()
	<-done

	out := logs.String()
	if n := strings.Count(out, "manager unreachable"); n != 1 {
		t.Errorf("%d 'manager unreachable' lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "manager reachable again"); n != 1 || !strings.Contains(out, "failed_attempts=12") {
		t.Errorf("want one 'reachable again' after 12 failed attempts:\n%s", out)
	}
	if strings.Contains(out, "sending telemetry failed") || strings.Contains(out, "/v1/logs") {
		t.Errorf("a line per retry, or the request URL, in:\n%s", out)
	}
	if got := len(strings.Split(strings.TrimSpace(out), "\n")); got != 2 {
		t.Errorf("%d lines, want 2:\n%s", got, out)
	}
}
