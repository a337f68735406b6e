package agentcmd

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
)

func TestProfilerServesProfilesAndStopsWithItsContext(t *testing.T) {
	p, err := startProfiler("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx) }()
	base := "http://" + p.ln.Addr().String() + "/debug/pprof/"
	for path, want := range map[string]int{"heap": 200, "goroutine": 200, "no-such-profile": 404} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && len(body) == 0) {
			t.Errorf("GET %s: %d with %d bytes, want %d with a profile", path, resp.StatusCode, len(body), want)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve after its context ended = %v, want nil", err)
	}
	again, err := startProfiler("127.0.0.1:" + portOf(t, p))
	if err != nil {
		t.Fatalf("the port stayed bound after Serve returned: %v", err)
	}
	again.ln.Close()
}

func portOf(t *testing.T, p *profiler) string {
	t.Helper()
	_, port, err := net.SplitHostPort(p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}
