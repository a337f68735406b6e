// Package sampleapp is the demo vendor's sample service, "lighthouse shop":
// a small HTTP shop instrumented with the official OpenTelemetry Go SDK that
// sends real logs, traces and metrics to its agent over OTLP/HTTP. Each route
// is a server span over child spans for named functions (code.function.name,
// which the manager groups by); its logs carry a little personal data (a
// shopper's e-mail, client IP and session id) for the agent to redact; each
// checkout publishes an order to a NATS JetStream stream, which a worker
// fulfils at a configured pace, and writes an invoice to an S3 bucket. A
// release can break one function (Fault). Shopper drives it with a realistic
// mix of requests. Switching release is Shutdown and a new App (docs/demo.md).
package sampleapp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// App is one running instance of the sample service.
type App struct {
	cfg Config

	// faultRand draws only whether a faulty call fails, so a seeded run fails
	// the same number of calls whatever else happens concurrently.
	faultMu   sync.Mutex
	faultRand *rand.Rand
	// idMu guards idRand, which makes order and session ids.
	idMu   sync.Mutex
	idRand *rand.Rand
	// spanRand seeds the SDK's trace and span ids.
	spanRand *rand.Rand
	instance string
	faults   map[string]Fault

	mu      sync.Mutex
	started bool
	stopped bool
	tel     *telemetry
	srv     *http.Server
	addr    string
	serving chan struct{}
	queue   *orderQueue
	bucket  *invoiceBucket
}

// New validates cfg and returns an instance; it starts nothing.
func New(cfg Config) (*App, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, faults: map[string]Fault{}}
	a.faultRand = rand.New(rand.NewPCG(cfg.Rand.Uint64(), cfg.Rand.Uint64()))
	a.idRand = rand.New(rand.NewPCG(cfg.Rand.Uint64(), cfg.Rand.Uint64()))
	a.spanRand = rand.New(rand.NewPCG(cfg.Rand.Uint64(), cfg.Rand.Uint64()))
	a.instance = fmt.Sprintf("%s-%s-%04x", ServiceName, cfg.Deployment, a.idRand.Uint32()&0xffff)
	for _, f := range cfg.Faults {
		if f.Release == cfg.Release {
			a.faults[f.Function] = f
		}
	}
	return a, nil
}

// Start builds the SDK providers, connects to the queue and the bucket
// (creating the stream, consumer and bucket when missing), binds the HTTP
// address and starts serving and the fulfilment worker.
func (a *App) Start(ctx context.Context) (err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return errors.New("sampleapp: already started")
	}
	a.started = true
	log := a.cfg.Logger.With("component", "sampleapp", "customer", a.cfg.Customer, "deployment", a.cfg.Deployment, "release", a.cfg.Release)
	var undo []func(context.Context) error
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				_ = undo[i](context.WithoutCancel(ctx))
			}
		}
	}()
	tel, err := newTelemetry(ctx, a.cfg, a.instance, a.spanRand)
	if err != nil {
		return fmt.Errorf("sampleapp: %w", err)
	}
	undo = append(undo, tel.shutdown)
	a.tel = tel
	if a.cfg.Queue.URL != "" {
		q, err := openQueue(ctx, a.cfg.Queue, a, log)
		if err != nil {
			return fmt.Errorf("sampleapp: %w", err)
		}
		undo = append(undo, q.close)
		a.queue = q
	}
	if a.cfg.Bucket.Endpoint != "" {
		b, err := openBucket(ctx, a.cfg.Bucket)
		if err != nil {
			return fmt.Errorf("sampleapp: %w", err)
		}
		a.bucket = b
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("sampleapp: listen: %w", err)
	}
	a.addr = ln.Addr().String()
	a.srv = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	a.serving = make(chan struct{})
	go func() {
		defer close(a.serving)
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("serving stopped", "err", err)
		}
	}()
	if a.queue != nil {
		a.queue.startWorker()
	}
	log.Info("sample service started", "url", "http://"+a.addr)
	return nil
}

// URL is the service's base URL (http://127.0.0.1:port), empty before Start.
func (a *App) URL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.addr == "" {
		return ""
	}
	return "http://" + a.addr
}

// Release is the release the instance runs.
func (a *App) Release() string { return a.cfg.Release }

// Shutdown stops taking requests, waits for those in flight, stops the
// worker, closes the queue connection and flushes the SDK providers, all
// within ctx: everything the SDK accepted before Shutdown returns nil has
// been exported. It is idempotent and safe without Start.
func (a *App) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started || a.stopped {
		a.stopped = true
		return nil
	}
	a.stopped = true
	var errs []error
	if a.srv == nil {
		// Start failed and undid what it had started.
		return nil
	}
	if err := a.srv.Shutdown(ctx); err != nil {
		a.srv.Close()
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	<-a.serving
	if a.queue != nil {
		if err := a.queue.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("queue: %w", err))
		}
	}
	if err := a.tel.shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("telemetry: %w", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sampleapp: shutdown: %w", errors.Join(errs...))
	}
	return nil
}

// fails reports whether this call of fn fails under the release's fault, and
// the fault; one draw per call of a faulty function, none otherwise.
func (a *App) fails(fn string) (Fault, bool, bool) {
	f, ok := a.faults[fn]
	if !ok {
		return Fault{}, false, false
	}
	if f.ErrorShare == 0 {
		return f, true, false
	}
	a.faultMu.Lock()
	defer a.faultMu.Unlock()
	return f, true, a.faultRand.Float64() < f.ErrorShare
}

// newID returns a short random id with a prefix ("o-3f9a1c2b").
func (a *App) newID(prefix string) string {
	a.idMu.Lock()
	defer a.idMu.Unlock()
	return fmt.Sprintf("%s-%08x", prefix, a.idRand.Uint32())
}
