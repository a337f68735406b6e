package otlp

import (
	"errors"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/protobuf/encoding/protowire"
)

var acme = Context{
	DeploymentID: "acme-prod", Customer: "Acme", Cloud: "aws", Region: "us-east-1",
	Platform: "aws_ecs", Release: "1.8.0", Stack: "lighthouse",
}

// spoofedLogs builds two resources: one claiming another deployment, one bare.
func spoofedLogs() plog.Logs {
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.Resource().Attributes().PutStr(AttrDeploymentID, "umbrella-dr")
	rl.Resource().Attributes().PutStr(AttrCustomer, "Umbrella")
	rl.Resource().Attributes().PutStr(AttrRelease, "2.0.0")
	rl.Resource().Attributes().PutStr("k8s.pod.name", "checkout-7d9")
	rl.Resource().Attributes().PutInt("replica", 3)
	sl := rl.ScopeLogs().AppendEmpty()
	for i := 0; i < 3; i++ {
		sl.LogRecords().AppendEmpty().Body().SetStr("hello")
	}
	rl2 := l.ResourceLogs().AppendEmpty()
	rl2.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("bare")
	return l
}

func TestTagOverwritesContextAndKeepsAppAttributes(t *testing.T) {
	req, err := plogotlp.NewExportRequestFromLogs(spoofedLogs()).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	out, n, err := NewTagger(acme).Tag(Logs, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("records = %d, want 4", n)
	}
	got := plogotlp.NewExportRequest()
	if err := got.UnmarshalProto(out); err != nil {
		t.Fatalf("tagged request does not decode: %v", err)
	}
	rls := got.Logs().ResourceLogs()
	if rls.Len() != 2 {
		t.Fatalf("resources = %d, want 2", rls.Len())
	}
	for i := 0; i < rls.Len(); i++ {
		attrs := rls.At(i).Resource().Attributes()
		for _, kv := range acme.Attributes() {
			if v, ok := attrs.Get(kv[0]); !ok || v.Str() != kv[1] {
				t.Errorf("resource %d: %s = %v, want %q", i, kv[0], v.AsString(), kv[1])
			}
		}
		seen := map[string]int{}
		attrs.Range(func(k string, _ pcommon.Value) bool { seen[k]++; return true })
		for k, c := range seen {
			if c != 1 {
				t.Errorf("resource %d: attribute %s appears %d times", i, k, c)
			}
		}
	}
	first := rls.At(0).Resource().Attributes()
	for k, want := range map[string]string{"service.name": "checkout", "k8s.pod.name": "checkout-7d9", "replica": "3"} {
		if v, ok := first.Get(k); !ok || v.AsString() != want {
			t.Errorf("app attribute %s = %q, want %q", k, v.AsString(), want)
		}
	}
	if b := rls.At(0).ScopeLogs().At(0).LogRecords().At(2).Body().Str(); b != "hello" {
		t.Errorf("record body = %q", b)
	}
}

