// Package pipeline is the agent's telemetry path: OTLP receivers for the local
// application, tagging with the deployment context, redaction, one durable disk queue
// per signal, and a forwarder per signal that sends the queue to the manager.
//
//	app ──OTLP gRPC/HTTP──▶ receiver ─▶ tag ─▶ redact ─▶ queue (disk) ─▶ forwarder ──OTLP/HTTP──▶ manager
//
// A request is acknowledged only once it is in the queue, so whatever the application
// was told was accepted survives a crash of the agent or an outage of the manager.
// Redaction runs before the queue, so personal data never reaches the agent's disk
// either.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/periscope-dev/periscope/internal/agent/forward"
	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/grpcserver"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/sysio"
)

// Settings configure a Pipeline.
type Settings struct {
	// GRPCAddr and HTTPAddr are the OTLP listen addresses; "" or "off" disables one.
	GRPCAddr, HTTPAddr string
	// GRPCListener and HTTPListener, when set, are already bound and used
	// instead of listening on GRPCAddr and HTTPAddr: the agent binds its ports
	// before it checks in, so a port in use fails before any session opens.
	// Start takes them over; Shutdown closes them.
	GRPCListener, HTTPListener net.Listener
	// MaxRequestBytes bounds one OTLP request.
	MaxRequestBytes int64
	// QueueDir holds one queue directory per signal.
	QueueDir string
	// Queue is the template for each signal's queue; Dir is set per signal.
	Queue queue.Options
	// Forward configures sending to the manager (endpoint, token, compression).
	Forward forward.Settings
	// SelfMetricsInterval is how often the pipeline's own counters are queued as OTLP
	// metrics for the manager; 0 disables it.
	SelfMetricsInterval time.Duration
	// RepairInterval is how often a queue that failed to write is reopened (default 5s).
	RepairInterval time.Duration
	// Resource names the agent in its self-metrics (service.name and friends).
	Resource map[string]string
	// OnLoss, if set, is given the loss since start whenever records the pipeline
	// had accepted are dropped: at the first drop, then at most once a
	// LossInterval. It runs on the pipeline's own goroutine.
	OnLoss func(Loss)
	// LossInterval is the shortest time between two loss log lines and OnLoss
	// calls (default one minute).
	LossInterval time.Duration
	// Redaction is the effective redaction policy to start with (SetRedaction
	// replaces it); its zero value means the safe default, never off.
	Redaction redactpolicy.Effective
	// HashKey keys the redaction's hash action.
	HashKey []byte
	// Recorder, if set, keeps the customer-readable record of what was sent and
	// what redaction removed.
	Recorder Recorder
	// Report, if set, is served at /report on the OTLP/HTTP listener: the
	// customer's summary of that record.
	Report http.Handler
	// Logger, Clock and Registerer are collaborators; nil means defaults (no metrics
	// registration when Registerer is nil).
	Logger     *slog.Logger
	Clock      clock.Clock
	Registerer prometheus.Registerer
	// Gatherer serves /metrics on the OTLP HTTP listener and feeds self-metrics; nil
	// means prometheus.DefaultGatherer is not used and /metrics is not served.
	Gatherer prometheus.Gatherer
}

// Recorder keeps the customer's record of what left and what was removed. Its
// methods are called concurrently, Removed on the receive path: they must be cheap.
type Recorder interface {
	// Sent is told of every batch the manager accepted.
	Sent(sig otlp.Signal, records, bytes int)
	// Removed is told what redaction removed from one request.
	Removed(sig otlp.Signal, st *redact.Stats)
}

