package demo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/runtimeview"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// TestDemoRuntime runs the demo and reads, through the manager's API, the
// runtime signals its agents collect: stark-prod's invoice worker crash-loops,
// so stark-prod is unhealthy naming it with its restarts and last error line,
// and a healthy deployment's shop shows its traffic through the agent's
// ingress proxy by status class, its data volume and its sample service's
// invoice bucket, and tyrell-prod's order queue backlog grows.
func TestDemoRuntime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r := startDemo(t, ctx, Options{})
	api := apiclient.New(r.url, r.token)

	// The mailers are waited for too: the first collection round can see them
	// before their processes start, and under load a later round reaches the
	// manager after the worker's first restart.
	crashing := awaitRuntime(t, ctx, api, crashLoopOn, "its invoice worker restarted with its last error, the mailers running", func(rt apitypes.Runtime) error {
		c, ok := component(rt, crashingWorker+"/0")
		if !ok || c.Healthy || c.Restarts < 1 || !strings.Contains(c.LastError, crashLine) {
			return fmt.Errorf("component %s/0: %+v", crashingWorker, c)
		}
		for _, name := range []string{"mailer/0", "mailer/1"} {
			if m, ok := component(rt, name); !ok || !m.Healthy || m.Status != "running" {
				return fmt.Errorf("%s: %+v, want running and healthy beside the crashing worker", name, m)
			}
		}
		return nil
	})
	c, _ := component(crashing, crashingWorker+"/0")
	t.Logf("%s: %s %s, %d restarts: %s", crashLoopOn, c.Name, c.Status, c.Restarts, c.LastError)
	if !strings.HasPrefix(c.LastError, "exit status 3: ") {
		t.Errorf("last error %q, want the exit status first", c.LastError)
	}
	d, err := api.Deployment(ctx, crashLoopOn)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "unhealthy" || d.StatusReasonCode != "components-down" ||
		!strings.Contains(d.StatusReason, crashingWorker+"/0") || !strings.Contains(d.StatusReason, crashLine) {
		t.Errorf("%s is %s (%s): %q; want unhealthy, components down, naming the worker and its error", crashLoopOn, d.Status, d.StatusReasonCode, d.StatusReason)
	}

	const healthy = "acme-prod"
	rt := awaitRuntime(t, ctx, api, healthy, "its shop's traffic through the ingress proxy and its volume", func(rt apitypes.Runtime) error {
		if ok := requestsBy(rt, "2xx"); ok == 0 {
			return fmt.Errorf("no 2xx at the ingress: %+v", rt.Ingress)
		}
		if len(rt.Storage.Filesystems) == 0 {
			return errors.New("no filesystem")
		}
		return nil
	})
	for _, route := range rt.Ingress {
		if route.Ingress != ingressName || strings.Contains(route.Route, "ord_") {
			t.Errorf("ingress route %+v: want the shop's, by route template", route)
		}
		var sum int64
		for _, n := range route.Classes {
			sum += n
		}
		if sum != route.Requests {
			t.Errorf("route %s: %d requests, but %v by status class", route.Route, route.Requests, route.Classes)
		}
	}
	fs := rt.Storage.Filesystems[0]
	if want := filepath.Join(r.dir, "agents", healthy); fs.Path != want || fs.Limit <= 0 || fs.Used <= 0 {
		t.Errorf("filesystem %+v, want the agent's data directory %s with its volume's size", fs, want)
	}
	if _, ok := component(rt, crashingWorker+"/0"); ok {
		t.Errorf("%s reports %s, which runs on %s alone", healthy, crashingWorker, crashLoopOn)
	}

	// The sample service's invoice bucket fills as its shoppers check out.
	awaitRuntime(t, ctx, api, healthy, "invoices in its bucket", func(rt apitypes.Runtime) error {
		for _, b := range rt.Storage.Buckets {
			if b.Bucket == bucketName(healthy) && b.Objects > 0 && b.Bytes > 0 {
				return nil
			}
		}
		return fmt.Errorf("buckets %+v", rt.Storage.Buckets)
	})
	// tyrell-prod's worker cannot keep up: its consumer's backlog grows
	// from one collection to a later one.
	pending := func(rt apitypes.Runtime) (float64, bool) {
		for _, q := range rt.Queues {
			if q.Destination == streamName(backlogOn) && q.Pending != nil {
				return *q.Pending, true
			}
		}
		return 0, false
	}
	first := awaitRuntime(t, ctx, api, backlogOn, "its queue's backlog", func(rt apitypes.Runtime) error {
		if n, ok := pending(rt); !ok || n < 1 {
			return fmt.Errorf("queues %+v", rt.Queues)
		}
		return nil
	})
	was, _ := pending(first)
	awaitRuntime(t, ctx, api, backlogOn, "its queue's backlog growing", func(rt apitypes.Runtime) error {
		if n, _ := pending(rt); n <= was {
			return fmt.Errorf("backlog %v, was %v", n, was)
		}
		return nil
	})
	r.stop(t)
}

// awaitRuntime polls deployment id's runtime state until check accepts it,
// within 30 seconds (a few rounds of the agents' collection), and returns it.
func awaitRuntime(t *testing.T, ctx context.Context, api *apiclient.Client, id, what string, check func(apitypes.Runtime) error) apitypes.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		rt, err := api.Runtime(ctx, id, telquery.RuntimeQuery{})
		if err == nil {
			if err = check(rt); err == nil {
				return rt
			}
		}
		if !clock.Sleep(ctx, 200*time.Millisecond) {
			t.Fatalf("%s: waited for %s: %v", id, what, err)
		}
	}
}

// component finds the named component.
func component(rt apitypes.Runtime, name string) (runtimeview.Component, bool) {
	for _, c := range rt.Components {
		if c.Name == name {
			return c, true
		}
	}
	return runtimeview.Component{}, false
}

// requestsBy counts the requests of status class at every ingress route.
func requestsBy(rt apitypes.Runtime, class string) int64 {
	var n int64
	for _, r := range rt.Ingress {
		n += r.Classes[class]
	}
	return n
}
