package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview/runtimetest"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store"
)

// oneDeployment is a fleet of one deployment whose agent reported a
// crash-looping replica; the runtime route reads nothing else of the fleet.
type oneDeployment struct{ api.Fleet }

func (oneDeployment) Get(id string) (registry.View, error) {
	if id != "acme-prod" {
		return registry.View{}, fmt.Errorf("deployment %s: %w", id, store.ErrNotFound)
	}
	return registry.View{Deployment: fleet.Deployment{ID: id, Health: fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{
		"worker/0": {Healthy: false, Status: "crash-loop", Restarts: 4, LastError: "exit status 3: db connection refused", Watched: true,
			Since: t0.Add(3 * time.Minute)},
	}}}}, nil
}

func TestRuntimeOfADeploymentFromItsAgentsMetrics(t *testing.T) {
	now := t0.Add(12 * time.Minute)
	st := runtimetest.FedStore(t, t0, "acme-prod")
	a := api.New(oneDeployment{}, keys{}, nil).WithTelemetry(st, clock.NewFake(now))
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := apiclient.New(srv.URL, viewerSecret)

	r, err := c.Runtime(context.Background(), "acme-prod", telquery.RuntimeQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Components) != 1 || r.Components[0].Name != "worker/0" || r.Components[0].Restarts != 4 ||
		r.Components[0].LastError != "exit status 3: db connection refused" || !r.Components[0].Since.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("components: %+v", r.Components)
	}
	if len(r.Ingress) != 1 || r.Ingress[0].Requests != 220 || r.Ingress[0].Classes["5xx"] != 20 || r.Ingress[0].MeanMS != 18.182 {
		t.Errorf("ingress over the last 10 minutes: %+v", r.Ingress)
	}
	// 200 requests in (5 ms, 10 ms] and 20 in (75 ms, 100 ms] over the window.
	if p := r.Ingress[0]; p.P50MS == nil || *p.P50MS != 7.75 || p.P95MS == nil || *p.P95MS != 86.25 || p.P99MS == nil || *p.P99MS != 97.25 ||
		r.IngressTotal == nil || r.IngressTotal.Requests != 220 {
		t.Errorf("latency percentiles: %+v, total %+v", p, r.IngressTotal)
	}
	if len(r.Queues) != 2 || *r.Queues[0].Depth != 300 || *r.Queues[1].Pending != 300 {
		t.Errorf("queues: %+v", r.Queues)
	}
	if len(r.Sources) != 2 || r.Sources[0].Up || r.Sources[0].Error != "NOAUTH Authentication required" {
		t.Errorf("sources: %+v", r.Sources)
	}
	if len(r.Storage.Filesystems) != 1 || r.Storage.Filesystems[0].Free != 300 || len(r.Storage.PostgreSQL) != 1 ||
		r.Storage.PostgreSQL[0].Tables[0].Name != "public.orders" || r.Storage.Redis[0].Keys["0"] != 42 || !r.Storage.Buckets[0].Partial {
		t.Errorf("storage: %+v", r.Storage)
	}

	// since= narrows the window: from t0+7m the baseline is round 2, so the
	// increase is round 3 minus round 2.
	r, err = c.Runtime(context.Background(), "acme-prod", telquery.RuntimeQuery{Since: t0.Add(7 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Ingress) != 1 || r.Ingress[0].Requests != 110 || r.Ingress[0].Classes["2xx"] != 100 {
		t.Errorf("ingress since t0+7m: %+v", r.Ingress)
	}

	var apiErr *apiclient.Error
	if _, err := c.Runtime(context.Background(), "ghost", telquery.RuntimeQuery{}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("unknown deployment: %v, want 404", err)
	}
	resp, err := http.Get(srv.URL + "/api/v1/deployments/acme-prod/runtime?since=yesterday")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d", resp.StatusCode)
	}
	if _, err := c.Runtime(context.Background(), "acme-prod", telquery.RuntimeQuery{Since: t0, Until: t0}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Errorf("empty window: %v, want 400", err)
	}
}
