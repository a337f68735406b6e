package redact

import (
	"bytes"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

func compile(t testing.TB, vendor, local redactpolicy.Policy) *Policy {
	t.Helper()
	p, err := Compile(redactpolicy.Merge(vendor, local), []byte("test hash key"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func logsBody(t testing.TB, ld plog.Logs) []byte {
	t.Helper()
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readLogs(t testing.TB, b []byte) plog.Logs {
	t.Helper()
	ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
	if err != nil {
		t.Fatalf("redacted logs do not decode: %v", err)
	}
	return ld
}

func attrString(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return "<absent>"
	}
	return v.AsString()
}

func attrInt(m pcommon.Map, k string) int64 {
	v, ok := m.Get(k)
	if !ok {
		return 0
	}
	return v.Int()
}

// A log record full of personal data comes out with only the personal parts gone:
// attributes, URL and statement attributes, string and structured bodies, and the
// record says what it lost.
func TestRedactLogs(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.Resource().Attributes().PutStr("host.ip", "203.0.113.7")
	rl.Resource().Attributes().PutStr("periscope.customer", "acme")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("checkout/handlers")

	lr := sl.LogRecords().AppendEmpty()
	lr.Body().SetStr("payment by alice@example.com with card 4111 1111 1111 1111 failed for order 1234567890123")
	a := lr.Attributes()
	a.PutStr("user.email", "bob@example.org")
	a.PutStr("http.request.header.authorization", "Basic dXNlcjpwYXNz")
	a.PutStr("url.full", "https://api.example.com/v1/orders?customer=alice&page=2")
	a.PutStr("db.statement", "SELECT * FROM users WHERE email = 'carol@example.com' AND id = 42")
	a.PutStr("http.route", "/v1/orders/{id}")
	a.PutInt("http.response.status_code", 500)

	lr2 := sl.LogRecords().AppendEmpty()
	body := lr2.Body().SetEmptyMap()
	user := body.PutEmptyMap("user")
	user.PutStr("email", "dave@example.net")
	user.PutStr("password", "hunter2")
	user.PutStr("name", "Dave")
	items := body.PutEmptySlice("cards")
	items.AppendEmpty().SetStr("5555 5555 5555 4444")
	items.AppendEmpty().SetStr("order 4111111111111112")
	body.PutStr("event", "checkout failed")

	in := logsBody(t, ld)
	p := compile(t, redactpolicy.Policy{}, redactpolicy.Policy{})
	var st Stats
	out, err := p.Request(otlp.Logs, nil, in, &st)
	if err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, out)
	res := got.ResourceLogs().At(0).Resource().Attributes()
	if s := attrString(res, "host.ip"); s != "[REDACTED:ip]" {
		t.Errorf("resource host.ip = %q", s)
	}
	if attrString(res, "service.name") != "checkout" || attrString(res, "periscope.customer") != "acme" {
		t.Errorf("resource lost operational keys: %v", res.AsRaw())
	}
	if attrInt(res, "periscope.redacted.ip") != 1 {
		t.Errorf("resource count attributes: %v", res.AsRaw())
	}
	recs := got.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	r1 := recs.At(0)
	if b := r1.Body().Str(); b != "payment by [REDACTED:email] with card [REDACTED:card] failed for order 1234567890123" {
		t.Errorf("body = %q", b)
	}
	at := r1.Attributes()
	want := map[string]string{
		"user.email":                        "[REDACTED:email]",
		"http.request.header.authorization": "[REDACTED:secret]",
		"url.full":                          "https://api.example.com/v1/orders?customer=REDACTED&page=2",
		"db.statement":                      "SELECT * FROM users WHERE email = ? AND id = ?",
		"http.route":                        "/v1/orders/{id}",
		"http.response.status_code":         "500",
	}
	for k, v := range want {
		if g := attrString(at, k); g != v {
			t.Errorf("attribute %s = %q, want %q", k, g, v)
		}
	}
	for k, n := range map[string]int64{"email": 2, "card": 1, "secret": 1, "url": 1, "sql": 2} {
		if g := attrInt(at, "periscope.redacted."+k); g != n {
			t.Errorf("count attribute %s = %d, want %d (all: %v)", k, g, n, at.AsRaw())
		}
	}
	raw := recs.At(1).Body().Map().AsRaw()
	u := raw["user"].(map[string]any)
	if u["email"] != "[REDACTED:email]" || u["password"] != "[REDACTED:secret]" || u["name"] != "Dave" {
		t.Errorf("structured body user = %v", u)
	}
	cards := raw["cards"].([]any)
	if cards[0] != "[REDACTED:card]" || cards[1] != "order 4111111111111112" || raw["event"] != "checkout failed" {
		t.Errorf("structured body = %v", raw)
	}
	if st.Records != 2 || st.Reasons[KindEmail] != 3 || st.Reasons[KindCard] != 2 || st.Reasons[ReasonSecret] != 2 || st.Reasons[KindIP] != 1 {
		t.Errorf("stats = %+v", st)
	}
	found := false
	for _, r := range st.Removals {
		if r.Reason == Reason(KindEmail) && r.Key == "user.email" && r.Count == 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("removals = %+v, want user.email email 1", st.Removals)
	}

	// Redacting again changes nothing.
	again, err := p.Request(otlp.Logs, nil, out, nil)
	if err != nil || !bytes.Equal(again, out) {
		t.Errorf("a second pass changed the request (err %v)", err)
	}
}

func TestNothingToRedactIsFree(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	sl := rl.ScopeLogs().AppendEmpty()
	for i := range 50 {
		lr := sl.LogRecords().AppendEmpty()
		lr.Body().SetStr("order 1234567890123 shipped in 42 ms, request id 0b6c2f1e-3a4d-4c5b-9e8f-7a6b5c4d3e2f")
		lr.Attributes().PutStr("http.route", "/v1/orders/{id}")
		lr.Attributes().PutInt("attempt", int64(i))
	}
	in := logsBody(t, ld)
	p := compile(t, redactpolicy.Policy{}, redactpolicy.Policy{})
	out, err := p.Request(otlp.Logs, nil, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if &out[0] != &in[0] || len(out) != len(in) {
		t.Fatal("a request with nothing to redact was copied")
	}
	var st Stats
	allocs := testing.AllocsPerRun(100, func() {
		st = Stats{}
		_, _ = p.Request(otlp.Logs, nil, in, &st)
	})
	if allocs > 0 && !raceEnabled {
		t.Errorf("%.1f allocations per clean request, want 0", allocs)
	}
}

func TestRedactTraces(t *testing.T) {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	sp := ss.Spans().AppendEmpty()
	sp.SetName("POST /v1/payments")
	sp.Attributes().PutStr("http.target", "/v1/payments?token=abc123&limit=10")
	sp.Attributes().PutStr("enduser.id", "erin@example.com")
	sp.Attributes().PutStr("code.function.name", "payments.Charge")
	ev := sp.Events().AppendEmpty()
	ev.SetName("exception")
	ev.Attributes().PutStr("exception.type", "CardDeclined")
	ev.Attributes().PutStr("exception.message", "card 4012888888881881 declined for frank@example.com")
	ev.Attributes().PutStr("exception.stacktrace", "at payments.Charge(payments.go:42)\n  token=ghp_abcdefghijklmnopqrstuvwxyz0123456789")
	sp.Status().SetMessage("declined: call from 198.51.100.23")
	ln := sp.Links().AppendEmpty()
	ln.Attributes().PutStr("peer", "grace@example.com")

	in, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		t.Fatal(err)
	}
	p := compile(t, redactpolicy.Policy{}, redactpolicy.Policy{})
	out, err := p.Request(otlp.Traces, nil, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(out)
	if err != nil {
		t.Fatal(err)
	}
	s := got.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0)
	if s.Name() != "POST /v1/payments" {
		t.Errorf("span name = %q", s.Name())
	}
	if g := attrString(s.Attributes(), "http.target"); g != "/v1/payments?token=REDACTED&limit=10" {
		t.Errorf("http.target = %q", g)
	}
	if g := attrString(s.Attributes(), "enduser.id"); g != "[REDACTED:email]" {
		t.Errorf("enduser.id = %q", g)
	}
	if g := attrString(s.Attributes(), "code.function.name"); g != "payments.Charge" {
		t.Errorf("code.function.name = %q", g)
	}
	e := s.Events().At(0).Attributes()
	if g := attrString(e, "exception.message"); g != "card [REDACTED:card] declined for [REDACTED:email]" {
		t.Errorf("exception.message = %q", g)
	}
	if g := attrString(e, "exception.stacktrace"); strings.Contains(g, "ghp_") || !strings.Contains(g, "payments.go:42") {
		t.Errorf("exception.stacktrace = %q", g)
	}
	if g := attrString(e, "exception.type"); g != "CardDeclined" {
		t.Errorf("exception.type = %q", g)
	}
	if g := s.Status().Message(); g != "declined: call from [REDACTED:ip]" {
		t.Errorf("status = %q", g)
	}
	if g := attrString(s.Links().At(0).Attributes(), "peer"); g != "[REDACTED:email]" {
		t.Errorf("link attribute = %q", g)
	}
	// Everything found in the span, its events, links and status counts on the span.
	for k, n := range map[string]int64{"email": 3, "card": 1, "api_key": 1, "ip": 1, "url": 1} {
		if g := attrInt(s.Attributes(), "periscope.redacted."+k); g != n {
			t.Errorf("span count %s = %d, want %d (%v)", k, g, n, s.Attributes().AsRaw())
		}
	}
}

func TestRedactMetricsHashesJoinably(t *testing.T) {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("http.server.request.duration")
	h := m.SetEmptyHistogram()
	for _, ip := range []string{"198.51.100.23", "198.51.100.23", "198.51.100.99"} {
		dp := h.DataPoints().AppendEmpty()
		dp.Attributes().PutStr("client.address", ip)
		dp.Attributes().PutStr("http.route", "/v1/orders")
		ex := dp.Exemplars().AppendEmpty()
		ex.FilteredAttributes().PutStr("user", "heidi@example.com")
	}
	g := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
	g.SetName("queue.depth")
	g.SetEmptyGauge().DataPoints().AppendEmpty().Attributes().PutStr("queue", "orders")

	in, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	// Hashing is looser than masking, so both sides must ask for it.
	hash := redactpolicy.Policy{Detectors: map[string]string{"ip": "hash"}}
	if p := compile(t, redactpolicy.Policy{}, hash); p.Effective().Detectors["ip"] != "mask" {
		t.Fatal("the customer's hash loosened the vendor's default mask")
	}
	p := compile(t, hash, hash)
	var st Stats
	out, err := p.Request(otlp.Metrics, nil, in, &st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(out)
	if err != nil {
		t.Fatal(err)
	}
	dps := got.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Histogram().DataPoints()
	a0, a1, a2 := attrString(dps.At(0).Attributes(), "client.address"), attrString(dps.At(1).Attributes(), "client.address"), attrString(dps.At(2).Attributes(), "client.address")
	if !strings.HasPrefix(a0, "[ip:") || a0 != a1 || a0 == a2 || strings.Contains(a0, "198.51") {
		t.Errorf("hashed addresses %q %q %q: equal values must hash equal, different ones differ", a0, a1, a2)
	}
	if g := attrString(dps.At(0).Exemplars().At(0).FilteredAttributes(), "user"); g != "[REDACTED:email]" {
		t.Errorf("exemplar attribute = %q", g)
	}
	if attrInt(dps.At(0).Attributes(), "periscope.redacted.ip") != 1 || st.Records != 3 {
		t.Errorf("point counts %v, records %d", dps.At(0).Attributes().AsRaw(), st.Records)
	}
	gauge := got.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(1)
	if gauge.Name() != "queue.depth" || attrString(gauge.Gauge().DataPoints().At(0).Attributes(), "queue") != "orders" {
		t.Error("an untouched metric changed")
	}
}

func TestAllowAndDenyListsAtEveryLevel(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.Resource().Attributes().PutStr("k8s.pod.name", "checkout-7d9f")
	rl.Resource().Attributes().PutStr("customer.internal.note", "VIP")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().Attributes().PutStr("library.owner", "team-a")
	lr := sl.LogRecords().AppendEmpty()
	lr.Attributes().PutStr("http.route", "/v1/x")
	lr.Attributes().PutStr("http.request.header.x-tenant", "t1")
	lr.Attributes().PutStr("user.address", "1 Main St")
	lr.Attributes().PutStr("k8s.container.name", "app")

	p := compile(t, redactpolicy.Policy{Attributes: redactpolicy.Attributes{Allow: []string{"k8s.*", "http.*"}}},
		redactpolicy.Policy{Attributes: redactpolicy.Attributes{Deny: []string{"http.request.header.*"}}})
	out, err := p.Request(otlp.Logs, nil, logsBody(t, ld), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, out)
	res := got.ResourceLogs().At(0).Resource().Attributes().AsRaw()
	if res["service.name"] != "checkout" || res["k8s.pod.name"] != "checkout-7d9f" || res["customer.internal.note"] != nil {
		t.Errorf("resource = %v", res)
	}
	if res["periscope.redacted.attribute"] != int64(1) {
		t.Errorf("resource counts = %v", res)
	}
	if sc := got.ResourceLogs().At(0).ScopeLogs().At(0).Scope().Attributes().AsRaw(); sc["library.owner"] != nil {
		t.Errorf("scope = %v", sc)
	}
	rec := got.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes().AsRaw()
	if rec["http.route"] != "/v1/x" || rec["k8s.container.name"] != "app" || rec["http.request.header.x-tenant"] != nil || rec["user.address"] != nil {
		t.Errorf("record = %v", rec)
	}
	if rec["periscope.redacted.attribute"] != int64(2) {
		t.Errorf("record counts = %v", rec)
	}
}

func TestDropAndTruncateLogBodies(t *testing.T) {
	ld := plog.NewLogs()
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	sl.LogRecords().AppendEmpty().Body().SetStr("DEBUG dump of the customer table: ...")
	sl.LogRecords().AppendEmpty().Body().SetStr(strings.Repeat("é", 100) + " tail")
	m := sl.LogRecords().AppendEmpty().Body().SetEmptyMap()
	m.PutStr("msg", "DEBUG dump nested")
	sl.LogRecords().AppendEmpty().Body().SetStr("kept")

	p := compile(t, redactpolicy.Policy{Body: redactpolicy.BodyRules{DropPatterns: []string{"^DEBUG dump"}}},
		redactpolicy.Policy{Body: redactpolicy.BodyRules{MaxBytes: 51}})
	var st Stats
	out, err := p.Request(otlp.Logs, nil, logsBody(t, ld), &st)
	if err != nil {
		t.Fatal(err)
	}
	recs := readLogs(t, out).ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	if recs.Len() != 2 || st.Dropped != 2 {
		t.Fatalf("%d records left, %d dropped; want 2 and 2", recs.Len(), st.Dropped)
	}
	if b := recs.At(0).Body().Str(); b != strings.Repeat("é", 24)+"…" {
		t.Errorf("truncated body = %q (%d bytes)", b, len(b))
	}
	if attrInt(recs.At(0).Attributes(), "periscope.redacted.truncated") != 1 || recs.At(1).Body().Str() != "kept" {
		t.Errorf("records = %v / %q", recs.At(0).Attributes().AsRaw(), recs.At(1).Body().Str())
	}
}

func TestContextAndOffPolicies(t *testing.T) {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("periscope.customer", "ops@customer.example")
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("mail ivan@example.com")
	in := logsBody(t, ld)
	p := compile(t, redactpolicy.Policy{}, redactpolicy.Policy{})
	out, err := p.Request(otlp.Logs, nil, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, out)
	if c := attrString(got.ResourceLogs().At(0).Resource().Attributes(), "periscope.customer"); c != "ops@customer.example" {
		t.Errorf("the deployment context was redacted: %q", c)
	}
	off := compile(t, redactpolicy.Policy{Mode: "off"}, redactpolicy.Policy{Mode: "off"})
	if out, _ := off.Request(otlp.Logs, nil, in, nil); !bytes.Equal(out, in) {
		t.Error("an off policy changed the request")
	}
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	p := compile(t, redactpolicy.Policy{}, redactpolicy.Policy{})
	// A value nested far deeper than any request may: AnyValue{array{AnyValue{...}}}.
	deep := []byte{0x0a, 0x01, 'x'}
	for range 30 {
		arr := append([]byte{0x0a, byte(len(deep))}, deep...) // ArrayValue.values
		deep = append([]byte{0x2a, byte(len(arr))}, arr...)   // AnyValue.array_value
	}
	if _, err := p.Request(otlp.Logs, nil, wrapLogBody(deep), nil); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("a body nested 60 levels deep: %v", err)
	}
	for _, body := range [][]byte{{0x0a, 0x05, 0x01}, {0xff}} {
		if _, err := p.Request(otlp.Logs, nil, wrapLogBody(body), nil); err == nil {
			t.Errorf("malformed body %x accepted", body)
		}
	}
}

// wrapLogBody wraps an encoded AnyValue as the body of one log record in a request.
func wrapLogBody(body []byte) []byte {
	msg := func(num byte, v []byte) []byte {
		b := []byte{num<<3 | 2}
		n := len(v)
		for n >= 0x80 {
			b = append(b, byte(n)|0x80)
			n >>= 7
		}
		return append(append(b, byte(n)), v...)
	}
	return msg(1, msg(2, msg(2, msg(5, body))))
}

func FuzzRedactRequest(f *testing.F) {
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetEmptyMap().PutStr("password", "x")
	lr.Attributes().PutStr("url.full", "http://u:p@h/?q=1")
	f.Add(logsBody(f, ld), uint8(0))
	f.Add(wrapLogBody([]byte{0x0a, 0x03, 'a', '@', 'b'}), uint8(0))
	p := compile(f, redactpolicy.Policy{Body: redactpolicy.BodyRules{MaxBytes: 16, DropPatterns: []string{"drop"}}}, redactpolicy.Policy{})
	f.Fuzz(func(t *testing.T, req []byte, sig uint8) {
		s := otlp.Signals[int(sig)%len(otlp.Signals)]
		out, err := p.Request(s, nil, req, nil)
		if err != nil {
			return
		}
		// A request pdata reads still reads after redaction.
		if decodes(s, req) && !decodes(s, out) {
			t.Fatalf("redaction broke a decodable request:\n%x\n%x", req, out)
		}
		// What came out passes again unchanged: counts and markers are never
		// redacted twice, and nothing grows.
		again, err := p.Request(s, nil, out, nil)
		if err != nil {
			t.Fatalf("the output of a request that passed does not parse: %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("a second pass changed the output:\n%x\n%x", out, again)
		}
	})
}

func decodes(s otlp.Signal, b []byte) bool {
	var err error
	switch s {
	case otlp.Logs:
		_, err = (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
	case otlp.Traces:
		_, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
	default:
		_, err = (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(b)
	}
	return err == nil
}

// benchLogs builds a request of n log records like an application's: a route, a
// status, a message; every tenth carries an e-mail address and a URL with a query.
func benchLogs(b *testing.B, n int) []byte {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.Resource().Attributes().PutStr("k8s.pod.name", "checkout-7d9f6c5b4-x2x9z")
	sl := rl.ScopeLogs().AppendEmpty()
	for i := range n {
		lr := sl.LogRecords().AppendEmpty()
		lr.Attributes().PutStr("http.route", "/v1/orders/{id}")
		lr.Attributes().PutInt("http.response.status_code", 200)
		lr.Attributes().PutStr("order.id", "ORD-2026-000123456")
		if i%10 == 0 {
			lr.Body().SetStr("order placed by alice@example.com from 203.0.113.7")
			lr.Attributes().PutStr("url.full", "https://shop.example.com/v1/orders?customer=alice&page=2")
		} else {
			lr.Body().SetStr("order 1234567890123 placed in 42 ms, request 0b6c2f1e-3a4d-4c5b-9e8f-7a6b5c4d3e2f")
		}
	}
	return logsBody(b, ld)
}

func BenchmarkRequest(b *testing.B) {
	p := compile(b, redactpolicy.Policy{}, redactpolicy.Policy{})
	in := benchLogs(b, 512)
	dst := make([]byte, 0, 2*len(in))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var st Stats
		if _, err := p.Request(otlp.Logs, dst[:0], in, &st); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(512*b.N)/b.Elapsed().Seconds(), "records/s")
}
