package export

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/retry"
)

// FanoutSettings configure a Fanout.
type FanoutSettings struct {
	// Dir holds one queue directory per exporter, named after it.
	Dir string
	// Queue is the template for each exporter's queue. Its OnFull is always
	// DropOldest: a destination that is down for long loses its oldest data (counted)
	// rather than stopping ingest or the other exporters.
	Queue queue.Options
	// InitialBackoff and MaxBackoff bound the wait between attempts (defaults 1s, 60s).
	InitialBackoff, MaxBackoff time.Duration
	// Logger reports failed attempts; nil discards.
	Logger *slog.Logger
	// Registerer gets per-exporter metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Fanout hands every batch to each exporter through that exporter's own durable queue
// and delivery loop, so a slow or dead destination never delays ingest or the others.
// It implements the manager's ingest sink.
type Fanout struct {
	s       FanoutSettings
	lanes   []*lane
	metrics *fanoutMetrics
	backoff retry.Backoff
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type lane struct {
	exp Exporter
	q   *queue.Queue
}

type fanoutMetrics struct {
	sent, dropped *prometheus.CounterVec
	failed        *prometheus.CounterVec
}

// NewFanout opens a queue per exporter. Exporter names must be unique.
func NewFanout(exps []Exporter, s FanoutSettings) (*Fanout, error) {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.InitialBackoff <= 0 {
		s.InitialBackoff = time.Second
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = time.Minute
	}
	f := &Fanout{s: s, backoff: retry.Centred(s.InitialBackoff, s.MaxBackoff), metrics: &fanoutMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_exporter_sent_records_total", Help: "Records an exporter delivered, by exporter and signal.",
		}, []string{"exporter", "signal"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_exporter_dropped_records_total", Help: "Records an exporter gave up on, by reason (refused by the destination, queue full, too old).",
		}, []string{"exporter", "signal", "reason"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_exporter_failed_attempts_total", Help: "Delivery attempts that failed and will be retried.",
		}, []string{"exporter"}),
	}}
	seen := map[string]bool{}
	var collectors []prometheus.Collector
	for _, e := range exps {
		if seen[e.Name()] {
			f.close()
			return nil, fmt.Errorf("exporters: name %q is used twice", e.Name())
		}
		seen[e.Name()] = true
		opts := s.Queue
		opts.Dir = filepath.Join(s.Dir, e.Name())
		opts.OnFull = queue.DropOldest
		q, err := queue.Open(opts)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("exporter %q: open queue: %w", e.Name(), err)
		}
		f.lanes = append(f.lanes, &lane{exp: e, q: q})
		labels := prometheus.Labels{"exporter": e.Name()}
		collectors = append(collectors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "periscope_exporter_queue_bytes", ConstLabels: labels,
				Help: "Bytes waiting in the exporter's queue."}, func() float64 { return float64(q.Stats().Bytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "periscope_exporter_queue_batches", ConstLabels: labels,
				Help: "Batches waiting in the exporter's queue."}, func() float64 { return float64(q.Stats().Records) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "periscope_exporter_queue_dropped_batches_total", ConstLabels: labels,
				Help: "Batches the exporter's queue dropped to stay within its size or age bound."},
				func() float64 { return float64(q.Stats().DroppedRecords) }),
		)
	}
	if s.Registerer != nil {
		for _, c := range append(collectors, f.metrics.sent, f.metrics.dropped, f.metrics.failed) {
			if err := s.Registerer.Register(c); err != nil {
				f.close()
				return nil, fmt.Errorf("exporter metrics: %w", err)
			}
		}
	}
	return f, nil
}

// Consume queues b for every exporter. It fails only when a queue cannot be written;
// the exporters whose queues took b before then take it again when the sender
// retries, so a caller that can tell a resend apart should use Lanes instead.
func (f *Fanout) Consume(ctx context.Context, b consumer.Batch) error {
	for _, l := range f.Lanes() {
		if err := l.Consume(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// Lane is one exporter's entry into the fan-out: a consumer.Sink that queues
// batches for that exporter alone. Handing each lane its own batches lets the
// manager's ingest keep each exporter's delivered position, so a batch another
// sink refused reaches an exporter once however often it is resent.
type Lane struct {
	f *Fanout
	l *lane
}

// Lanes returns one Lane per exporter, in configuration order.
func (f *Fanout) Lanes() []Lane {
	out := make([]Lane, len(f.lanes))
	for i, l := range f.lanes {
		out[i] = Lane{f: f, l: l}
	}
	return out
}

// Name returns the exporter's configured name.
func (ln Lane) Name() string { return ln.l.exp.Name() }

// Consume queues b for the lane's exporter. It fails only when the queue cannot be
// written; a batch the queue can never take (too large, or full under DropOldest)
// is counted as dropped for this exporter instead, so it does not fail ingest.
func (ln Lane) Consume(_ context.Context, b consumer.Batch) error {
	f, l := ln.f, ln.l
	if _, err := l.q.Append(encodeBatch(b)); err != nil {
		if reason := dropReason(err); reason != "" {
			f.metrics.dropped.WithLabelValues(l.exp.Name(), b.Signal.String(), reason).Add(float64(b.Records))
			f.s.Logger.Error("exporter queue cannot take a batch; dropping it for this exporter", "exporter", l.exp.Name(),
				"deployment", b.DeploymentID, "records", b.Records, "error", err)
			return nil
		}
		return fmt.Errorf("exporter %q: queue batch: %w", l.exp.Name(), err)
	}
	return nil
}

func dropReason(err error) string {
	switch {
	case errors.Is(err, queue.ErrTooLarge):
		return "too_large"
	case errors.Is(err, queue.ErrFull):
		return "queue_full"
	}
	return ""
}

// Start begins delivering each exporter's queue.
func (f *Fanout) Start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	for _, l := range f.lanes {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.run(ctx, l)
		}()
	}
}

// Shutdown stops delivery, closes the exporters and the queues. Batches not yet
// delivered stay queued on disk for the next start.
func (f *Fanout) Shutdown(ctx context.Context) error {
	if f.cancel != nil {
		f.cancel()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done: // finished just as the deadline passed
		default:
			// An attempt is still running past the deadline; its batch stays queued.
			return fmt.Errorf("exporters: shutdown: %w", ctx.Err())
		}
	}
	var errs []error
	for _, l := range f.lanes {
		errs = append(errs, l.exp.Close(ctx))
	}
	errs = append(errs, f.close())
	return errors.Join(errs...)
}

