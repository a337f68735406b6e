package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/testenv"
)

const runtimeRedis = "127.0.0.1:6379"

// TestRuntimeSignalsReachTheManager runs a real agent process whose
// configuration file names runtime sources (a filesystem volume, a Redis
// stream, an ingress proxy and a Redis server that is down), and checks
// through the manager's API that their figures arrive tagged with the
// deployment, exact where the test knows the state, and that the source that
// is down shows in the deployment's health with its reason.
func TestRuntimeSignalsReachTheManager(t *testing.T) {
	testenv.Server(t, "Redis", runtimeRedis)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A stream of 50 entries, a group that read 20 of them and acknowledged 15.
	rc := redis.NewClient(&redis.Options{Addr: runtimeRedis})
	defer rc.Close()
	stream := fmt.Sprintf("periscope_e2e_jobs_%d", time.Now().UnixNano())
	t.Cleanup(func() { rc.Del(context.Background(), stream) })
	for range 50 {
		if err := rc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{"job", "x"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.XGroupCreate(ctx, stream, "workers", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := rc.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "workers", Consumer: "w1", Streams: []string{stream, ">"}, Count: 20}).Result()
	if err != nil || len(res[0].Messages) != 20 {
		t.Fatalf("read the group: %v", err)
	}
	var acked []string
	for _, m := range res[0].Messages[:15] {
		acked = append(acked, m.ID)
	}
	if err := rc.XAck(ctx, stream, "workers", acked...).Err(); err != nil {
		t.Fatal(err)
	}

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/fail":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer upstream.Close()

	m := startTelemetryManager(t, "127.0.0.1:0", t.TempDir(), nil)
	defer m.Shutdown(context.Background())
	token := createAcme(t, m)
	since := time.Now().Add(-time.Minute)

	dir := t.TempDir()
	volume := filepath.Join(dir, "volume")
	if err := os.Mkdir(volume, 0o700); err != nil {
		t.Fatal(err)
	}
	proxy := freePort(t)
	down := testenv.ClosedAddr(t)
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
runtime:
  interval: 1s
  timeout: 1s
  queues:
    - {kind: redis-stream, name: jobs, url: "redis://%s/0", stream: %s, groups: [workers]}
  storage:
    - {kind: filesystem, name: data, paths: [%q]}
    - {kind: redis, name: down, url: "redis://%s"}
  ingress:
    - {name: shop, listen: %q, upstream: %q, routes: ["/ok", "/fail"]}
`, runtimeRedis, stream, volume, down, proxy, upstream.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	ag := runAgent(t, freePort(t), freePort(t), "--config", cfgPath, "--manager", m.URL(), "--token", token, "--release", "1.8.0",
		"--cloud", "aws", "--region", "us-east-1", "--platform", "aws_ecs", "--transport", "http",
		"--heartbeat-interval", "1s", "--data-dir", filepath.Join(dir, "agent"))
	defer ag.stop(t)

	// The proxy binds just after the port runAgent waited for.
	eventually(t, 10*time.Second, "the ingress proxy listening", func() error {
		c, err := net.Dial("tcp", proxy)
		if err == nil {
			c.Close()
		}
		return err
	})
	// 7 answered 2xx, 3 answered 4xx, 2 answered 5xx, all through the proxy.
	for path, n := range map[string]int{"/ok": 7, "/missing": 3, "/fail": 2} {
		for range n {
			resp, err := http.Get("http://" + proxy + path)
			if err != nil {
				t.Fatalf("through the ingress proxy: %v", err)
			}
			resp.Body.Close()
		}
	}

	api := apiclient.New(m.URL(), adminToken)
	// newest returns each group's value in the newest step, for acme-prod:
	// the last value of each series in the step, summed over the group's
	// series.
	newest := func(name, groupBy string) (map[string]float64, error) {
		mt, err := api.Metric(ctx, telquery.MetricQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: since}, Name: name,
			GroupBy: groupBy, Agg: telquery.AggLast})
		if err != nil {
			return nil, err
		}
		got := map[string]float64{}
		for _, s := range mt.Series {
			if len(s.Points) > 0 {
				got[s.Group] = s.Points[len(s.Points)-1].Value
			}
		}
		return got, nil
	}
	expect := func(what, name, groupBy string, want map[string]float64) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() error {
			got, err := newest(name, groupBy)
			if err != nil {
				return err
			}
			for k, v := range want {
				if got[k] != v {
					return fmt.Errorf("%s by %s: %v, want %v", name, groupBy, got, want)
				}
			}
			return nil
		})
	}
	expect("the stream's depth", "periscope.queue.depth", "messaging.destination.name", map[string]float64{stream: 50})
	expect("the group's lag", "periscope.queue.consumer.pending", "messaging.consumer.group.name", map[string]float64{"workers": 30})
	expect("the group's unacknowledged", "periscope.queue.consumer.ack_pending", "messaging.consumer.group.name", map[string]float64{"workers": 5})
	expect("requests per status class", "periscope.ingress.requests", "periscope.http.status_class", map[string]float64{"2xx": 7, "4xx": 3, "5xx": 2})
	// Several rounds first: each round must extend the sources' series, not
	// start new ones that the newest step would add up.
	eventually(t, 30*time.Second, "six rounds stored", func() error {
		names, err := api.MetricNames(ctx, telquery.MetricNamesQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: since}})
		if err != nil {
			return err
		}
		for _, n := range names.Metrics {
			if n.Name == "periscope.source.up" && n.Points >= 6*4 {
				return nil
			}
		}
		return fmt.Errorf("metrics %+v", names.Metrics)
	})
	expect("every source's state", "periscope.source.up", "periscope.source.name",
		map[string]float64{"redis-stream/jobs": 1, "filesystem/data": 1, "ingress/shop": 1, "redis/down": 0})
	eventually(t, 30*time.Second, "the volume's usage", func() error {
		got, err := newest("system.filesystem.usage", "system.filesystem.state")
		if err != nil {
			return err
		}
		if got["used"] <= 0 || got["free"] <= 0 {
			return fmt.Errorf("usage by state %v, want used and free bytes", got)
		}
		return nil
	})

	eventually(t, 30*time.Second, "the source that is down in the deployment's health", func() error {
		d, err := api.Deployment(ctx, "acme-prod")
		if err != nil {
			return err
		}
		c, ok := d.Health.Components["source redis/down"]
		if !ok || c.Healthy || !strings.Contains(c.LastError, "connection refused") {
			return fmt.Errorf("health %+v", d.Health)
		}
		if up, ok := d.Health.Components["source redis-stream/jobs"]; ok && !up.Healthy {
			return fmt.Errorf("a source that collects is unhealthy: %+v", up)
		}
		return nil
	})
	// The same state in one document, as the dashboard and `periscope runtime`
	// show it: the proxy started within the window, so its counts are whole.
	eventually(t, 30*time.Second, "the runtime document", func() error {
		r, err := api.Runtime(ctx, "acme-prod", telquery.RuntimeQuery{})
		if err != nil {
			return err
		}
		var depth, lag, ackPending float64
		for _, q := range r.Queues {
			switch {
			case q.Destination == stream && q.Group == "" && q.Depth != nil:
				depth = *q.Depth
			case q.Destination == stream && q.Group == "workers" && q.Pending != nil && q.AckPending != nil:
				lag, ackPending = *q.Pending, *q.AckPending
			}
		}
		classes := map[string]int64{}
		for _, rt := range r.Ingress {
			for k, n := range rt.Classes {
				classes[k] += n
			}
		}
		if depth != 50 || lag != 30 || ackPending != 5 || classes["2xx"] != 7 || classes["4xx"] != 3 || classes["5xx"] != 2 ||
			len(r.Sources) == 0 || r.Sources[0].Name != "redis/down" || r.Sources[0].Up {
			return fmt.Errorf("runtime document %+v", r)
		}
		return nil
	})
}
