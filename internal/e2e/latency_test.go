package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime/ingress"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
)

// semconvBounds are the bucket bounds, in seconds, the ingress proxy records
// http.server.request.duration with (the semantic conventions').
var semconvBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// bucketOf is the bucket (lower, upper] of semconvBounds holding d; the
// overflow bucket's upper bound is the highest finite one, which is what a
// percentile in it answers.
func bucketOf(d time.Duration) (lower, upper float64) {
	s := d.Seconds()
	i, _ := slices.BinarySearch(semconvBounds, s)
	switch {
	case i == len(semconvBounds):
		return semconvBounds[i-1], semconvBounds[i-1]
	case i == 0:
		return 0, semconvBounds[0]
	}
	return semconvBounds[i-1], semconvBounds[i]
}

// TestLatencyPercentilesMatchTheClientsTimings sends requests of known
// latencies through a real ingress proxy, hands its metrics to a real manager
// as the agent would, and checks that the percentiles the manager's API
// answers, per route and in total, lie in the buckets the client's own timings
// say: no lower than the bucket of the upstream's delay, no higher than the
// bucket of what the client measured (the proxy's figure lies in between).
func TestLatencyPercentilesMatchTheClientsTimings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	delays := map[string]time.Duration{"/fast": 15 * time.Millisecond, "/slow": 150 * time.Millisecond}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delays[r.URL.Path]) // the service's own work, the figure under test
		io.WriteString(w, "done")
	}))
	defer upstream.Close()
	p, err := ingress.New(ingress.Config{Name: "shop", Listen: "127.0.0.1:0", Upstream: upstream.URL, Routes: []string{"/fast", "/slow"}},
		ingress.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())

	m := startTelemetryManager(t, "127.0.0.1:0", t.TempDir(), nil)
	defer m.Shutdown(context.Background())
	token := createAcme(t, m)

	// 60 fast and 40 slow requests, four at a time; the client times each.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	timings := map[string][]time.Duration{}
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for path := range jobs {
				start := time.Now()
				resp, err := client.Get("http://" + p.Addr() + path)
				if err != nil {
					t.Error(err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				mu.Lock()
				timings[path] = append(timings[path], d)
				mu.Unlock()
			}
		})
	}
	for i := range 100 {
		if i%5 < 3 {
			jobs <- "/fast"
		} else {
			jobs <- "/slow"
		}
	}
	close(jobs)
	wg.Wait()
	if t.Failed() {
		return
	}

	// One collection round, sent as the agent's forwarder sends it.
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr(otlp.AttrDeploymentID, "acme-prod")
	rm.Resource().Attributes().PutStr("service.name", "periscope-agent")
	if err := p.Collect(ctx, time.Now(), rm.ScopeMetrics().AppendEmpty().Metrics()); err != nil {
		t.Fatal(err)
	}
	body, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, m.URL()+otlp.Metrics.Path(), bytes.NewReader(body))
	req.Header.Set("Content-Type", otlp.ContentTypeProto)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(otlp.BatchHeader, "latency-e2e:1-1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("the manager answered the metrics with %s", resp.Status)
	}

	// within checks a percentile against the order statistic of its rank:
	// between the bucket of that rank's upstream delay and the bucket of that
	// rank's client timing.
	within := func(what string, got *float64, q float64, delays, client []time.Duration) error {
		if got == nil {
			return fmt.Errorf("%s: no percentile", what)
		}
		k := max(int(math.Ceil(q*float64(len(client))))-1, 0)
		slices.Sort(delays)
		slices.Sort(client)
		lo, _ := bucketOf(delays[k])
		_, hi := bucketOf(client[k])
		if *got < lo*1000 || *got > hi*1000 {
			return fmt.Errorf("%s = %.3f ms, want within [%.0f, %.0f] ms (the upstream took %v, the client measured %v)",
				what, *got, lo*1000, hi*1000, delays[k], client[k])
		}
		return nil
	}
	repeat := func(d time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	api := apiclient.New(m.URL(), adminToken)
	eventually(t, 30*time.Second, "the percentiles in the runtime document", func() error {
		r, err := api.Runtime(ctx, "acme-prod", telquery.RuntimeQuery{})
		if err != nil {
			return err
		}
		if len(r.Ingress) != 2 || r.IngressTotal == nil || r.IngressTotal.Requests != 100 {
			return fmt.Errorf("ingress %+v", r.Ingress)
		}
		all, allDelays := []time.Duration{}, []time.Duration{}
		var errs []error
		for _, rt := range r.Ingress {
			c := timings[rt.Route]
			d := repeat(delays[rt.Route], len(c))
			all, allDelays = append(all, c...), append(allDelays, d...)
			for _, pc := range []struct {
				q   float64
				got *float64
			}{{0.5, rt.P50MS}, {0.95, rt.P95MS}, {0.99, rt.P99MS}} {
				errs = append(errs, within(fmt.Sprintf("%s p%g", rt.Route, pc.q*100), pc.got, pc.q, d, c))
			}
		}
		tot := r.IngressTotal
		errs = append(errs, within("total p50", tot.P50MS, 0.5, allDelays, all), within("total p95", tot.P95MS, 0.95, allDelays, all),
			within("total p99", tot.P99MS, 0.99, allDelays, all))
		for _, err := range errs {
			if err != nil {
				t.Error(err) // the figures are stored: they will not change
			}
		}
		return nil
	})
}
