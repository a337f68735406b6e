package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// ScopeName is the instrumentation scope of every runtime signal, so the
// manager and the vendor's backends tell them from the application's own.
const ScopeName = "periscope-agent/runtime"

// Names of the metric and attributes the Collector adds for every source.
const (
	MetricSourceUp  = "periscope.source.up"
	AttrSourceName  = "periscope.source.name"
	AttrSourceKind  = "periscope.source.kind"
	AttrSourceError = "periscope.source.error"
)

// MaxErrorBytes bounds the text of a source's error in its metric and health:
// an error may quote a server's answer, which the agent does not control.
const MaxErrorBytes = 512

// Defaults of Settings.
const (
	DefaultInterval    = 30 * time.Second
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 4
)

// Kinded is a Source that names its kind ("nats", "redis-stream", "s3", …) for
// the periscope.source.kind attribute; for other sources the kind is their
// Name up to its first slash.
type Kinded interface {
	Kind() string
}

// Settings configure a Collector.
type Settings struct {
	// Sources are collected every Interval; their names must be unique.
	Sources []Source
	// Interval is the time between two rounds; zero means DefaultInterval.
	Interval time.Duration
	// Timeout bounds one source's Collect; zero means DefaultTimeout. A
	// Collect that overruns it is abandoned for the round and counts as failed.
	Timeout time.Duration
	// Concurrency bounds the sources collected at once; zero means
	// DefaultConcurrency.
	Concurrency int
	// Consumer takes each round's metrics: the agent's pipeline, which tags,
	// redacts and queues them like the application's.
	Consumer consumer.Consumer
	// Health receives a failing source as the unhealthy component
	// "source <name>" and watched components as their watcher reports them;
	// nil reports nothing.
	Health HealthSink
	// Resource attributes of the metrics (service.name and the like); the
	// pipeline adds the deployment context.
	Resource map[string]string
	// Clock stamps the figures; nil means the wall clock.
	Clock clock.Clock
	// Logger receives failures to deliver a round; nil discards.
	Logger *slog.Logger
	// Thresholds are checked at each round from the first (SetThresholds
	// replaces them); a breach is reported to Health as an unhealthy
	// component (thresholds.Component).
	Thresholds thresholds.Set
}

// Collector runs runtime sources on an interval and hands their figures to the
// pipeline as one OTLP metrics export request per round.
type Collector struct {
	s   Settings
	log *slog.Logger

	// busy marks sources whose abandoned Collect has not returned yet: they
	// are not started again until it has, so a hung server costs one
	// goroutine, not one per round.
	busyMu sync.Mutex
	busy   map[int]bool
	// sent is the health last given to the sink per component, so an
	// unchanged state is not sent again every round (each send is an OpAMP
	// message).
	sentMu sync.Mutex
	sent   map[string]health

	// thr is the thresholds in force; breached maps each threshold component
	// reported unhealthy to its source (Round's alone: rounds do not overlap).
	thrMu    sync.Mutex
	thr      thresholds.Set
	breached map[string]string

	mu       sync.Mutex
	cancel   context.CancelFunc
	loopDone chan struct{}
	// collects owns every Collect goroutine, abandoned ones included.
	collects sync.WaitGroup
	started  bool
}

type health struct {
	ok     bool
	reason string
}

// New validates s and returns a Collector that has started nothing.
func New(s Settings) (*Collector, error) {
	if s.Consumer == nil {
		return nil, errors.New("runtime collector: no consumer")
	}
	if s.Interval < 0 || s.Timeout < 0 || s.Concurrency < 0 {
		return nil, errors.New("runtime collector: interval, timeout and concurrency must not be negative")
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	s.Clock = clock.Or(s.Clock)
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	names := map[string]bool{}
	for i, src := range s.Sources {
		if src == nil || src.Name() == "" {
			return nil, fmt.Errorf("runtime collector: source %d has no name", i)
		}
		if names[src.Name()] {
			return nil, fmt.Errorf("runtime collector: source name %q is used twice", src.Name())
		}
		names[src.Name()] = true
	}
	return &Collector{s: s, log: s.Logger, busy: map[int]bool{}, sent: map[string]health{},
		thr: s.Thresholds, breached: map[string]string{}}, nil
}

// Start begins collecting: the first round at once, then every Interval.
func (c *Collector) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("runtime collector already started")
	}
	c.started = true
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel, c.loopDone = cancel, make(chan struct{})
	go c.loop(runCtx)
	return nil
}

func (c *Collector) loop(ctx context.Context) {
	defer close(c.loopDone)
	t := time.NewTicker(c.s.Interval)
	defer t.Stop()
	for {
		c.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Shutdown stops collecting, cancels Collects in progress and waits for them
// within ctx's deadline. It is idempotent and safe without Start.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	cancel, done := c.cancel, c.loopDone
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	all := make(chan struct{})
	go func() {
		<-done
		c.collects.Wait()
		close(all)
	}()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("runtime collector: sources still collecting at shutdown: %w", ctx.Err())
	}
}

// outcome is one source's result in a round.
type outcome struct {
	ms  pmetric.MetricSlice
	err error
}

