package rolloutstest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// Member is a healthy deployment of stack "shop" on 1.0.0 with label ring.
func Member(id, ring string) rollouts.Member {
	return rollouts.Member{Subject: rolloutplan.Subject{ID: id, Customer: id, Labels: map[string]string{"ring": ring}},
		Stack: "shop", Running: "1.0.0", Status: fleet.StatusHealthy}
}

// TwoWaves is a plan for "shop": the ring=canary deployments baking an hour,
// then the rest.
func TwoWaves() rolloutplan.Plan {
	return rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "canary", Select: rolloutplan.Selection{Labels: map[string]string{"ring": "canary"}}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "rest", Select: rolloutplan.Selection{Rest: true}}}}
}

// Server is the API with its rollout routes answering from an engine over a
// Fleet and a DuckDB store in a temporary directory, at URL; tokens are
// Keyring's.
type Server struct {
	URL    string
	Engine *rollouts.Engine
	Fleet  *Fleet
	Store  *duckdb.Store
}

// NewServer starts a Server whose engine runs plan over ms at clk's time; the
// test's cleanup stops it.
func NewServer(t testing.TB, plan rolloutplan.Plan, clk clock.Clock, ms ...rollouts.Member) *Server {
	t.Helper()
	ctx := context.Background()
	st, err := duckdb.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := NewFleet(ms...)
	eng, err := rollouts.New(rolloutplan.Config{Plans: []rolloutplan.Plan{plan}}, f, f, f, st, rollouts.Settings{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Load(ctx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.New(nil, Keyring{}, nil).WithRollouts(eng).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &Server{URL: srv.URL, Engine: eng, Fleet: f, Store: st}
}
