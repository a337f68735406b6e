package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Severity numbers as OTLP defines them.
const (
	sevInfo  = plog.SeverityNumberInfo
	sevWarn  = plog.SeverityNumberWarn
	sevError = plog.SeverityNumberError
)

// template is one kind of log line an application writes; text fills in the
// variable parts (ids, durations, user-ish tokens) so bodies are as repetitive,
// and as varied, as real ones.
type template struct {
	sev plog.SeverityNumber
	// http marks lines about one request: they carry the route and status code.
	http bool
	text func(g *rand.Rand, r route) string
}

func ms(g *rand.Rand, median float64) int { return int(median*math.Exp(g.NormFloat64()*0.7)) + 1 }
func id(g *rand.Rand, prefix string) string {
	return prefix + randToken(g, 10)
}
func user(g *rand.Rand) string { return "u_" + randToken(g, 8) }
func ip(g *rand.Rand) string {
	return fmt.Sprintf("10.%d.%d.%d", g.IntN(256), g.IntN(256), 1+g.IntN(254))
}

var templates = []template{
	// INFO
	{sevInfo, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("%s %s completed in %dms", r.method, r.path, ms(g, r.medianMS))
	}},
	{sevInfo, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("handled %s %s for %s status=200 bytes=%d", r.method, r.path, user(g), 200+g.IntN(40000))
	}},
	{sevInfo, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("request %s started by %s from %s", id(g, "req_"), user(g), ip(g))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("user %s logged in via %s", user(g), []string{"password", "sso", "magic link", "api key"}[g.IntN(4)])
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("session %s refreshed for %s", id(g, "sess_"), user(g))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("order %s created with %d items total %d.%02d EUR", id(g, "ord_"), 1+g.IntN(9), g.IntN(900), g.IntN(100))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("payment %s authorized for order %s", id(g, "pay_"), id(g, "ord_"))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("cache hit ratio %d%% over last %d lookups", 70+g.IntN(30), 1000*(1+g.IntN(50)))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("cache refresh of %s completed in %dms", []string{"catalog", "prices", "config", "feature flags"}[g.IntN(4)], ms(g, 40))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("db pool stats: open=%d idle=%d in_use=%d wait_count=%d", 20, g.IntN(20), g.IntN(20), g.IntN(5))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("published event %s to topic %s partition %d", id(g, "evt_"), []string{"orders", "payments", "audit", "notifications"}[g.IntN(4)], g.IntN(12))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("consumed %d messages from %s in %dms", 1+g.IntN(500), []string{"orders", "payments", "audit"}[g.IntN(3)], ms(g, 15))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("scheduled job %s finished: processed=%d skipped=%d", []string{"cleanup", "reindex", "digest", "sync"}[g.IntN(4)], g.IntN(10000), g.IntN(50))
	}},
	{sevInfo, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("%s: validated payload for %s in %dms", r.function, id(g, "obj_"), ms(g, 2))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("email queued for %s template=%s", user(g), []string{"welcome", "receipt", "reset"}[g.IntN(3)])
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("feature flag %s evaluated to %t for %s", []string{"new-checkout", "fast-search", "beta-ui"}[g.IntN(3)], g.IntN(2) == 0, user(g))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string { return fmt.Sprintf("health check ok in %dms", ms(g, 1)) }},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("GC pause %dus heap=%dMiB goroutines=%d", 50+g.IntN(900), 64+g.IntN(900), 50+g.IntN(400))
	}},
	{sevInfo, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("query %s returned %d rows in %dms", r.function, g.IntN(200), ms(g, 3))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("shipment %s label created carrier=%s", id(g, "shp_"), []string{"dhl", "ups", "fedex", "postnl"}[g.IntN(4)])
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("webhook %s delivered attempt=1 status=200", id(g, "wh_"))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("token issued for %s scope=%s ttl=3600s", user(g), []string{"read", "write", "admin"}[g.IntN(3)])
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("search %q matched %d documents", randToken(g, 6), g.IntN(5000))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("inventory reserved sku=%s qty=%d warehouse=%s", randToken(g, 8), 1+g.IntN(5), []string{"ams1", "fra2", "iad1"}[g.IntN(3)])
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string { return fmt.Sprintf("config reloaded version=%d", 100+g.IntN(50)) }},
	{sevInfo, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("outbound call to %s took %dms", []string{"stripe", "s3", "sendgrid", "auth0"}[g.IntN(4)], ms(g, r.medianMS/2))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("user %s updated profile fields=%d", user(g), 1+g.IntN(6))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("rate limiter: %d tokens left for %s", g.IntN(100), ip(g))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("export %s ready size=%dKiB", id(g, "exp_"), g.IntN(90000))
	}},
	{sevInfo, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("connection from %s closed after %ds", ip(g), g.IntN(600))
	}},
	// WARN
	{sevWarn, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("slow request %s %s took %dms (threshold 500ms)", r.method, r.path, 500+ms(g, 300))
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("upstream %s timeout after %dms, retrying (attempt %d/3)", []string{"inventory", "payments", "pricing", "auth"}[g.IntN(4)], 1000*(1+g.IntN(5)), 1+g.IntN(3))
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("cache miss storm: %d misses in 10s", 100+g.IntN(5000))
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("db pool exhausted, waited %dms for a connection", ms(g, 80))
	}},
	{sevWarn, true, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("invalid input from %s: field %q missing", user(g), []string{"email", "amount", "currency", "address"}[g.IntN(4)])
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("rate limit exceeded for %s (%d req/min)", ip(g), 600+g.IntN(600))
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("deprecated API version v1 used by client %s", randToken(g, 12))
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("webhook %s delivery failed status=%d, will retry", id(g, "wh_"), []int{429, 502, 503}[g.IntN(3)])
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("read timeout on replica %s, falling back to primary", ip(g))
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string { return fmt.Sprintf("heap usage %d%% of limit", 80+g.IntN(19)) }},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("token for %s expires in %ds", user(g), g.IntN(300))
	}},
	{sevWarn, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("message %s redelivered %d times", id(g, "msg_"), 2+g.IntN(5))
	}},
	// ERROR
	{sevError, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("%s %s failed: context deadline exceeded (timeout %dms)", r.method, r.path, 1000*(1+g.IntN(10)))
	}},
	{sevError, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("payment %s declined: %s", id(g, "pay_"), []string{"insufficient funds", "card expired", "fraud suspected"}[g.IntN(3)])
	}},
	{sevError, true, func(g *rand.Rand, r route) string {
		return fmt.Sprintf("unhandled exception in %s: %s", r.function, []string{"NullPointerException", "KeyError: 'id'", "index out of range [3] with length 3", "TypeError: cannot read properties of undefined"}[g.IntN(4)])
	}},
	{sevError, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("db query failed: deadlock detected on %s", []string{"orders", "accounts", "stock"}[g.IntN(3)])
	}},
	{sevError, false, func(g *rand.Rand, _ route) string { return fmt.Sprintf("connection to %s:5432 refused", ip(g)) }},
	{sevError, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("failed to publish event %s: broker timeout", id(g, "evt_"))
	}},
	{sevError, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("order %s stuck in state %s for %ds", id(g, "ord_"), []string{"PENDING", "RESERVED"}[g.IntN(2)], 300+g.IntN(3000))
	}},
	{sevError, false, func(g *rand.Rand, _ route) string {
		return fmt.Sprintf("TLS handshake with %s failed: certificate expired", []string{"api.partner.example", "sftp.bank.example"}[g.IntN(2)])
	}},
}

