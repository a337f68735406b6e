package manager

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// TestFleetAndTelemetryOnPostgres runs a manager with storage set to a
// PostgreSQL database: the fleet (deployments, releases, tokens, the audit
// log) and the telemetry window are in the database, so a manager started on
// another machine's empty data directory finds both.
func TestFleetAndTelemetryOnPostgres(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	ctx := context.Background()
	start := func(dir string) *Manager {
		t.Helper()
		cfg := crashConfig(dir)
		cfg.Storage = url
		m, err := New(cfg, Settings{})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := t.TempDir()
	m := start(first)
	writeThroughEveryStore(ctx, t, m)
	resp, err := http.Get(m.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz with the fleet on PostgreSQL: %s", resp.Status)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(first, duckdb.FileName)); !os.IsNotExist(err) {
		t.Errorf("the data directory has an embedded fleet store (%v): the fleet should be in PostgreSQL only", err)
	}
	if _, err := os.Stat(filepath.Join(first, telstore.FileName)); !os.IsNotExist(err) {
		t.Errorf("the data directory has an embedded telemetry store (%v): telemetry should be in PostgreSQL only", err)
	}

	m = start(t.TempDir())
	defer m.Shutdown(ctx)
	got, err := apiclient.New(m.URL(), crashAdmin).Deployments(ctx, apiclient.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "acme-prod" || got[0].Customer != "acme" {
		t.Fatalf("a manager on a new data directory and the same database lists %+v, want acme-prod", got)
	}
	page, err := m.Telemetry().Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: time.Now().Add(-time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Logs) != 1 || page.Logs[0].Body != "hello" {
		t.Fatalf("a manager on a new data directory and the same database finds logs %+v, want the record the first stored", page.Logs)
	}
}

// writeThroughEveryStore creates the deployment acme-prod (customer acme,
// stack shop) and the release shop 1.0.0 through m's API, and stores a log
// record of acme-prod's in the telemetry store.
func writeThroughEveryStore(ctx context.Context, t *testing.T, m *Manager) {
	t.Helper()
	c := apiclient.New(m.URL(), crashAdmin)
	d, err := c.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme-prod", Customer: "acme", Stack: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	if err := sendLog(ctx, m.URL(), d.Token, "hello", "q1:1-1"); err != nil {
		t.Fatal(err)
	}
	if err := m.ingest.Flush(); err != nil {
		t.Fatal(err)
	}
}

// Replicas deployed together start together, all with the same configured
// admin token: each must come up and accept it, whichever stored it first.
func TestReplicasStartingTogetherAllAcceptTheAdminToken(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	ctx := context.Background()
	const n = 4
	ms := make([]*Manager, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		cfg := crashConfig(t.TempDir())
		cfg.Storage = url
		wg.Go(func() {
			m, err := New(cfg, Settings{})
			if err == nil {
				err = m.Start(ctx)
			}
			ms[i], errs[i] = m, err
		})
	}
	wg.Wait()
	for i, m := range ms {
		if m != nil {
			defer m.Shutdown(ctx)
		}
		if errs[i] != nil {
			t.Fatalf("replica %d of %d started together did not start: %v", i, n, errs[i])
		}
	}
	for i, m := range ms {
		if _, err := apiclient.New(m.URL(), crashAdmin).Summary(ctx, apiclient.Filter{}); err != nil {
			t.Errorf("replica %d refuses the configured admin token: %v", i, err)
		}
	}
}
