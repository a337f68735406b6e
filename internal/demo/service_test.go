package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/testenv"
)

// tracker counts the services that started and have not stopped; it tells
// the test when the slow Start it guards is under way.
type tracker struct {
	mu      sync.Mutex
	live    int
	entered chan struct{}
	// unblock lets a slow Start go on when the test fails.
	unblock chan struct{}
}

// tracked is a service noted in a tracker. A slow one's Start waits until
// its context ends, as a sample service's does on a stalled queue server,
// then fails, undoing itself.
type tracked struct {
	t       *tracker
	slow    bool
	started bool
}

func (s *tracked) Start(ctx context.Context) error {
	if s.slow {
		close(s.t.entered)
		select {
		case <-ctx.Done():
		case <-s.t.unblock:
		}
		return fmt.Errorf("connect to the queue: %w", context.Cause(ctx))
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	s.t.live++
	s.started = true
	return nil
}

func (s *tracked) Shutdown(context.Context) error {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.started {
		s.t.live--
		s.started = false
	}
	return nil
}

func (t *tracker) running() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live
}

// TestShutdownDuringAHookSwitch has an update hook switch a deployment to a
// release whose Start hangs, and the demo stop while it does: the stop does
// not wait for the switch, whose request may never end, the switch gives up
// and leaves no service running, a hook arriving later is refused, and
// none of it is logged as a warning.
func TestShutdownDuringAHookSwitch(t *testing.T) {
	tr := &tracker{entered: make(chan struct{}), unblock: make(chan struct{})}
	svcs := newServices(func(s serviceSpec) (service, error) { return &tracked{t: tr, slow: s.Release == Next}, nil },
		func(id, release string) (serviceSpec, bool) {
			return serviceSpec{Deployment: id, Release: release}, true
		})
	var warned testenv.Warnings
	srv := httptest.NewServer(newHookHandler(svcs, slog.New(&warned)))
	defer srv.Close()
	post := func(id, release string) (int, error) {
		resp, err := http.Post(srv.URL+hookPath(id), "application/json", strings.NewReader(`{"release":"`+release+`"}`))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := post(regressedOn, Current); err != nil || code != http.StatusNoContent {
		t.Fatalf("switching to %s answered %d, %v", Current, code, err)
	}

	type answer struct {
		code int
		err  error
	}
	switched := make(chan answer, 1)
	go func() {
		code, err := post(regressedOn, Next)
		switched <- answer{code, err}
	}()
	<-tr.entered // the switch has stopped Current and is starting Next
	stopped := make(chan error, 1)
	go func() { stopped <- svcs.Shutdown(context.Background()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		close(tr.unblock)
		t.Fatal("Shutdown waits for a switch whose request has no end")
	}
	if a := <-switched; a.err != nil || a.code != http.StatusServiceUnavailable {
		t.Errorf("the switch cut short answered %d, %v; want %d", a.code, a.err, http.StatusServiceUnavailable)
	}
	if n := tr.running(); n != 0 {
		t.Errorf("%d services still run after Shutdown", n)
	}
	if got := svcs.Release(regressedOn); got != "" {
		t.Errorf("%s still runs %q after Shutdown", regressedOn, got)
	}
	if err := svcs.Switch(context.Background(), "acme-prod", Current); !errors.Is(err, errStopping) {
		t.Errorf("a switch after Shutdown returned %v, want %v", err, errStopping)
	}
	if w := warned.All(); len(w) > 0 {
		t.Errorf("an orderly stop logged warnings: %q", w)
	}
}
