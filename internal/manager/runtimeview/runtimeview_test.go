package runtimeview_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview/runtimetest"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func TestTheDocumentHasTheAgentsFiguresExactly(t *testing.T) {
	st := runtimetest.FedStore(t, t0, "acme-prod")
	h := fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{
		"worker/0":      {Healthy: true, Status: "running", Watched: true},
		"worker/1":      {Healthy: false, Status: "crash-loop", Restarts: 4, LastError: "exit status 3: db connection refused", Watched: true},
		"source nats/x": {Healthy: false, LastError: "dial tcp: connection refused"},
	}}
	r, err := runtimeview.Load(context.Background(), st, h, telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.MarshalIndent(r, "", "  ")
	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s wrong in\n%s", what, got)
		}
	}
	check("window", r.Since.Equal(t0.Add(2*time.Minute)) && r.Until.Equal(t0.Add(12*time.Minute)))
	check("components, down first", len(r.Components) == 3 && r.Components[0].Name == "source nats/x" &&
		r.Components[1].Name == "worker/1" && r.Components[1].Restarts == 4 && r.Components[1].Status == "crash-loop" &&
		r.Components[1].LastError == "exit status 3: db connection refused" && r.Components[2].Healthy)
	check("sources, down first", len(r.Sources) == 2 && r.Sources[0].Name == "redis/cache" && !r.Sources[0].Up &&
		r.Sources[0].Error == "NOAUTH Authentication required" && r.Sources[1].Name == "nats/orders" && r.Sources[1].Up)
	// The proxy's counters: round i has sent 100*(i+1) 2xx and 10*(i+1) 5xx
	// requests to /orders/{id}; the window's increase is round 3 minus round 1.
	check("ingress", len(r.Ingress) == 1 && r.Ingress[0].Ingress == "shop" && r.Ingress[0].Route == "/orders/{id}" &&
		r.Ingress[0].Requests == 220 && r.Ingress[0].Classes["2xx"] == 200 && r.Ingress[0].Classes["5xx"] == 20)
	// Histogram sums: 2xx take 0.01 s each, 5xx 0.1 s: (200*0.01 + 20*0.1)/220 s.
	check("mean latency", r.Ingress[0].MeanMS == 18.182)
	// Buckets: 200 in (5 ms, 10 ms], 20 in (75 ms, 100 ms]. p50 is rank 110 of
	// the first; p95 rank 9 and p99 rank 17.8 of the 20 in the second.
	check("latency percentiles", eq(r.Ingress[0].P50MS, 7.75) && eq(r.Ingress[0].P95MS, 86.25) && eq(r.Ingress[0].P99MS, 97.25))
	check("ingress total", r.IngressTotal != nil && r.IngressTotal.Requests == 220 && r.IngressTotal.Classes["5xx"] == 20 &&
		r.IngressTotal.MeanMS == 18.182 && eq(r.IngressTotal.P50MS, 7.75) && eq(r.IngressTotal.P99MS, 97.25))
	check("queues", len(r.Queues) == 2 && r.Queues[0].Group == "" && *r.Queues[0].Depth == 300 && *r.Queues[0].Bytes == 3000 &&
		*r.Queues[0].OldestAgeS == 12.5 && r.Queues[1].Group == "billing" && *r.Queues[1].Pending == 300 && *r.Queues[1].AckPending == 5 &&
		r.Queues[1].Depth == nil)
	check("bucket", len(r.Storage.Buckets) == 1 && r.Storage.Buckets[0].Objects == 1000 && r.Storage.Buckets[0].Bytes == 4096000 &&
		r.Storage.Buckets[0].Partial && r.Storage.Buckets[0].Source == "s3/exports")
	check("redis", len(r.Storage.Redis) == 1 && r.Storage.Redis[0].MemoryUsed == 1<<20 && r.Storage.Redis[0].MemoryLimit == nil &&
		r.Storage.Redis[0].Keys["0"] == 42)
	check("postgres", len(r.Storage.PostgreSQL) == 1 && r.Storage.PostgreSQL[0].Bytes == 9e6 && len(r.Storage.PostgreSQL[0].Tables) == 2 &&
		r.Storage.PostgreSQL[0].Tables[0].Name == "public.orders" && r.Storage.PostgreSQL[0].Tables[0].Bytes == 5e6 &&
		*r.Storage.PostgreSQL[0].Tables[0].Rows == 1234 && r.Storage.PostgreSQL[0].Tables[1].Rows == nil)
	check("filesystem", len(r.Storage.Filesystems) == 1 && r.Storage.Filesystems[0].Path == "/var/lib/app" &&
		r.Storage.Filesystems[0].Used == 600 && r.Storage.Filesystems[0].Free == 300 && r.Storage.Filesystems[0].Reserved == 100 &&
		r.Storage.Filesystems[0].Limit == 1000 && r.Storage.Filesystems[0].Utilization == 2.0/3 && r.Storage.Filesystems[0].Mountpoint == "/var")
	if r.Empty() {
		t.Error("a deployment with runtime signals is not empty")
	}
}

