package manager

import (
	"context"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/config"
)

func testConfig(t *testing.T) config.Manager {
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), "psk_test-admin-token-0123456789"
	return cfg
}

func TestAFailingServerEndsWaitWithItsError(t *testing.T) {
	m, err := New(testConfig(t), Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	m.ln.Close() // the HTTP server's listener fails under it
	if err := m.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "HTTP server") {
		t.Errorf("Wait = %v, want the HTTP server's error", err)
	}
}

func TestWaitEndsWithoutErrorAtShutdown(t *testing.T) {
	m, err := New(testConfig(t), Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(context.Background()); err != nil {
		t.Errorf("Wait without Start = %v", err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := m.Wait(context.Background()); err != nil {
		t.Errorf("Wait after Shutdown = %v, want nil", err)
	}
	if err := m.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}
