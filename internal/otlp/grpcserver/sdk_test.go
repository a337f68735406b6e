package grpcserver

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// signalCounter counts the records of each signal it is handed, decoding them with
// the Collector's pdata as a downstream would.
type signalCounter struct {
	mu sync.Mutex
	n  map[otlp.Signal]int
}

func (c *signalCounter) Consume(_ context.Context, r consumer.Request) error {
	var n int
	switch r.Signal {
	case otlp.Logs:
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(r.Body); err != nil {
			return consumer.Malformed("%v", err)
		}
		n = req.Logs().LogRecordCount()
	case otlp.Traces:
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(r.Body); err != nil {
			return consumer.Malformed("%v", err)
		}
		n = req.Traces().SpanCount()
	case otlp.Metrics:
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(r.Body); err != nil {
			return consumer.Malformed("%v", err)
		}
		n = req.Metrics().DataPointCount()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r.Signal] += n
	return nil
}

// The official OpenTelemetry Go SDK's gRPC exporters, compressing with gzip as many
// deployments configure them, export every signal to the receiver.
func TestOpenTelemetrySDKExportsOverGRPC(t *testing.T) {
	c := &signalCounter{n: map[otlp.Signal]int{}}
	_, addr := startGRPC(t, c, 0, nil)
	ctx := context.Background()

	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure(), otlptracegrpc.WithCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(te))
	for range 700 { // more than one batch of 512
		_, span := tp.Tracer("checkout").Start(ctx, "charge card")
		span.End()
	}

	le, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(addr), otlploggrpc.WithInsecure(), otlploggrpc.WithCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(le)))
	for range 30 {
		var rec otellog.Record
		rec.SetBody(attribute.StringValue("payment declined"))
		lp.Logger("checkout").Emit(ctx, rec)
	}

	me, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(addr), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)))
	counter, _ := mp.Meter("checkout").Int64Counter("orders")
	counter.Add(ctx, 3)

	for _, shutdown := range []func(context.Context) error{tp.Shutdown, lp.Shutdown, mp.Shutdown} {
		if err := shutdown(ctx); err != nil {
			t.Fatalf("SDK export: %v", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[otlp.Traces] != 700 || c.n[otlp.Logs] != 30 || c.n[otlp.Metrics] != 1 {
		t.Errorf("received %d spans, %d log records, %d data points; want 700, 30, 1",
			c.n[otlp.Traces], c.n[otlp.Logs], c.n[otlp.Metrics])
	}
}