func TestTagRemovesSpoofedKeysWithoutValue(t *testing.T) {
	// A context with no customer still strips a sender's periscope.customer, but a
	// release the context does not know is the sender's own and stays.
	req, _ := plogotlp.NewExportRequestFromLogs(spoofedLogs()).MarshalProto()
	out, _, err := NewTagger(Context{DeploymentID: "acme-prod"}).Tag(Logs, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	got := plogotlp.NewExportRequest()
	if err := got.UnmarshalProto(out); err != nil {
		t.Fatal(err)
	}
	attrs := got.Logs().ResourceLogs().At(0).Resource().Attributes()
	if v, ok := attrs.Get(AttrCustomer); ok {
		t.Errorf("spoofed customer kept: %q", v.Str())
	}
	if v, _ := attrs.Get(AttrDeploymentID); v.Str() != "acme-prod" {
		t.Errorf("deployment = %q", v.Str())
	}
	if v, _ := attrs.Get(AttrRelease); v.Str() != "2.0.0" {
		t.Errorf("sender's release = %q, want it kept as 2.0.0", v.Str())
	}
}

func TestTagCountsSpansAndDataPoints(t *testing.T) {
	tr := ptrace.NewTraces()
	ss := tr.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	for i := 0; i < 5; i++ {
		ss.Spans().AppendEmpty().SetName("GET /")
	}
	treq, _ := ptraceotlp.NewExportRequestFromTraces(tr).MarshalProto()
	_, n, err := NewTagger(acme).Tag(Traces, nil, treq)
	if err != nil || n != 5 {
		t.Errorf("spans = %d, %v; want 5", n, err)
	}

	m := pmetric.NewMetrics()
	sm := m.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	g := sm.Metrics().AppendEmpty()
	g.SetName("queue.depth")
	g.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(4)
	g.Gauge().DataPoints().AppendEmpty().SetIntValue(5)
	h := sm.Metrics().AppendEmpty()
	h.SetName("latency")
	h.SetEmptyHistogram().DataPoints().AppendEmpty().SetCount(9)
	s := sm.Metrics().AppendEmpty()
	s.SetName("requests")
	s.SetEmptySum().DataPoints().AppendEmpty().SetIntValue(1)
	mreq, _ := pmetricotlp.NewExportRequestFromMetrics(m).MarshalProto()
	out, n, err := NewTagger(acme).Tag(Metrics, nil, mreq)
	if err != nil || n != 4 {
		t.Errorf("data points = %d, %v; want 4", n, err)
	}
	got := pmetricotlp.NewExportRequest()
	if err := got.UnmarshalProto(out); err != nil {
		t.Fatal(err)
	}
	if got.Metrics().DataPointCount() != 4 {
		t.Errorf("decoded data points = %d", got.Metrics().DataPointCount())
	}
}

func TestTagRejectsMalformed(t *testing.T) {
	req, _ := plogotlp.NewExportRequestFromLogs(spoofedLogs()).MarshalProto()
	for name, body := range map[string][]byte{
		"truncated": req[:len(req)-3],
		"garbage":   []byte("this is not protobuf at all"),
		"bad tag":   {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, _, err := NewTagger(acme).Tag(Logs, nil, body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestConcatenatedRequestsMerge(t *testing.T) {
	// The forwarder relies on this: two encoded requests back to back are one request
	// holding both sets of resources.
	a, _ := plogotlp.NewExportRequestFromLogs(spoofedLogs()).MarshalProto()
	tg := NewTagger(acme)
	out, _, _ := tg.Tag(Logs, nil, a)
	out, _, _ = tg.Tag(Logs, out, a)
	got := plogotlp.NewExportRequest()
	if err := got.UnmarshalProto(out); err != nil {
		t.Fatal(err)
	}
	if got.Logs().LogRecordCount() != 8 {
		t.Errorf("merged records = %d, want 8", got.Logs().LogRecordCount())
	}
}

func FuzzTag(f *testing.F) {
	req, _ := plogotlp.NewExportRequestFromLogs(spoofedLogs()).MarshalProto()
	f.Add(req)
	f.Add([]byte{0x0a, 0x00})
	tg := NewTagger(acme)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := plogotlp.NewExportRequest()
		if in.UnmarshalProto(data) != nil {
			return
		}
		out, n, err := tg.Tag(Logs, nil, data)
		if err != nil {
			return // stricter than pdata on some inputs; never looser
		}
		got := plogotlp.NewExportRequest()
		if err := got.UnmarshalProto(out); err != nil {
			t.Fatalf("tagged output of a valid request does not decode: %v", err)
		}
		if n != in.Logs().LogRecordCount() || got.Logs().LogRecordCount() != n {
			t.Fatalf("count %d, input %d, output %d", n, in.Logs().LogRecordCount(), got.Logs().LogRecordCount())
		}
	})
}

// lenField encodes a length-delimited field.
func lenField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

// Spans in the deprecated instrumentation_library_spans field (1000) are spans to an
// OTLP decoder when the group has no scope_spans, so they are counted, and tagged.
func TestTagCountsDeprecatedScopes(t *testing.T) {
	span := func(name string) []byte { return lenField(5, []byte(name)) }
	old := lenField(1000, append(lenField(2, span("a")), lenField(2, span("b"))...))
	for name, tc := range map[string]struct {
		group []byte
		want  int
	}{
		"deprecated only":      {old, 2},
		"both, new one wins":   {append(lenField(2, lenField(2, span("c"))), old...), 1},
		"deprecated, then new": {append(append([]byte(nil), old...), lenField(2, lenField(2, span("c")))...), 1},
	} {
		out, n, err := NewTagger(acme).Tag(Traces, nil, lenField(1, tc.group))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := ptraceotlp.NewExportRequest()
		if err := got.UnmarshalProto(out); err != nil {
			t.Fatalf("%s: tagged request does not decode: %v", name, err)
		}
		if n != tc.want || got.Traces().SpanCount() != tc.want {
			t.Errorf("%s: Tag counted %d, pdata decodes %d spans; want %d", name, n, got.Traces().SpanCount(), tc.want)
		}
		if _, ok := got.Traces().ResourceSpans().At(0).Resource().Attributes().Get(AttrDeploymentID); !ok {
			t.Errorf("%s: resource not tagged", name)
		}
	}
}

func TestTagRejectsWhatOTLPDecodersReject(t *testing.T) {
	tr := ptrace.NewTraces()
	tr.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetName("GET /")
	good, _ := ptraceotlp.NewExportRequestFromTraces(tr).MarshalProto()
	if _, _, err := NewTagger(acme).Tag(Traces, nil, good); err != nil {
		t.Fatalf("good request refused: %v", err)
	}
	// Hand-built requests: ResourceSpans{ScopeSpans{Span{...}}}.
	group := func(fields []byte) []byte { return lenField(1, fields) }
	wrap := func(spanFields []byte) []byte { return group(lenField(2, lenField(2, spanFields))) }
	for name, req := range map[string][]byte{
		"3-byte trace id":   wrap(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{1, 2, 3})),
		"trace id varint":   wrap(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7)),
		"name as fixed32":   wrap(protowire.AppendFixed32(protowire.AppendTag(nil, 5, protowire.Fixed32Type), 7)),
		"top-level varint":  protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1),
		"attribute garbage": wrap(protowire.AppendBytes(protowire.AppendTag(nil, 9, protowire.BytesType), []byte{0x12, 0x02, 0x18, 0xff})),
		// Fields newer OTLP decoders read, so a bad one fails the whole request there.
		"entity ref as fixed64":        group(lenField(1, lenField(3, protowire.AppendFixed64(protowire.AppendTag(nil, 1, protowire.Fixed64Type), 7)))),
		"entity ref id keys as varint": group(lenField(1, lenField(3, protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7)))),
		"attribute key index as bytes": wrap(lenField(9, lenField(3, []byte("x")))),
		"string index as bytes":        wrap(lenField(9, lenField(2, lenField(8, []byte("x"))))),
		"deprecated scope as varint":   group(protowire.AppendVarint(protowire.AppendTag(nil, 1000, protowire.VarintType), 1)),
		"deprecated scope, bad span":   group(lenField(1000, lenField(2, lenField(1, []byte{1, 2, 3})))),
	} {
		_, _, err := NewTagger(acme).Tag(Traces, nil, req)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
		if ptraceotlp.NewExportRequest().UnmarshalProto(req) == nil {
			t.Errorf("%s: pdata accepts it, so the test case is wrong", name)
		}
	}
}

