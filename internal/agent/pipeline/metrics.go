package pipeline

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// metrics are the pipeline's self-metrics. They also implement forward.Observer.
type metrics struct {
	accepted, refused, sent, sentBytes, retried, dropped *prometheus.CounterVec
	redactions, redactedRecords                          *prometheus.CounterVec
	// byReason holds redactions' counters per signal and reason, looked up once:
	// the receive path adds to them on every request that lost something.
	byReason map[otlp.Signal]*[redact.NumReasons]prometheus.Counter
	records  map[otlp.Signal]prometheus.Counter
	loss     *lossTracker
	rec      Recorder
}

func newMetrics(reg prometheus.Registerer, lanes map[otlp.Signal]*lane, loss *lossTracker, rec Recorder) (*metrics, error) {
	m := &metrics{loss: loss, rec: rec,
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_accepted_records_total",
			Help: "Log records, spans and metric data points accepted from the application and queued.",
		}, []string{"signal"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_refused_records_total",
			Help: "Records refused at receive time (the sender was told and may retry), by reason.",
		}, []string{"signal", "reason"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_sent_records_total",
			Help: "Records the manager accepted.",
		}, []string{"signal"}),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_sent_bytes_total",
			Help: "Uncompressed bytes of OTLP the manager accepted.",
		}, []string{"signal"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_retried_requests_total",
			Help: "Requests to the manager that failed and will be retried, by reason (HTTP status or network).",
		}, []string{"signal", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_dropped_records_total",
			Help: "Accepted records that will never reach the manager, by reason: queue_full (dropped oldest to make room), " +
				"expired (older than the queue's max age), corrupt, refused (by the manager), request, encode.",
		}, []string{"signal", "reason"}),
		redactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_redactions_total",
			Help: "Parts of records the redaction policy removed before queueing, by signal and reason: a detector " +
				"(email, card, ip, bearer, api_key, jwt, password, custom), url, sql, secret (a secret-named key), " +
				"attribute (allow/deny list), truncated, dropped_record.",
		}, []string{"signal", "reason"}),
		redactedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_agent_redacted_records_total",
			Help: "Records (log records, spans, metric points) that lost something to the redaction policy.",
		}, []string{"signal"}),
	}
	m.byReason = map[otlp.Signal]*[redact.NumReasons]prometheus.Counter{}
	m.records = map[otlp.Signal]prometheus.Counter{}
	for _, sig := range otlp.Signals {
		var cs [redact.NumReasons]prometheus.Counter
		for _, r := range redact.Reasons() {
			cs[r] = m.redactions.WithLabelValues(sig.String(), r.String())
		}
		m.byReason[sig] = &cs
		m.records[sig] = m.redactedRecords.WithLabelValues(sig.String())
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.accepted, m.refused, m.sent, m.sentBytes, m.retried, m.dropped, m.redactions, m.redactedRecords}
	for sig, q := range lanes {
		labels := prometheus.Labels{"signal": sig.String()}
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "periscope_agent_queue_bytes", ConstLabels: labels,
				Help: "Bytes waiting in the disk queue."}, func() float64 { return float64(q.stats().Bytes) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "periscope_agent_queue_entries", ConstLabels: labels,
				Help: "Requests waiting in the disk queue."}, func() float64 { return float64(q.stats().Records) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "periscope_agent_queue_dropped_entries_total", ConstLabels: labels,
				Help: "Queued requests dropped by the queue's age or size bound before they could be sent."},
				func() float64 { return float64(q.stats().DroppedRecords) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "periscope_agent_queue_corrupt_bytes_total", ConstLabels: labels,
				Help: "Bytes of torn or corrupt queue records skipped when the queue was opened."},
				func() float64 { return float64(q.stats().CorruptBytes) }),
		)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("pipeline metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) Sent(sig otlp.Signal, records, bytes int) {
	m.sent.WithLabelValues(sig.String()).Add(float64(records))
	m.sentBytes.WithLabelValues(sig.String()).Add(float64(bytes))
	if m.rec != nil {
		m.rec.Sent(sig, records, bytes)
	}
}

// redacted counts what redaction removed from one request.
func (m *metrics) redacted(sig otlp.Signal, st *redact.Stats) {
	cs := m.byReason[sig]
	for r, n := range st.Reasons {
		if n > 0 {
			cs[r].Add(float64(n))
		}
	}
	if st.Records > 0 {
		m.records[sig].Add(float64(st.Records))
	}
}

func (m *metrics) Retried(sig otlp.Signal, reason string) {
	m.retried.WithLabelValues(sig.String(), reason).Inc()
}

func (m *metrics) Dropped(sig otlp.Signal, records int, reason string) {
	m.dropped.WithLabelValues(sig.String(), reason).Add(float64(records))
	m.loss.add(sig, reason, int64(records))
}

// selfMetricsLoop queues the agent's own metrics as OTLP every interval, so they reach
// the manager tagged like the application's and survive an outage the same way.
func (p *Pipeline) selfMetricsLoop(ctx context.Context) {
	t := time.NewTicker(p.s.SelfMetricsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		body, err := p.selfMetrics()
		if err == nil {
			err = p.Consume(ctx, consumer.Request{Signal: otlp.Metrics, Body: body, Header: func(string) string { return "" }})
		}
		if err != nil {
			p.log.Warn("could not queue the agent's own metrics", "error", err)
		}
	}
}

// selfMetrics converts the agent's Prometheus metrics named periscope_agent_* and
// process/go runtime metrics into an OTLP metrics export request.
func (p *Pipeline) selfMetrics() ([]byte, error) {
	families, err := p.s.Gatherer.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather self-metrics: %w", err)
	}
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	// In a fixed order: the manager's store tells series apart by their
	// resource as written, and a map's random order made new series.
	for _, k := range slices.Sorted(maps.Keys(p.s.Resource)) {
		rm.Resource().Attributes().PutStr(k, p.s.Resource[k])
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("periscope-agent")
	now := pcommon.NewTimestampFromTime(p.s.Clock.Now())
	for _, fam := range families {
		var m pmetric.Metric
		var points pmetric.NumberDataPointSlice
		switch fam.GetType() {
		case dto.MetricType_COUNTER:
			m = sm.Metrics().AppendEmpty()
			sum := m.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			points = sum.DataPoints()
		case dto.MetricType_GAUGE:
			m = sm.Metrics().AppendEmpty()
			points = m.SetEmptyGauge().DataPoints()
		default:
			continue // histograms and summaries stay on /metrics
		}
		m.SetName(fam.GetName())
		m.SetDescription(fam.GetHelp())
		for _, pm := range fam.GetMetric() {
			dp := points.AppendEmpty()
			dp.SetTimestamp(now)
			for _, l := range pm.GetLabel() {
				dp.Attributes().PutStr(l.GetName(), l.GetValue())
			}
			if fam.GetType() == dto.MetricType_COUNTER {
				dp.SetDoubleValue(pm.GetCounter().GetValue())
			} else {
				dp.SetDoubleValue(pm.GetGauge().GetValue())
			}
		}
	}
	// The data message and the export request share field 1; pmetricotlp would link
	// grpc-go into the agent.
	return (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
}
