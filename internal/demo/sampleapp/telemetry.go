package sampleapp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// scope names the instrumentation scope of everything the service emits.
const scope = "lighthouse-shop"

// durationBuckets are the semantic conventions' advice for
// http.server.request.duration, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// telemetry is one instance's SDK providers and instruments.
type telemetry struct {
	tp *sdktrace.TracerProvider
	lp *sdklog.LoggerProvider
	mp *sdkmetric.MeterProvider
	// spans and logs are the providers' batch processors, which shutdown
	// also stops directly (see there).
	spans sdktrace.SpanProcessor
	logs  *sdklog.BatchProcessor

	tracer   trace.Tracer
	logger   otellog.Logger
	duration metric.Float64Histogram
	orders   metric.Int64Counter
	done     metric.Int64Counter
}

// exportTimeout bounds one export of the sample service's SDK.
const exportTimeout = 5 * time.Second

// newTelemetry builds the providers. The exporters connect lazily, so this
// opens nothing; the providers' batchers and reader start goroutines, which
// shutdown stops.
func newTelemetry(ctx context.Context, cfg Config, instance string, rnd *rand.Rand) (*telemetry, error) {
	base := strings.TrimRight(cfg.OTLPEndpoint, "/")
	// No retries and a short timeout: a sample service must stop within its
	// Shutdown's deadline even when its agent is already gone, and the SDK's
	// default retries go on for a minute after that (their goroutines with them).
	te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(base+"/v1/traces"), otlptracehttp.WithHeaders(cfg.OTLPHeaders),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}), otlptracehttp.WithTimeout(exportTimeout))
	if err != nil {
		return nil, fmt.Errorf("trace exporter: %w", err)
	}
	le, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(base+"/v1/logs"), otlploghttp.WithHeaders(cfg.OTLPHeaders),
		otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}), otlploghttp.WithTimeout(exportTimeout))
	if err != nil {
		return nil, fmt.Errorf("log exporter: %w", err)
	}
	me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(base+"/v1/metrics"), otlpmetrichttp.WithHeaders(cfg.OTLPHeaders),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}), otlpmetrichttp.WithTimeout(exportTimeout))
	if err != nil {
		return nil, fmt.Errorf("metric exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", ServiceName),
		attribute.String("service.version", cfg.Release),
		attribute.String("service.instance.id", instance),
		attribute.String("telemetry.sdk.language", "go"),
	)
	t := &telemetry{
		spans: sdktrace.NewBatchSpanProcessor(te,
			sdktrace.WithBatchTimeout(cfg.ExportInterval),
			sdktrace.WithExportTimeout(exportTimeout),
			sdktrace.WithMaxQueueSize(cfg.ExportQueue),
			sdktrace.WithMaxExportBatchSize(cfg.ExportQueue/2)),
		logs: sdklog.NewBatchProcessor(le,
			sdklog.WithExportInterval(cfg.ExportInterval),
			sdklog.WithExportTimeout(exportTimeout),
			sdklog.WithMaxQueueSize(cfg.ExportQueue),
			sdklog.WithExportMaxBatchSize(cfg.ExportQueue/2)),
		mp: sdkmetric.NewMeterProvider(
			sdkmetric.WithResource(res),
			sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, sdkmetric.WithInterval(cfg.ExportInterval))),
		),
	}
	t.tp = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithIDGenerator(&idGenerator{r: rnd}),
		sdktrace.WithSpanProcessor(t.spans))
	t.lp = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(t.logs))
	t.tracer = t.tp.Tracer(scope)
	t.logger = t.lp.Logger(scope)
	meter := t.mp.Meter(scope)
	var errs [3]error
	t.duration, errs[0] = meter.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests."), metric.WithExplicitBucketBoundaries(durationBuckets...))
	t.orders, errs[1] = meter.Int64Counter("shop.orders", metric.WithUnit("{order}"),
		metric.WithDescription("Orders placed at checkout, by outcome."))
	t.done, errs[2] = meter.Int64Counter("shop.orders.fulfilled", metric.WithUnit("{order}"),
		metric.WithDescription("Orders the fulfilment worker took from the queue."))
	if err := errors.Join(errs[:]...); err != nil {
		_ = t.shutdown(ctx)
		return nil, fmt.Errorf("instruments: %w", err)
	}
	return t, nil
}

// shutdown flushes and stops the providers, spans first so the logs that
// point at them arrive after them, all within ctx. Their goroutines stop
// whatever ctx: the trace and log providers return at once when ctx has
// ended, without stopping their batch processors and yet marked shut down,
// so a later call cannot stop them either; the processors are therefore
// stopped here directly too (a no-op for one the provider stopped). One
// stopped past ctx drops what it still holds, or sends it within
// exportTimeout.
func (t *telemetry) shutdown(ctx context.Context) error {
	var errs []error
	if err := t.tp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("traces: %w", err))
	}
	if err := t.lp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("logs: %w", err))
	}
	if err := t.mp.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("metrics: %w", err))
	}
	// Their errors are the providers' above, or ctx's.
	_ = t.spans.Shutdown(ctx)
	_ = t.logs.Shutdown(ctx)
	return errors.Join(errs...)
}

// idGenerator draws trace and span ids from the instance's injected source,
// so a seeded run makes the same ids.
type idGenerator struct {
	mu sync.Mutex
	r  *rand.Rand
}

// NewIDs returns a new trace id and root span id.
func (g *idGenerator) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], g.r.Uint64())
		binary.BigEndian.PutUint64(tid[8:], g.r.Uint64())
	}
	return tid, g.spanID()
}

// NewSpanID returns a new span id in a trace.
func (g *idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.spanID()
}

func (g *idGenerator) spanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], g.r.Uint64())
	}
	return sid
}
