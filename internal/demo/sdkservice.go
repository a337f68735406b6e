package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/demo/infra"
	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
)

// The demo's live application data comes from the vendor's sample service
// (internal/demo/sampleapp), one instance per deployment at the release its
// agent runs, emitting through the official OpenTelemetry SDK to the agent's
// OTLP/HTTP endpoint and served through the agent's ingress proxy, with a
// Shopper sending it requests. Its order queue and invoice bucket live on
// the demo's embedded NATS and S3 servers (internal/demo/infra).
const (
	// sdkFleet is how many deployments run the sample service: the first
	// sdkFleet of the fleet, which holds every deployment the story names.
	// Beyond it, generated deployments send the lighter synthetic feed,
	// so --deployments 1000 fits on a laptop (each instance costs about
	// half a MiB of heap and a few goroutines).
	sdkFleet = 50
	// sdkExportQueue bounds each instance's SDK queues: 32 spans and 32 log
	// records hold the few seconds of a demo shop's traffic between exports,
	// at half the memory of the default.
	sdkExportQueue = 32
	// shopRate is each deployment's shoppers, requests per second at normal
	// speed (Options.Speed multiplies it up to shopRateMax): about the
	// synthetic feed's load, enough for the regression detector's 30
	// requests within a wave's bake.
	shopRate    = 1.0
	shopRateMax = 5.0
	// checkoutShare is the share of a Shopper's requests that check out and
	// so publish an order; the slow worker fulfils a third of them.
	checkoutShare = 0.25
	slowWorker    = 3
)

// brokenFault is how Next breaks the faulty deployment: its discount
// pricing, which every cart view and checkout runs, fails a third of its
// calls, slowly, with the log line an operator searches for.
func brokenFault() sampleapp.Fault {
	return sampleapp.Fault{Release: Next, Function: sampleapp.FnApplyDiscount, ErrorShare: 0.3, Latency: 250 * time.Millisecond,
		LogText: "coupon service returned 500 for coupon=" + brokenCoupon}
}

// streamName is deployment id's order stream: streams on one server need
// names (and subjects) of their own, without dots.
func streamName(id string) string {
	return "ORDERS_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(id))
}

// bucketName is deployment id's invoice bucket.
func bucketName(id string) string { return "invoices-" + id }

// sdkEnv is what every sample service shares: the embedded servers, the
// load and the demo's clock and logger.
type sdkEnv struct {
	nats, s3 string
	rate     float64
	clock    clock.Clock
	log      *slog.Logger
}

// queue is deployment id's order queue; a slow consumer's worker fulfils
// a third of the orders its shoppers place.
func (e sdkEnv) queue(id string, slow bool) sampleapp.Queue {
	q := sampleapp.Queue{URL: e.nats, Stream: streamName(id), MaxMsgs: 500}
	if slow {
		q.Rate = e.rate * checkoutShare / slowWorker
	}
	return q
}

// bucket is deployment id's invoice bucket on the embedded server, written
// with its demo credentials; the agent reads it unsigned, which that server
// allows.
func (e sdkEnv) bucket(id string) sampleapp.Bucket {
	return sampleapp.Bucket{Endpoint: e.s3, Name: bucketName(id), Keep: 50,
		AccessKeyID: infra.S3AccessKeyID, SecretAccessKey: infra.S3SecretAccessKey}
}

// runtimeSources are the agent's runtime config entries for deployment
// id's queue and bucket.
func (e sdkEnv) runtimeSources(id string, slow bool) ([]config.QueueSource, []config.StorageSource) {
	return []config.QueueSource{e.queue(id, slow).RuntimeSource("orders")},
		[]config.StorageSource{e.bucket(id).RuntimeSource("invoices", "", "")}
}