// bySeverity indexes templates per severity for drawing.
var bySeverity = map[plog.SeverityNumber][]template{}

func init() {
	for _, t := range templates {
		bySeverity[t.sev] = append(bySeverity[t.sev], t)
	}
}

// gen turns planned requests into tagged OTLP export requests. Each request has
// its own source seeded from the run's seed and its index, so requests can be
// generated in parallel and in any order and still come out the same.
type gen struct {
	f    *fleet
	seed uint64
}

// stream separates the sources of logs and spans requests.
const (
	logStream  = 1 << 40
	spanStream = 2 << 40
)

func (g *gen) rng(stream uint64, r request) *rand.Rand {
	return rand.New(rand.NewPCG(g.seed, stream+uint64(r.index)))
}

// tagResource writes what a deployment's agent and the manager's tagger leave on
// a resource: the deployment context, and the usual SDK and Kubernetes attributes.
func (g *gen) tagResource(res pcommon.Resource, d *deployment, s *service, rel, replica int) {
	a := res.Attributes()
	a.EnsureCapacity(15)
	a.PutStr("service.name", s.name)
	a.PutStr("service.instance.id", s.replicas[rel][replica])
	a.PutStr("container.name", s.name)
	a.PutStr("k8s.pod.name", s.replicas[rel][replica])
	a.PutStr("k8s.namespace.name", d.namespace)
	a.PutStr("telemetry.sdk.language", s.lang)
	a.PutStr("telemetry.sdk.name", "opentelemetry")
	a.PutStr("telemetry.sdk.version", "1.38.0")
	a.PutStr(otlp.AttrDeploymentID, d.id)
	a.PutStr(otlp.AttrCustomer, d.customer)
	a.PutStr(otlp.AttrCloudProvider, d.cloud)
	a.PutStr(otlp.AttrCloudRegion, d.region)
	a.PutStr(otlp.AttrCloudPlatform, d.platform)
	a.PutStr(otlp.AttrRelease, g.f.releases[rel])
	a.PutStr(otlp.AttrStack, d.stack)
}