// Pipeline runs the agent's telemetry path. New opens the queues; Start listens and
// forwards; Shutdown stops accepting, lets in-flight requests finish, and closes.
type Pipeline struct {
	s        Settings
	log      *slog.Logger
	lanes    map[otlp.Signal]*lane
	ctx      context.Context // Start's, for repairs
	tagger   atomic.Pointer[otlp.Tagger]
	redactor atomic.Pointer[redact.Policy]
	bufs     sync.Pool // *[]byte for tagged requests and queue entries
	encoders sync.Pool // *forward.Encoder
	metrics  *metrics
	loss     *lossTracker

	httpSrv *http.Server
	grpcSrv *grpcserver.Server
	addrs   struct{ grpc, http string }

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the per-signal queues under s.QueueDir. The pipeline tags with an empty
// context until SetContext is called.
func New(s Settings) (*Pipeline, error) {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	p := &Pipeline{s: s, log: s.Logger, lanes: map[otlp.Signal]*lane{}}
	p.loss = newLossTracker(s.Clock, s.Logger, s.OnLoss, s.LossInterval)
	p.tagger.Store(otlp.NewTagger(otlp.Context{}))
	if err := p.SetRedaction(s.Redaction); err != nil {
		return nil, err
	}
	p.bufs.New = func() any { b := make([]byte, 0, 64<<10); return &b }
	// Queue entries are s2-compressed: a small fraction of gzip's cost, and the queue
	// still writes several times fewer bytes; the forwarder compresses for the wire.
	p.encoders.New = func() any { e, _ := forward.NewEncoder("s2"); return e }
	for _, sig := range otlp.Signals {
		opts := s.Queue
		opts.Dir = filepath.Join(s.QueueDir, sig.String())
		opts.Clock = s.Clock
		// Loss is counted in records the application sent, not in queue entries.
		opts.Weight = entryRecords
		opts.OnDrop = func(d queue.Drop) { p.metrics.Dropped(sig, int(d.Items), string(d.Reason)) }
		q, err := queue.Open(opts)
		if err != nil {
			p.closeQueues()
			return nil, fmt.Errorf("open %s queue: %w", sig, err)
		}
		p.lanes[sig] = &lane{sig: sig, opts: opts, q: q}
	}
	m, err := newMetrics(s.Registerer, p.lanes, p.loss, s.Recorder)
	if err != nil {
		p.closeQueues()
		return nil, err
	}
	p.metrics = m
	return p, nil
}

// entryRecords counts the records in a queue entry from its first bytes.
func entryRecords(data []byte) uint64 {
	e, err := forward.DecodeEntry(data)
	if err != nil {
		return 0 // a damaged header: what it held is unknown
	}
	return uint64(e.Records)
}

// Loss returns what the pipeline dropped of the telemetry it had accepted.
func (p *Pipeline) Loss() Loss { return p.loss.snapshot() }

// SetContext sets the deployment context written on every resource from now on.
func (p *Pipeline) SetContext(c otlp.Context) { p.tagger.Store(otlp.NewTagger(c)) }

// SetRedaction compiles e and applies it to every request from now on. A zero e
// is the safe default policy, never off.
func (p *Pipeline) SetRedaction(e redactpolicy.Effective) error {
	if e.Detectors == nil && !e.Off {
		e = redactpolicy.Resolve(redactpolicy.Policy{})
	}
	r, err := redact.Compile(e, p.s.HashKey)
	if err != nil {
		return fmt.Errorf("redaction policy: %w", err)
	}
	p.redactor.Store(r)
	return nil
}

// Redaction returns the redaction policy in force.
func (p *Pipeline) Redaction() redactpolicy.Effective { return p.redactor.Load().Effective() }

// Consume tags one export request, redacts it and queues it; it is the receivers'
// consumer.
func (p *Pipeline) Consume(_ context.Context, r consumer.Request) error {
	tp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(tp)
	tagged, records, err := p.tagger.Load().Tag(r.Signal, (*tp)[:0], r.Body)
	*tp = tagged
	if err != nil {
		p.metrics.refused.WithLabelValues(r.Signal.String(), "malformed").Inc()
		return consumer.Malformed("%v", err)
	}
	rp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(rp)
	var st redact.Stats
	redacted, err := p.redactor.Load().Request(r.Signal, (*rp)[:0], tagged, &st)
	if err != nil {
		p.metrics.refused.WithLabelValues(r.Signal.String(), "malformed").Inc()
		return consumer.Malformed("%v", err)
	}
	if st.Total() > 0 {
		*rp = redacted[:0]
		tagged = redacted
		records -= st.Dropped
		p.metrics.redacted(r.Signal, &st)
		if p.s.Recorder != nil {
			p.s.Recorder.Removed(r.Signal, &st)
		}
		if records == 0 {
			// Every record went by the policy's drop patterns: nothing to queue.
			return nil
		}
	}
	// Compress cheaply here, so the queue writes and reads a fraction of the bytes.
	enc := p.encoders.Get().(*forward.Encoder)
	ep := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(ep)
	entry, err := enc.Append((*ep)[:0], records, tagged)
	p.encoders.Put(enc)
	*ep = entry
	if err != nil {
		return consumer.Unavailable("agent could not compress the request: "+err.Error(), time.Second)
	}
	if err := p.lanes[r.Signal].append(entry); err != nil {
		switch {
		case errors.Is(err, queue.ErrFull):
			p.metrics.refused.WithLabelValues(r.Signal.String(), "queue_full").Add(float64(records))
			return consumer.Full("agent queue is full; retry later", 5*time.Second)
		case errors.Is(err, queue.ErrTooLarge):
			p.metrics.refused.WithLabelValues(r.Signal.String(), "too_large").Add(float64(records))
			return consumer.TooLarge("request larger than the agent queue can hold")
		}
		p.metrics.refused.WithLabelValues(r.Signal.String(), "queue_error").Add(float64(records))
		if l := p.lanes[r.Signal]; !errors.Is(err, errRepairing) && !errors.Is(err, queue.ErrClosed) && l.broken.CompareAndSwap(false, true) {
			p.log.Error("could not queue telemetry; reopening the queue", "signal", r.Signal, "error", err)
			if p.ctx != nil {
				p.wg.Add(1)
				go p.repair(p.ctx, l, p.repairInterval())
			}
		}
		return consumer.Unavailable("agent could not write its queue: "+err.Error(), 5*time.Second)
	}
	p.metrics.accepted.WithLabelValues(r.Signal.String()).Add(float64(records))
	return nil
}

// Start listens on the OTLP addresses and starts forwarding. It fails if an address
// cannot be bound, so two agents on one host learn at once that they collide.
func (p *Pipeline) Start(ctx context.Context) error {
	ctx, p.cancel = context.WithCancel(ctx)
	p.ctx = ctx // before the receivers open: Consume reads it to start repairs
	maxBytes := p.s.MaxRequestBytes
	if maxBytes <= 0 {
		maxBytes = receiver.DefaultMaxBytes
	}
	if lis := p.s.HTTPListener; lis != nil || on(p.s.HTTPAddr) {
		if lis == nil {
			var err error
			if lis, err = net.Listen("tcp", p.s.HTTPAddr); err != nil {
				return fmt.Errorf("OTLP/HTTP listener: %w", err)
			}
		}
		mux := http.NewServeMux()
		(&receiver.HTTP{Consumer: p, MaxBytes: maxBytes}).Register(mux)
		if p.s.Gatherer != nil {
			mux.Handle("/metrics", promhttp.HandlerFor(p.s.Gatherer, promhttp.HandlerOpts{}))
		}
		if p.s.Report != nil {
			mux.Handle("/report", p.s.Report)
		}
		p.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		p.addrs.http = lis.Addr().String()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.httpSrv.Serve(sysio.Listen(lis)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("OTLP/HTTP server stopped", "error", err)
			}
		}()
	}
	if lis := p.s.GRPCListener; lis != nil || on(p.s.GRPCAddr) {
		if lis == nil {
			var err error
			if lis, err = net.Listen("tcp", p.s.GRPCAddr); err != nil {
				if p.httpSrv != nil {
					p.httpSrv.Close()
				}
				return fmt.Errorf("OTLP/gRPC listener: %w", err)
			}
		}
		p.grpcSrv = grpcserver.New(p, grpcserver.Settings{MaxBytes: int(maxBytes)})
		p.addrs.grpc = lis.Addr().String()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.grpcSrv.Serve(lis); err != nil && !errors.Is(err, grpcserver.ErrServerStopped) {
				p.log.Error("OTLP/gRPC server stopped", "error", err)
			}
		}()
	}
	for _, l := range p.lanes {
		l.mu.Lock()
		err := p.startForwarder(ctx, l)
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.loss.run(ctx)
	}()
	if p.s.SelfMetricsInterval > 0 && p.s.Gatherer != nil {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.selfMetricsLoop(ctx)
		}()
	}
	p.log.Info("telemetry pipeline started", "otlp_grpc", p.addrs.grpc, "otlp_http", p.addrs.http, "queue", p.s.QueueDir)
	return nil
}