// Round collects every source once and hands the result to the consumer. Start
// runs it every Interval; it is exported for tests and a one-off collection.
func (c *Collector) Round(ctx context.Context) {
	now := c.s.Clock.Now()
	out := make([]outcome, len(c.s.Sources))
	sem := make(chan struct{}, c.s.Concurrency)
	var wg sync.WaitGroup
	for i, src := range c.s.Sources {
		if ctx.Err() != nil {
			out[i].err = ctx.Err()
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			out[i].err = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i] = c.collect(ctx, i, src, now)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // shutting down: a half round would report every source as failed
	}

	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	// In a fixed order: the manager's store tells series apart by their
	// resource as written, so a map's random order made every round a new
	// series and summed them.
	for _, k := range slices.Sorted(maps.Keys(c.s.Resource)) {
		rm.Resource().Attributes().PutStr(k, c.s.Resource[k])
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(ScopeName)
	ms := sm.Metrics()
	var figs thresholds.Figures
	failed := map[string]bool{}
	for i, o := range out {
		if o.err != nil {
			failed[c.s.Sources[i].Name()] = true
		}
		if o.ms != (pmetric.MetricSlice{}) {
			addFigures(&figs, c.s.Sources[i].Name(), o.ms)
			o.ms.MoveAndAppendTo(ms)
		}
	}
	up := Gauge(ms, MetricSourceUp, "1", "Whether the source collected its figures in the last round (1) or not (0, with the reason).")
	for i, src := range c.s.Sources {
		name, kind := src.Name(), kindOf(src)
		if err := out[i].err; err != nil {
			reason := Bounded(err.Error(), MaxErrorBytes)
			Point(up, now, 0, AttrSourceName, name, AttrSourceKind, kind, AttrSourceError, reason)
			c.report("source "+name, false, reason)
		} else {
			Point(up, now, 1, AttrSourceName, name, AttrSourceKind, kind)
			c.report("source "+name, true, "")
		}
		if w, ok := src.(Watcher); ok && out[i].err == nil {
			for _, comp := range w.Components() {
				c.report(comp.Name, comp.Healthy, componentError(comp))
			}
		}
	}

	c.checkThresholds(figs, failed)

	// The data message and the export request share field 1; pmetricotlp would
	// link grpc-go into the agent (internal/archtest forbids it).
	body, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err == nil {
		err = c.s.Consumer.Consume(ctx, consumer.Request{Signal: otlp.Metrics, Body: body, Header: func(string) string { return "" }})
	}
	if err != nil {
		c.log.Warn("could not queue the runtime signals", "error", err)
	}
}

// collect runs one source's Collect under its timeout. A Collect that overruns
// is abandoned: its goroutine is left to return (it owns its own metric slice,
// which is then dropped) and the source is not started again until it has.
func (c *Collector) collect(ctx context.Context, i int, src Source, now time.Time) outcome {
	c.busyMu.Lock()
	if c.busy[i] {
		c.busyMu.Unlock()
		return outcome{err: errors.New("the previous collect has not returned yet")}
	}
	c.busy[i] = true
	c.busyMu.Unlock()

	cctx, cancel := context.WithTimeout(ctx, c.s.Timeout)
	defer cancel()
	done := make(chan outcome, 1)
	c.collects.Add(1)
	go func() {
		defer c.collects.Done()
		ms := pmetric.NewMetricSlice()
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("source panicked: %v", r)
				}
			}()
			return src.Collect(cctx, now, ms)
		}()
		c.busyMu.Lock()
		delete(c.busy, i)
		c.busyMu.Unlock()
		done <- outcome{ms: ms, err: err}
	}()
	select {
	case o := <-done:
		if o.err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			o.err = fmt.Errorf("timed out after %s: %w", c.s.Timeout, o.err)
		}
		return o
	case <-cctx.Done():
		if ctx.Err() != nil {
			return outcome{err: ctx.Err()}
		}
		return outcome{err: fmt.Errorf("timed out after %s and abandoned for this round", c.s.Timeout)}
	}
}

// Report gives a watched component's health to the Health sink at once, when
// it changed since the last report. A Watcher's change hook calls it, so a
// crash reaches the manager without waiting for the next round, and the
// rounds then leave an unchanged component alone.
func (c *Collector) Report(comp Component) {
	c.report(comp.Name, comp.Healthy, componentError(comp))
}

// report gives a component's health to the sink when it changed since the
// last report.
func (c *Collector) report(name string, ok bool, reason string) {
	if c.s.Health == nil {
		return
	}
	h := health{ok: ok, reason: reason}
	c.sentMu.Lock()
	prev, seen := c.sent[name]
	if seen && prev == h {
		c.sentMu.Unlock()
		return
	}
	c.sent[name] = h
	c.sentMu.Unlock()
	if err := c.s.Health.SetComponentHealth(name, ok, reason); err != nil {
		c.log.Warn("could not report component health", "component", name, "error", err)
	}
}

// componentError is what the manager shows of a watched component: its status,
// restarts and last error in one bounded line, in the form the manager reads
// back (fleet.FormatComponentError).
func componentError(comp Component) string {
	return Bounded(fleet.FormatComponentError(comp.Status, comp.Restarts, comp.LastError), MaxErrorBytes)
}

func kindOf(src Source) string {
	if k, ok := src.(Kinded); ok && k.Kind() != "" {
		return k.Kind()
	}
	kind, _, _ := strings.Cut(src.Name(), "/")
	return kind
}

// Bounded cuts s to at most n bytes on a rune boundary, marking the cut with
// "…", so text from a server stays a bounded, valid attribute.
func Bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