// resKey is one resource of a request: a replica of a service on a release.
type resKey struct{ svc, rel, replica int }

// times returns n sorted timestamps spread over (from, to].
func times(rng *rand.Rand, from, to time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	width := float64(to.Sub(from))
	for i := range out {
		out[i] = from.Add(time.Duration(width * (float64(i) + rng.Float64()) / float64(n)))
	}
	return out
}

// logs builds the logs request r.
func (g *gen) logs(r request) consumer.Batch {
	rng := g.rng(logStream, r)
	d := r.dep
	ld := plog.NewLogs()
	scopes := map[resKey]plog.LogRecordSlice{}
	var trace pcommon.TraceID
	for _, ts := range times(rng, r.from, r.to, r.records) {
		rel := d.releaseAt(ts)
		si := rng.IntN(len(d.services))
		s := d.services[si]
		k := resKey{si, rel, rng.IntN(len(s.replicas[rel]))}
		lrs, ok := scopes[k]
		if !ok {
			rl := ld.ResourceLogs().AppendEmpty()
			g.tagResource(rl.Resource(), d, s, k.rel, k.replica)
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName("github.com/" + d.customer + "/" + s.name)
			lrs = sl.LogRecords()
			scopes[k] = lrs
		}
		// Mostly INFO; a bad release logs more errors.
		sev := sevInfo
		errShare := 0.03
		if rel == d.badRelease {
			errShare = 0.08
		}
		switch x := rng.Float64(); {
		case x < errShare:
			sev = sevError
		case x < errShare+0.07:
			sev = sevWarn
		}
		ts2 := bySeverity[sev]
		t := ts2[rng.IntN(len(ts2))]
		rt := s.routes[rng.IntN(len(s.routes))]
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(ts))
		lr.SetSeverityNumber(sev)
		lr.SetSeverityText(sev.String())
		lr.Body().SetStr(t.text(rng, rt))
		attrs := lr.Attributes()
		if t.http {
			attrs.PutStr("http.route", rt.path)
			code := int64(200)
			switch sev {
			case sevWarn:
				code = []int64{200, 400, 429}[rng.IntN(3)]
			case sevError:
				code = []int64{500, 502, 504}[rng.IntN(3)]
			}
			attrs.PutInt("http.status_code", code)
		}
		if rng.IntN(5) < 2 {
			attrs.PutStr("code.function", rt.function)
		}
		// About 30% of records are written inside a traced request; neighbours
		// often share the trace.
		if rng.Float64() < 0.3 {
			if trace.IsEmpty() || rng.IntN(2) == 0 {
				trace = newTraceID(rng)
			}
			lr.SetTraceID(trace)
			lr.SetSpanID(newSpanID(rng))
		}
	}
	data, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		panic(fmt.Sprintf("marshal logs: %v", err)) // pdata built here always marshals
	}
	return consumer.Batch{Signal: otlp.Logs, DeploymentID: d.id, Received: r.to, Records: r.records, Data: data}
}

func newTraceID(rng *rand.Rand) pcommon.TraceID {
	var id pcommon.TraceID
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return id
}

func newSpanID(rng *rand.Rand) pcommon.SpanID {
	var id pcommon.SpanID
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return id
}

// spanCounts is the distribution of spans per trace, 1 to 8.
var spanCounts = []float64{0.15, 0.15, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05}

// tracesOut is a spans request and a trace known to be stored whole, for the
// trace-by-id queries.
type tracesOut struct {
	batch  consumer.Batch
	sample string
}