// sdkServices returns the factory of sample services for the deployments
// whose spec carries an OTLP endpoint, and other's for the rest.
func sdkServices(e sdkEnv, other serviceFactory) serviceFactory {
	return func(s serviceSpec) (service, error) {
		if s.OTLP == "" {
			return other(s)
		}
		cfg := sampleapp.Config{Deployment: s.Deployment, Release: s.Release, OTLPEndpoint: s.OTLP, ExportQueue: sdkExportQueue,
			Listen: s.Listen, Queue: e.queue(s.Deployment, s.SlowConsumer), Bucket: e.bucket(s.Deployment),
			Clock: e.clock, Rand: s.Rand, Logger: e.log.With("deployment", s.Deployment)}
		// The shoppers draw from a source of their own: the instance's is
		// its alone once it starts.
		shopRand := rand.New(rand.NewPCG(s.Rand.Uint64(), s.Rand.Uint64()))
		if s.Faulty {
			cfg.Faults = []sampleapp.Fault{brokenFault()}
		}
		app, err := sampleapp.New(cfg)
		if err != nil {
			return nil, err
		}
		shopper, err := sampleapp.NewShopper(sampleapp.ShopperConfig{BaseURL: s.Shop, Rate: e.rate, Concurrency: 4, Rand: shopRand})
		if err != nil {
			return nil, err
		}
		return &sdkService{app: app, shopper: shopper, free: s.Free}, nil
	}
}

// sdkService is one release of a deployment's sample service and the
// shoppers sending it requests through the ingress proxy.
type sdkService struct {
	app     *sampleapp.App
	shopper *sampleapp.Shopper
	// free releases the reservation of the service's address; nil when
	// none.
	free func()

	mu   sync.Mutex
	stop context.CancelFunc // nil before Start and after Shutdown
	done chan struct{}
}

// Start starts the service, then its shoppers, which run until Shutdown
// (not until ctx ends: ctx is the update hook's request).
func (s *sdkService) Start(ctx context.Context) error {
	if s.free != nil {
		s.free()
	}
	if err := s.app.Start(ctx); err != nil {
		return fmt.Errorf("sample service: %w", err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	s.mu.Lock()
	s.stop, s.done = stop, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = s.shopper.Run(sctx) // nil once sctx ends; a zero rate is refused in New
	}()
	return nil
}

// Shutdown stops the shoppers, then the service, which finishes its
// requests and flushes its telemetry within ctx. Safe without Start.
func (s *sdkService) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop = nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		select {
		case <-done:
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("stop the shoppers: %w", ctx.Err()), s.app.Shutdown(ctx))
		}
	}
	return s.app.Shutdown(ctx)
}

// startInfra starts the demo's embedded NATS (its store under dir) and S3
// servers and returns what the sample services share, and the function
// that stops the servers, which is safe to call when startInfra failed.
func startInfra(ctx context.Context, o Options, dir string) (*sdkEnv, func(), error) {
	nats, err := infra.NewNATS(infra.NATSConfig{Dir: filepath.Join(dir, "nats")})
	if err != nil {
		return nil, func() {}, err
	}
	s3, err := infra.NewS3(infra.S3Config{})
	if err != nil {
		return nil, func() {}, err
	}
	stop := func() {
		stopParts(o.Logger, managerStop, part{"queue server", nats.Shutdown}, part{"object store", s3.Shutdown})
	}
	if err := nats.Start(ctx); err != nil {
		return nil, stop, fmt.Errorf("the demo's queue server: %w", err)
	}
	if err := s3.Start(ctx); err != nil {
		return nil, stop, fmt.Errorf("the demo's object store: %w", err)
	}
	return &sdkEnv{nats: nats.URL(), s3: s3.URL(), rate: min(shopRate*o.Speed, shopRateMax), clock: o.Clock, log: o.Logger}, stop, nil
}

// reserveAddr binds a free port of 127.0.0.1 for a sample service and
// holds it until the service's first instance starts (heldAddr.free): every
// release of the service listens there, so the ingress proxy in front of it
// keeps its upstream across release switches, and no other listener of the
// demo takes the port while the fleet starts.
func reserveAddr() (*heldAddr, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("reserve the sample service's address: %w", err)
	}
	return &heldAddr{addr: ln.Addr().String(), ln: ln}, nil
}

// heldAddr is a reserved address and, until free, its listener.
type heldAddr struct {
	addr string
	once sync.Once
	ln   net.Listener
}

// free closes the reservation, once, for the service to bind the address.
func (h *heldAddr) free() { h.once.Do(func() { _ = h.ln.Close() }) }