func (f *Fanout) close() error {
	var errs []error
	for _, l := range f.lanes {
		errs = append(errs, l.q.Close())
	}
	return errors.Join(errs...)
}

// run delivers one exporter's queue in order until ctx ends.
func (f *Fanout) run(ctx context.Context, l *lane) {
	name := l.exp.Name()
	after := l.q.Acked()
	for {
		recs, err := l.q.Read(ctx, after, 1, 64<<20)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				return
			}
			f.s.Logger.Error("reading exporter queue failed; retrying", "exporter", name, "error", err)
			if !clock.Sleep(ctx, f.s.MaxBackoff) {
				return
			}
			continue
		}
		r := recs[0]
		b, err := decodeBatch(r.Data)
		if err != nil {
			f.s.Logger.Error("dropping unreadable queued batch", "exporter", name, "error", err)
		} else if !f.deliver(ctx, l, b) {
			return
		}
		after = r.Seq
		for err := l.q.Ack(after); err != nil; err = l.q.Ack(after) {
			if errors.Is(err, queue.ErrClosed) {
				return
			}
			// Not acknowledged yet: the batch may be delivered again after a restart.
			f.s.Logger.Error("acknowledging exporter queue failed; retrying", "exporter", name, "error", err)
			if !clock.Sleep(ctx, f.s.MaxBackoff) {
				return
			}
		}
	}
}

// deliver retries one batch until it is delivered or refused for good; it returns
// false when ctx ended first.
func (f *Fanout) deliver(ctx context.Context, l *lane, b consumer.Batch) bool {
	name := l.exp.Name()
	for attempt := 1; ; attempt++ {
		// An attempt under way finishes even when shutdown begins: cutting it off
		// after the destination took the batch would deliver it again next start.
		err := l.exp.Export(context.WithoutCancel(ctx), b)
		if err == nil {
			f.metrics.sent.WithLabelValues(name, b.Signal.String()).Add(float64(b.Records))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if retry.IsPermanent(err) {
			f.metrics.dropped.WithLabelValues(name, b.Signal.String(), "refused").Add(float64(b.Records))
			f.s.Logger.Error("destination refused a batch for good; dropping it", "exporter", name,
				"signal", b.Signal, "deployment", b.DeploymentID, "records", b.Records, "error", err)
			return true
		}
		f.metrics.failed.WithLabelValues(name).Inc()
		// A longer Retry-After from the destination wins over the backoff.
		wait := f.backoff.Delay(attempt, err)
		f.s.Logger.Warn("export failed; will retry", "exporter", name, "attempt", attempt,
			"wait", wait.Round(time.Millisecond), "error", err)
		if !clock.Sleep(ctx, wait) {
			return false
		}
	}
}

// encodeBatch frames a batch for an exporter queue: signal, received time, records,
// deployment id, then the export request.
func encodeBatch(b consumer.Batch) []byte {
	out := make([]byte, 0, len(b.Data)+len(b.DeploymentID)+32)
	out = append(out, byte(b.Signal))
	out = binary.AppendVarint(out, b.Received.UnixNano())
	out = binary.AppendUvarint(out, uint64(b.Records))
	out = binary.AppendUvarint(out, uint64(len(b.DeploymentID)))
	out = append(out, b.DeploymentID...)
	return append(out, b.Data...)
}

func decodeBatch(p []byte) (consumer.Batch, error) {
	var b consumer.Batch
	bad := errors.New("bad queued batch")
	if len(p) < 1 {
		return b, bad
	}
	b.Signal = otlp.Signal(p[0])
	p = p[1:]
	nanos, n := binary.Varint(p)
	if n <= 0 {
		return b, bad
	}
	p = p[n:]
	records, n := binary.Uvarint(p)
	if n <= 0 {
		return b, bad
	}
	p = p[n:]
	idLen, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) < idLen {
		return b, bad
	}
	p = p[n:]
	b.Received = time.Unix(0, nanos)
	b.Records = int(records)
	b.DeploymentID = string(p[:idLen])
	b.Data = p[idLen:]
	return b, nil
}
