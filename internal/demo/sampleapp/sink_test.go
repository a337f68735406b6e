package sampleapp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
)

// sink is the project's OTLP/HTTP receiver (the one the agent runs) with a
// consumer that keeps what arrives, decoded.
type sink struct {
	url string
	// redact, when set, is applied to every request first, as the agent's
	// pipeline does.
	redact *redact.Policy

	mu      sync.Mutex
	traces  []ptrace.Traces
	logs    []plog.Logs
	metrics []pmetric.Metrics
}

func newSink(t testing.TB) *sink { return newRedactingSink(t, nil) }

func newRedactingSink(t testing.TB, p *redact.Policy) *sink {
	s := &sink{redact: p}
	mux := http.NewServeMux()
	(&receiver.HTTP{Consumer: consumer.ConsumerFunc(s.consume)}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *sink) consume(_ context.Context, r consumer.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.redact != nil {
		clean, err := s.redact.Request(r.Signal, nil, r.Body, nil)
		if err != nil {
			return consumer.Malformed("%v", err)
		}
		r.Body = clean
	}
	switch r.Signal {
	case otlp.Traces:
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(r.Body); err != nil {
			return consumer.Malformed("%v", err)
		}
		s.traces = append(s.traces, req.Traces())
	case otlp.Logs:
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(r.Body); err != nil {
			return consumer.Malformed("%v", err)
		}
		s.logs = append(s.logs, req.Logs())
	case otlp.Metrics:
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(r.Body); err != nil {
			return consumer.Malformed("%v", err)
		}
		s.metrics = append(s.metrics, req.Metrics())
	}
	return nil
}

// span is what the tests look at in a span.
type span struct {
	name, function, release, route string
	kind                           ptrace.SpanKind
	failed                         bool
	duration                       time.Duration
}

func (s *sink) spans() []span {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []span
	for _, td := range s.traces {
		for _, rs := range td.ResourceSpans().All() {
			rel, _ := rs.Resource().Attributes().Get("service.version")
			for _, ss := range rs.ScopeSpans().All() {
				for _, sp := range ss.Spans().All() {
					fn, _ := sp.Attributes().Get("code.function.name")
					route, _ := sp.Attributes().Get("http.route")
					out = append(out, span{name: sp.Name(), function: fn.Str(), release: rel.Str(), route: route.Str(),
						kind: sp.Kind(), failed: sp.Status().Code() == ptrace.StatusCodeError,
						duration: sp.EndTimestamp().AsTime().Sub(sp.StartTimestamp().AsTime())})
				}
			}
		}
	}
	return out
}

// logRecord is what the tests look at in a log record.
type logRecord struct {
	body, severity, function, release string
	attrs                             map[string]any
	traced                            bool
}

func (s *sink) logRecords() []logRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logRecord
	for _, ld := range s.logs {
		for _, rl := range ld.ResourceLogs().All() {
			rel, _ := rl.Resource().Attributes().Get("service.version")
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					fn, _ := lr.Attributes().Get("code.function.name")
					out = append(out, logRecord{body: lr.Body().AsString(), severity: lr.SeverityText(), function: fn.Str(),
						release: rel.Str(), attrs: lr.Attributes().AsRaw(), traced: !lr.TraceID().IsEmpty()})
				}
			}
		}
	}
	return out
}

// histogramCount is the newest cumulative count of a histogram, summed over
// its series, and sumOf the newest value of a sum metric whose points carry
// attr=val.
func (s *sink) histogramCount(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total uint64
	for _, m := range s.newest(name) {
		for _, p := range m.Histogram().DataPoints().All() {
			total += p.Count()
		}
	}
	return total
}

func (s *sink) sumOf(name, attr, val string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total int64
	for _, m := range s.newest(name) {
		for _, p := range m.Sum().DataPoints().All() {
			if v, ok := p.Attributes().Get(attr); attr == "" || (ok && v.Str() == val) {
				total += p.IntValue()
			}
		}
	}
	return total
}

// newest returns the metric from the last export that has it, per resource
// (the points are cumulative); the caller holds mu.
func (s *sink) newest(name string) map[string]pmetric.Metric {
	out := map[string]pmetric.Metric{}
	for _, md := range s.metrics {
		for _, rm := range md.ResourceMetrics().All() {
			id, _ := rm.Resource().Attributes().Get("service.instance.id")
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() == name {
						out[id.Str()] = m
					}
				}
			}
		}
	}
	return out
}