func TestAnAppsOwnHTTPMetricsAreNotIngressTraffic(t *testing.T) {
	r := runtimeview.Build("acme-prod", fleet.Health{}, telquery.RuntimeMetrics{Series: []telquery.RuntimeSeries{
		{Name: "http.server.request.duration", Kind: "histogram", Count: 5, Attrs: map[string]any{"http.route": "/x"}},
	}})
	if len(r.Ingress) != 0 || !r.Empty() {
		t.Fatalf("an app's histogram became ingress traffic: %+v", r)
	}
}

func eq(p *float64, want float64) bool { return p != nil && math.Abs(*p-want) < 1e-9 }

// duration is a cumulative http.server.request.duration series of ingress
// shop's route with these bucket counts and baseline (nil: none).
func duration(route string, counts []uint64, base []uint64) telquery.RuntimeSeries {
	s := telquery.RuntimeSeries{Name: "http.server.request.duration", Kind: "histogram", Unit: "s",
		Attrs: map[string]any{"periscope.ingress.name": "shop", "http.route": route, "periscope.http.status_class": "2xx"}}
	total := func(c []uint64) (n uint64) {
		for _, v := range c {
			n += v
		}
		return n
	}
	s.Count, s.Sum = total(counts), float64(total(counts))*0.05
	if counts != nil {
		s.Histogram = &telquery.Histogram{Bounds: runtimetest.DurationBounds, Counts: counts}
	}
	if base != nil {
		s.HasBase, s.BaseCount, s.BaseSum = true, total(base), float64(total(base))*0.05
		s.BaseHistogram = &telquery.Histogram{Bounds: runtimetest.DurationBounds, Counts: base}
	}
	return s
}

func buckets(pairs ...uint64) []uint64 {
	out := make([]uint64, len(runtimetest.DurationBounds)+1)
	for i := 0; i < len(pairs); i += 2 {
		out[pairs[i]] = pairs[i+1]
	}
	return out
}

func TestPercentilesPerRouteAndInTotal(t *testing.T) {
	r := runtimeview.Build("acme-prod", fleet.Health{}, telquery.RuntimeMetrics{Series: []telquery.RuntimeSeries{
		// 100 new requests in (25 ms, 50 ms] since the baseline.
		duration("/a", buckets(3, 150), buckets(3, 50)),
		// The agent restarted: the newest point counts 100 in (100 ms, 250 ms]
		// since then, fewer than the baseline's 500.
		duration("/b", buckets(6, 100), buckets(6, 500)),
	}})
	if len(r.Ingress) != 2 {
		t.Fatalf("ingress: %+v", r.Ingress)
	}
	a, b := r.Ingress[0], r.Ingress[1]
	if a.Requests != 100 || !eq(a.P50MS, 37.5) || !eq(a.P99MS, 49.75) {
		t.Errorf("/a: %+v p50 %v p99 %v, want 100 requests, 37.5 and 49.75 ms", a, a.P50MS, a.P99MS)
	}
	if b.Requests != 100 || !eq(b.P50MS, 175) {
		t.Errorf("/b after a restart: %+v p50 %v, want 100 requests, 175 ms", b, b.P50MS)
	}
	// Together: 100 in (25, 50], 100 in (100, 250]; the median is rank 100,
	// the top of the first; p95 rank 90 of the second.
	tot := r.IngressTotal
	if tot == nil || tot.Requests != 200 || !eq(tot.P50MS, 50) || !eq(tot.P95MS, 235) {
		t.Errorf("total: %+v", tot)
	}
}

func TestNoPercentilesWithoutBuckets(t *testing.T) {
	// /old was stored before the manager kept buckets: count and sum only.
	old := duration("/old", buckets(3, 40), nil)
	old.Histogram = nil
	// /upgraded has buckets now but not at its baseline: its window's share
	// of them is unknown.
	upgraded := duration("/upgraded", buckets(3, 80), buckets(3, 50))
	upgraded.BaseHistogram = nil
	r := runtimeview.Build("acme-prod", fleet.Health{}, telquery.RuntimeMetrics{Series: []telquery.RuntimeSeries{
		duration("/a", buckets(3, 150), nil), old, upgraded,
	}})
	if len(r.Ingress) != 3 || r.Ingress[0].P50MS == nil || r.Ingress[1].P50MS != nil || r.Ingress[1].MeanMS != 50 ||
		r.Ingress[2].Requests != 30 || r.Ingress[2].P50MS != nil {
		t.Errorf("ingress: %+v", r.Ingress)
	}
	// A total without /old's requests would be wrong, so there is none.
	if tot := r.IngressTotal; tot == nil || tot.Requests != 220 || tot.P50MS != nil {
		t.Errorf("total: %+v", tot)
	}
}
