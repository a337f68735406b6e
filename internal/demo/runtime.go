package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/ingress"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/s3bucket"
	"github.com/periscope-dev/periscope/internal/agent/runtime/supervisor"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
)

// The demo's runtime signals: what each deployment's agent collects without
// instrumentation, from sources that need no server, so the demo runs on a
// machine with Go alone.
const (
	// runtimeEvery is how often the agents collect them: the agent's default
	// is 30s, but a newcomer should see figures within seconds of the start.
	runtimeEvery = 5 * time.Second
	// ingressName names every deployment's ingress proxy, in front of its shop.
	ingressName = "shop"
	// statusHeader carries the status the simulation drew for a request through
	// the ingress proxy to the shop, which answers with it: the proxy then
	// counts the failures the services' traces show.
	statusHeader = "Demo-Status"
	// crashingWorker is the workload that crash-loops on crashLoopOn.
	crashingWorker = "invoice-worker"
	// crashLoopOn is the deployment whose invoice worker cannot reach its
	// queue broker and exits at once, every time.
	crashLoopOn = "stark-prod"
	// crashLine is the last line the crashing worker writes to stderr: what the
	// manager shows as its last error.
	crashLine = "invoice-worker: fatal: cannot reach the invoices queue at mq.internal:5672: connection refused"
)

// workloads returns what the deployment's agent supervises: a mailer with two
// replicas that runs, and on crashLoopOn the invoice worker that exits with
// status 3 as soon as it starts. Both use only /bin/sh and sleep, which every
// Debian has.
func workloads(id string) ([]config.Workload, error) {
	if id != crashLoopOn {
		return nil, nil
	}
	sh, err := absPath("sh")
	if err != nil {
		return nil, fmt.Errorf("the demo's workloads run sh: %w", err)
	}
	sleep, err := absPath("sleep")
	if err != nil {
		return nil, fmt.Errorf("the demo's workloads run sleep: %w", err)
	}
	return []config.Workload{
		{Name: "mailer", Command: sleep, Args: []string{"86400"}, Replicas: 2, StopTimeout: 2 * time.Second},
		{Name: crashingWorker, Command: sh, Args: []string{"-c",
			`echo "invoice-worker: connecting to the invoices queue at mq.internal:5672" >&2; echo "` + crashLine + `" >&2; exit 3`},
			Backoff: config.WorkloadBackoff{Initial: time.Second, Max: 20 * time.Second}, StopTimeout: 2 * time.Second},
	}, nil
}

// absPath finds name on PATH and returns its absolute path: workloads and
// commands are declared by absolute path, never looked up by a shell.
func absPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		p, err = filepath.Abs(p)
	}
	return p, err
}

// agentRuntime is the runtime side of one simulated deployment's agent, built
// from the agent's own parts: its shop (the vendor's sample HTTP service) on
// 127.0.0.1 behind the agent's ingress proxy, a filesystem source on the
// agent's data directory, the supervisor for its workloads, and the
// collector that runs them every runtimeEvery. The collector's figures go to
// the manager through send, as the demo's application telemetry does; the
// health of the watched components goes through the agent's check-in, as a
// real agent's does.
type agentRuntime struct {
	s    runtimeSettings
	shop *localService // nil when the shop is the sample service at s.upstream
	// otlp is the agent's OTLP/HTTP endpoint, for a deployment running the
	// sample service over the SDK (nil otherwise).
	otlp *localService

	// Set by Start: the proxy's upstream is known once the shop listens.
	proxy *ingress.Proxy
	sup   *supervisor.Supervisor // nil without workloads
	col   *runtime.Collector
}

// runtimeSettings are what a deployment's runtime borrows from the demo.
type runtimeSettings struct {
	// interval is how often the collector runs; 0 means runtimeEvery.
	interval  time.Duration
	dataDir   string
	workloads []config.Workload
	health    runtime.HealthSink
	send      consumer.Consumer
	red       *redact.Policy
	clock     clock.Clock
	log       *slog.Logger
	// upstream, when set, is the address (host:port) the deployment's
	// sample service listens on, in front of which the ingress proxy sits
	// instead of the demo's canned shop; it stays the same across release
	// switches. The agent then also serves OTLP/HTTP for the service's SDK,
	// forwarding through send as the agent's pipeline would.
	upstream *heldAddr
	// queues and buckets are the runtime sources of the sample service's
	// order queue and invoice bucket.
	queues  []config.QueueSource
	buckets []config.StorageSource
}

// otlpMaxBytes bounds one OTLP request from a sample service: its SDK
// exports at most half of a small queue at once.
const otlpMaxBytes = 4 << 20

// newAgentRuntime returns a deployment's runtime; it starts nothing.
func newAgentRuntime(s runtimeSettings) *agentRuntime {
	if s.upstream != nil {
		mux := http.NewServeMux()
		(&receiver.HTTP{Consumer: s.send, MaxBytes: otlpMaxBytes, Limiter: receiver.NewLimiter(4)}).Register(mux)
		return &agentRuntime{s: s, otlp: newLocalService(mux, s.log)}
	}
	return &agentRuntime{s: s, shop: newLocalService(http.HandlerFunc(serveShop), s.log)}
}

// shopRoutes are the route templates of the demo's services, so the proxy
// records order ids as one route.
func (rt *agentRuntime) shopRoutes() []string {
	if rt.s.upstream != nil {
		return sampleapp.Routes
	}
	var rs []string
	for _, r := range routes {
		rs = append(rs, r.route)
	}
	return rs
}