// FuzzTagNeverLooserThanPData checks that whatever Tag accepts, an OTLP decoder
// accepts after tagging: a request the agent acknowledges never poisons a batch.
func FuzzTagNeverLooserThanPData(f *testing.F) {
	tr := ptrace.NewTraces()
	sp := tr.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetName("GET /")
	sp.Attributes().PutStr("http.route", "/")
	sp.Events().AppendEmpty().SetName("retry")
	req, _ := ptraceotlp.NewExportRequestFromTraces(tr).MarshalProto()
	f.Add(req)
	tg := NewTagger(acme)
	f.Fuzz(func(t *testing.T, data []byte) {
		out, _, err := tg.Tag(Traces, nil, data)
		if err != nil {
			return
		}
		if err := ptraceotlp.NewExportRequest().UnmarshalProto(out); err != nil {
			t.Fatalf("Tag accepted a request pdata rejects after tagging: %v", err)
		}
	})
}

// BenchmarkTagSpans tags a telemetrygen-like request of 100 spans and reports the
// cost per span.
func BenchmarkTagSpans(b *testing.B) {
	tr := ptrace.NewTraces()
	rs := tr.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "bench")
	ss := rs.ScopeSpans().AppendEmpty()
	for i := 0; i < 100; i++ {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("okey-dokey-0")
		sp.SetTraceID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, byte(i)})
		sp.SetSpanID([8]byte{1, 2, 3, 4, 5, 6, 7, byte(i)})
		sp.Attributes().PutStr("net.sock.peer.addr", "1.2.3.4")
		sp.Attributes().PutStr("peer.service", "telemetrygen-server")
	}
	req, _ := ptraceotlp.NewExportRequestFromTraces(tr).MarshalProto()
	tg := NewTagger(acme)
	buf := make([]byte, 0, 2*len(req))
	b.SetBytes(int64(len(req)))
	b.ResetTimer()
	for b.Loop() {
		buf, _, _ = tg.Tag(Traces, buf[:0], req)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/span")
}

func TestTagMergesARepeatedResourceField(t *testing.T) {
	kv := func(k, v string) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), encodeKeyValue(k, v))
	}
	res := func(attrs []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), attrs)
	}
	group := append(res(kv("service.name", "checkout")), res(kv("k8s.pod.name", "checkout-1"))...)
	req := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), group)
	out, _, err := NewTagger(acme).Tag(Logs, nil, req)
	if err != nil {
		t.Fatal(err)
	}
	got := plogotlp.NewExportRequest()
	if err := got.UnmarshalProto(out); err != nil {
		t.Fatal(err)
	}
	attrs := got.Logs().ResourceLogs().At(0).Resource().Attributes()
	for _, k := range []string{"service.name", "k8s.pod.name", AttrDeploymentID} {
		if _, ok := attrs.Get(k); !ok {
			t.Errorf("%s lost when the resource field came twice: %v", k, attrs.AsRaw())
		}
	}
}