// spans builds the spans request r: whole traces of 1-8 spans until the request
// holds r.records spans (the last trace is cut short to fit).
func (g *gen) spans(r request) tracesOut {
	rng := g.rng(spanStream, r)
	d := r.dep
	td := ptrace.NewTraces()
	scopes := map[resKey]ptrace.SpanSlice{}
	scopeOf := func(si, rel int) ptrace.SpanSlice {
		s := d.services[si]
		k := resKey{si, rel, rng.IntN(len(s.replicas[rel]))}
		ss, ok := scopes[k]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			g.tagResource(rs.Resource(), d, s, k.rel, k.replica)
			sc := rs.ScopeSpans().AppendEmpty()
			sc.Scope().SetName("github.com/" + d.customer + "/" + s.name)
			ss = sc.Spans()
			scopes[k] = ss
		}
		return ss
	}
	// Roughly one trace per 3.6 spans; spread their starts over the window.
	starts := times(rng, r.from, r.to, max(1, r.records*10/36))
	left := r.records
	out := tracesOut{}
	for i := 0; left > 0; i++ {
		at := starts[min(i, len(starts)-1)]
		rel := d.releaseAt(at)
		n := 1
		for x := rng.Float64(); n < len(spanCounts) && x >= spanCounts[n-1]; n++ {
			x -= spanCounts[n-1]
		}
		whole := n <= left
		n = min(n, left)
		left -= n
		tid := newTraceID(rng)
		if whole && out.sample == "" {
			out.sample = tid.String()
		}
		si := rng.IntN(len(d.services))
		s := d.services[si]
		rt := s.routes[rng.IntN(len(s.routes))]
		bad := rel == d.badRelease
		errRate, slow := 0.02, 1.0
		if bad {
			errRate, slow = 0.06, 1.4
		}
		dur := time.Duration(rt.medianMS * slow * math.Exp(rng.NormFloat64()*0.6) * float64(time.Millisecond))
		failed := rng.Float64() < errRate
		root := scopeOf(si, rel).AppendEmpty()
		rootID := newSpanID(rng)
		root.SetTraceID(tid)
		root.SetSpanID(rootID)
		root.SetName(rt.method + " " + rt.path)
		root.SetKind(ptrace.SpanKindServer)
		root.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
		root.SetEndTimestamp(pcommon.NewTimestampFromTime(at.Add(dur)))
		ra := root.Attributes()
		ra.PutStr("http.route", rt.path)
		ra.PutStr("http.request.method", rt.method)
		status := int64(200)
		if failed {
			status = 500
			root.Status().SetCode(ptrace.StatusCodeError)
			root.Status().SetMessage([]string{"internal error", "upstream timeout", "database unavailable"}[rng.IntN(3)])
		} else if rng.IntN(30) == 0 {
			status = 404
		}
		ra.PutInt("http.response.status_code", status)
		// Children run inside the root, one after another.
		cursor := at.Add(dur / 20)
		for c := 1; c < n; c++ {
			share := dur / time.Duration(n+1)
			cd := time.Duration(float64(share) * (0.3 + 0.7*rng.Float64()))
			sp := scopeOf(si, rel).AppendEmpty()
			sid := newSpanID(rng)
			sp.SetTraceID(tid)
			sp.SetSpanID(sid)
			sp.SetParentSpanID(rootID)
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(cursor))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(cursor.Add(cd)))
			cursor = cursor.Add(share)
			a := sp.Attributes()
			switch kind := rng.IntN(10); {
			case kind < 5:
				op := []string{"SELECT", "INSERT", "UPDATE"}[rng.IntN(3)]
				table := resources[s.name][rng.IntN(len(resources[s.name]))] + "s"
				sp.SetName(op + " " + table)
				sp.SetKind(ptrace.SpanKindClient)
				a.PutStr("db.system.name", "postgresql")
				a.PutStr("db.operation.name", op)
				a.PutStr("db.collection.name", table)
			case kind < 8:
				callee := d.services[rng.IntN(len(d.services))].name
				sp.SetName("GET")
				sp.SetKind(ptrace.SpanKindClient)
				a.PutStr("http.request.method", "GET")
				a.PutStr("server.address", callee)
				a.PutInt("http.response.status_code", 200)
			default:
				sp.SetName([]string{"validate", "serialize", "render", "authorize"}[rng.IntN(4)])
				sp.SetKind(ptrace.SpanKindInternal)
				a.PutStr("code.function", rt.function)
			}
			if failed && c == n-1 {
				sp.Status().SetCode(ptrace.StatusCodeError)
			}
		}
	}
	data, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		panic(fmt.Sprintf("marshal traces: %v", err)) // pdata built here always marshals
	}
	out.batch = consumer.Batch{Signal: otlp.Traces, DeploymentID: d.id, Received: r.to, Records: r.records, Data: data}
	return out
}