// serveShop is the deployment's shop: it answers each request with the status
// the simulation drew for it.
func serveShop(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.Header.Get(statusHeader))
	if err != nil || code < 200 || code > 599 {
		code = http.StatusOK
	}
	w.WriteHeader(code)
	fmt.Fprintln(w, http.StatusText(code))
}

// Start starts the shop, then the proxy in front of it, the workloads, and
// the collector last, whose first round then finds them all running.
func (rt *agentRuntime) Start(ctx context.Context) error {
	var err error
	if rt.shop != nil {
		err = rt.shop.Start(ctx)
	} else {
		err = rt.otlp.Start(ctx)
	}
	if err != nil {
		return err
	}
	err = rt.build()
	if err == nil {
		err = rt.proxy.Start(ctx)
	}
	if err == nil && rt.sup != nil {
		err = rt.sup.Start(ctx)
	}
	if err == nil && rt.s.upstream == nil {
		// Beside the sample service, the collector starts with it
		// (StartCollector): its first round would find the service's
		// stream and bucket missing and report them down.
		err = rt.col.Start(ctx)
	}
	if err != nil {
		// Every part's Shutdown is safe without its Start.
		uctx, cancel := undoContext(ctx)
		defer cancel()
		return errors.Join(fmt.Errorf("runtime signals: %w", err), rt.Shutdown(uctx))
	}
	return nil
}

// build makes the sources and their collector, for the shop now listening.
func (rt *agentRuntime) build() error {
	s := rt.s
	var upstream string
	if rt.shop != nil {
		upstream = rt.shop.URL()
	} else {
		upstream = "http://" + s.upstream.addr
	}
	var err error
	rt.proxy, err = ingress.New(ingress.Config{Name: ingressName, Listen: "127.0.0.1:0", Upstream: upstream,
		Routes: rt.shopRoutes()}, ingress.Settings{Logger: s.log, Clock: s.clock})
	if err != nil {
		return err
	}
	fs, err := storage.New(config.StorageSource{Kind: config.StorageFilesystem, Name: "data", Paths: []string{s.dataDir}}, nil)
	if err != nil {
		return err
	}
	sources := []runtime.Source{rt.proxy, fs}
	// The sample service's queue and bucket, measured as the agent's
	// runtime config would have it (sources.go in the agent).
	for _, q := range s.queues {
		src, err := queues.FromConfig(q, nil)
		if err != nil {
			return err
		}
		sources = append(sources, src)
	}
	for _, b := range s.buckets {
		src, err := s3bucket.New(b, nil)
		if err != nil {
			return err
		}
		sources = append(sources, src)
	}
	var col *runtime.Collector
	if len(s.workloads) > 0 {
		rt.sup, err = supervisor.New(supervisor.Config{Workloads: s.workloads}, supervisor.Settings{
			// Not s.log: the crash-looping worker would warn on the newcomer's
			// terminal at every restart; the manager shows its restarts and
			// last error, which is the point.
			Logger: slog.New(slog.DiscardHandler), Clock: s.clock, Env: []string{"PATH=" + os.Getenv("PATH")},
			Redact: func(line string) string { return s.red.Text(line, "workload.stderr", nil) },
			// A crash reaches the manager at once, as the agent reports it; col
			// is set before the supervisor starts.
			OnChange: func(c runtime.Component) { col.Report(c) },
		})
		if err != nil {
			return err
		}
		sources = append(sources, rt.sup)
	}
	host, _ := os.Hostname()
	every := s.interval
	if every <= 0 {
		every = runtimeEvery
	}
	col, err = runtime.New(runtime.Settings{Sources: sources, Interval: every, Consumer: s.send, Health: s.health,
		Resource: map[string]string{"service.name": opamp.ServiceName, "service.version": opamp.Version, "host.name": host},
		Clock:    s.clock, Logger: s.log})
	rt.col = col
	return err
}

// StartCollector starts collecting beside a sample service, once it runs;
// it does nothing for a deployment without one, whose collector Start
// started.
func (rt *agentRuntime) StartCollector(ctx context.Context) error {
	if rt.s.upstream == nil {
		return nil
	}
	return rt.col.Start(ctx)
}

// ShopURL is where the deployment's traffic goes: its ingress proxy. Valid
// after Start.
func (rt *agentRuntime) ShopURL() string { return "http://" + rt.proxy.Addr() }

// OTLPURL is the agent's OTLP/HTTP base URL for the deployment's sample
// service, "" when it runs none. Valid after Start.
func (rt *agentRuntime) OTLPURL() string {
	if rt.otlp == nil {
		return ""
	}
	return rt.otlp.URL()
}

// Shutdown stops the collector first, then the workloads, the proxy and the
// shop. Safe without Start.
func (rt *agentRuntime) Shutdown(ctx context.Context) error {
	var errs []error
	if rt.col != nil {
		errs = append(errs, rt.col.Shutdown(ctx))
	}
	errs = append(errs, rt.stopWorkloads(ctx))
	if rt.proxy != nil {
		errs = append(errs, rt.proxy.Shutdown(ctx))
	}
	if rt.shop != nil {
		errs = append(errs, rt.shop.Shutdown(ctx))
	}
	if rt.otlp != nil {
		errs = append(errs, rt.otlp.Shutdown(ctx))
		rt.s.upstream.free() // in case no service ever started there
	}
	return errors.Join(errs...)
}

func (rt *agentRuntime) stopWorkloads(ctx context.Context) error {
	if rt.sup == nil {
		return nil
	}
	return rt.sup.Shutdown(ctx)
}