// Addrs returns the bound OTLP addresses (empty when disabled), useful with port 0.
func (p *Pipeline) Addrs() (grpcAddr, httpAddr string) { return p.addrs.grpc, p.addrs.http }

// Shutdown stops the receivers (letting in-flight requests finish), stops the
// forwarders and closes the queues. Whatever was not sent yet stays queued on disk.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	var errs []error
	if p.httpSrv != nil {
		errs = append(errs, p.httpSrv.Shutdown(ctx))
	}
	if p.grpcSrv != nil {
		errs = append(errs, p.grpcSrv.Shutdown(ctx))
	}
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait() // the servers have stopped, and repairs end with the context
	for _, l := range p.lanes {
		l.mu.Lock()
		l.stopForwarder()
		l.mu.Unlock()
	}
	errs = append(errs, p.closeQueues())
	p.loss.tell() // what closing the queues found lost: records sent when the agent stopped
	return errors.Join(errs...)
}

func (p *Pipeline) closeQueues() error {
	var errs []error
	for sig, l := range p.lanes {
		if err := l.q.Close(); err != nil && !errors.Is(err, queue.ErrClosed) {
			errs = append(errs, fmt.Errorf("close %s queue: %w", sig, err))
		}
	}
	return errors.Join(errs...)
}

func on(addr string) bool { return addr != "" && addr != "off" }

func (p *Pipeline) repairInterval() time.Duration {
	if p.s.RepairInterval > 0 {
		return p.s.RepairInterval
	}
	return 5 * time.Second
}
