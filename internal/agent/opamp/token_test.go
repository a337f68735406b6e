package opamp

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/config"
)

// An agent whose token the manager refuses says so once, plainly, and stops
// knocking: it waits the slow refused-token interval between attempts instead
// of retrying as fast as opamp-go would (every second or so over WebSocket, at
// every heartbeat when polling).
func TestRefusedTokenIsSaidOnceAndBacksOff(t *testing.T) {
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			attempts := make(chan time.Time, 100)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				attempts <- time.Now()
				w.Header().Set("WWW-Authenticate", `Bearer realm="periscope", error="invalid_token"`)
				http.Error(w, "unknown token", http.StatusUnauthorized)
			}))
			defer srv.Close()
			cfg := config.DefaultAgent()
			cfg.Manager, cfg.Token, cfg.Release, cfg.Transport, cfg.DataDir = srv.URL, "pdt_revoked", "1.0.0", transport, t.TempDir()
			cfg.HeartbeatInterval = config.Duration(50 * time.Millisecond)
			logs := &lockedBuffer{wrote: make(chan struct{}, 1)}
			const slow = 1500 * time.Millisecond
			a, err := New(cfg, Settings{Logger: slog.New(slog.NewTextHandler(logs, nil)), Env: []string{}, RefusedRetry: slow})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := a.Shutdown(ctx); err != nil {
					t.Error(err)
				}
			}()
			var at []time.Time
			for len(at) < 3 {
				select {
				case ts := <-attempts:
					at = append(at, ts)
				case <-time.After(10 * time.Second):
					t.Fatalf("the agent tried %d times in 10s, want 3; logs:\n%s", len(at), logs)
				}
			}
			for i := 1; i < len(at); i++ {
				// Jitter takes at most a fifth off the interval.
				if gap := at[i].Sub(at[i-1]); gap < slow*4/5 {
					t.Errorf("attempt %d came %v after the one before, want at least %v after a refusal; logs:\n%s", i+1, gap.Round(time.Millisecond), slow*4/5, logs)
				}
			}
			const said = "manager refused this agent's token (401): check PERISCOPE_AGENT_TOKEN / token file; it may have been revoked or rotated"
			if n := strings.Count(logs.String(), said); n != 1 {
				t.Errorf("the refusal was logged %d times, want once; logs:\n%s", n, logs)
			}
			for _, noise := range []string{"cannot reach manager", "bad handshake", "invalid response from server"} {
				if strings.Contains(logs.String(), noise) {
					t.Errorf("a refused token is also logged as %q, which hides the plain message:\n%s", noise, logs)
				}
			}
			if strings.Contains(logs.String(), "pdt_revoked") {
				t.Errorf("the agent logged its token:\n%s", logs)
			}
		})
	}
}

// FuzzConnectionSettingsToken offers the agent arbitrary Authorization headers:
// it takes only a deployment token carried as a bearer token, keeps it on disk,
// and otherwise keeps the one it has.
func FuzzConnectionSettingsToken(f *testing.F) {
	for _, seed := range []string{"Bearer pdt_0123456789abcdef0123456789abcdef", "Bearer psk_admin", "bearer pdt_x", "Basic dXNlcjpwdw==",
		"Bearer ", "", "Bearer pdt_\x00\n", "Bearer  pdt_spaced"} {
		f.Add("Authorization", seed)
	}
	f.Add("X-Other", "Bearer pdt_not_auth")
	cfg := config.DefaultAgent()
	cfg.Manager, cfg.Token, cfg.Transport, cfg.DataDir = "http://127.0.0.1:1", "pdt_configured", "http", f.TempDir()
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		f.Fatal(err)
	}
	if err := a.loadToken(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		before := a.Token()
		err := a.onConnectionSettings(context.Background(), &protobufs.OpAMPConnectionSettings{
			Headers: &protobufs.Headers{Headers: []*protobufs.Header{{Key: key, Value: value}}}})
		after := a.Token()
		if after == before {
			return
		}
		if err != nil || !strings.HasPrefix(after, "pdt_") || !strings.EqualFold(key, "Authorization") || !strings.Contains(value, after) {
			t.Fatalf("offer %q: %q took token %q (err %v)", key+": "+value, before, after, err)
		}
		var kept savedToken
		b, rerr := os.ReadFile(filepath.Join(cfg.DataDir, TokenFile))
		if rerr != nil || json.Unmarshal(b, &kept) != nil || kept.Token != after {
			t.Fatalf("taken token %q not kept on disk: %v %q", after, rerr, b)
		}
	})
}
