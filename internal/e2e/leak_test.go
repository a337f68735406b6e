package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// corpusEntry is one line of a leak corpus: a value an application might send, and
// the secrets in it that must never leave the agent.
type corpusEntry struct {
	kind    string
	value   string
	secrets []string
}

// readCorpus reads kind<TAB>value[<TAB>secret...] lines; with no secret listed the
// whole value is the secret.
func readCorpus(t *testing.T, path string) []corpusEntry {
	t.Helper()
	var out []corpusEntry
	for _, line := range corpusLines(t, path) {
		f := strings.Split(line, "\t")
		if len(f) < 2 {
			t.Fatalf("%s: line %q has no value", path, line)
		}
		e := corpusEntry{kind: f[0], value: unescapeCorpus(f[1])}
		for _, s := range f[2:] {
			e.secrets = append(e.secrets, unescapeCorpus(s))
		}
		if len(e.secrets) == 0 {
			e.secrets = []string{e.value}
		}
		for _, s := range e.secrets {
			if !strings.Contains(e.value, s) {
				t.Fatalf("%s: secret %q is not in %q", path, s, e.value)
			}
		}
		out = append(out, e)
	}
	return out
}

// corpusLines returns the lines of a corpus file that are neither empty nor comments.
func corpusLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if l := s.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

func unescapeCorpus(s string) string { return strings.NewReplacer(`\n`, "\n", `\t`, "\t").Replace(s) }

// The operational parts every span of the personal corpus carries, which must arrive
// exactly as sent.
const (
	leakService       = "leak-personal"
	opsService        = "leak-operational"
	leakFunction      = "checkout-handler" // faas.name
	leakSpanName      = "POST /checkout/{id}"
	leakRoute         = "/checkout/{id}"
	leakStatusCode    = 502
	leakCodeFunction  = "com.example.checkout.Charge"
	leakExceptionType = "com.example.accounts.LookupException"
	leakDuration      = 123 * time.Millisecond
)

// checkoutError is the application's error type; RecordError names it in exception.type.
type checkoutError struct{ msg string }

func (e checkoutError) Error() string { return e.msg }

// leakSentences embed a value in a plain log body the way applications log it.
var leakSentences = []string{
	"lookup failed for %s",
	"user %s signed in from the web app",
	"failed to charge %s: card_declined (retry 2/3)",
	`level=warn msg="lookup failed" input=%s duration=12ms`,
	`{"level":"error","msg":"request failed","value":"%s","status":502}`,
}

// sdkApp is an application instrumented with the official OpenTelemetry Go SDK.
type sdkApp struct {
	tracer trace.Tracer
	logger otellog.Logger
	meter  metric.Meter
	stop   []func(context.Context) error
	logs   int // records emitted, to know when all have arrived
	spans  int
	points int
}

// newSDKApp instruments an application with res, exporting over OTLP/HTTP (grpc false)
// or OTLP/gRPC to the agent.
func newSDKApp(t *testing.T, ag *agentProc, grpc bool, res *resource.Resource) *sdkApp {
	t.Helper()
	ctx := context.Background()
	var (
		te  sdktrace.SpanExporter
		le  sdklog.Exporter
		me  sdkmetric.Exporter
		err error
	)
	if grpc {
		te, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(ag.grpc), otlptracegrpc.WithInsecure())
		if err == nil {
			le, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(ag.grpc), otlploggrpc.WithInsecure())
		}
		if err == nil {
			me, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(ag.grpc), otlpmetricgrpc.WithInsecure())
		}
	} else {
		te, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(ag.http), otlptracehttp.WithInsecure())
		if err == nil {
			le, err = otlploghttp.New(ctx, otlploghttp.WithEndpoint(ag.http), otlploghttp.WithInsecure())
		}
		if err == nil {
			me, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(ag.http), otlpmetrichttp.WithInsecure())
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(te), sdktrace.WithResource(res))
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(le)), sdklog.WithResource(res))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)), sdkmetric.WithResource(res))
	return &sdkApp{tracer: tp.Tracer("checkout"), logger: lp.Logger("checkout"), meter: mp.Meter("checkout"),
		stop: []func(context.Context) error{tp.Shutdown, lp.Shutdown, mp.Shutdown}}
}

// shutdown flushes everything the application recorded to the agent.
func (a *sdkApp) shutdown(t *testing.T) {
	t.Helper()
	for _, stop := range a.stop {
		if err := stop(context.Background()); err != nil {
			t.Fatalf("SDK export to the agent failed: %v", err)
		}
	}
}

func (a *sdkApp) log(body attribute.Value, attrs ...attribute.KeyValue) {
	var rec otellog.Record
	rec.SetBody(body)
	rec.SetSeverity(otellog.SeverityError)
	rec.SetTimestamp(time.Now())
	rec.AddAttributes(attrs...)
	a.logger.Emit(context.Background(), rec)
	a.logs++
}

func (a *sdkApp) count(name string, attrs ...attribute.KeyValue) {
	c, _ := a.meter.Int64Counter(name)
	c.Add(context.Background(), 1, metric.WithAttributes(attrs...))
	a.points++
}

// checkoutSpan records one failed checkout request whose operational parts are the
// constants above; with adds the entry's own attributes, events and status.
func (a *sdkApp) checkoutSpan(id string, start time.Time, status string, with func(trace.Span)) {
	_, span := a.tracer.Start(context.Background(), leakSpanName, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start), trace.WithAttributes(
			attribute.String("http.route", leakRoute), attribute.String("http.request.method", "POST"),
			attribute.Int("http.response.status_code", leakStatusCode), attribute.String("code.function.name", leakCodeFunction),
			attribute.String("corpus.id", id)))
	with(span)
	span.SetStatus(codes.Error, status)
	span.End(trace.WithTimestamp(start.Add(leakDuration)))
	a.spans++
}

// exception records an exception event as the semantic conventions describe it.
func exception(span trace.Span, message, stack string) {
	span.AddEvent("exception", trace.WithAttributes(attribute.String("exception.type", leakExceptionType),
		attribute.String("exception.message", message), attribute.String("exception.stacktrace", stack)))
}

// jsonLogValue turns a corpus body (JSON) into a structured log body.
func jsonLogValue(t *testing.T, s string) attribute.Value {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("corpus body %q: %v", s, err)
	}
	var conv func(any) attribute.Value
	conv = func(v any) attribute.Value {
		switch v := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			kvs := make([]attribute.KeyValue, 0, len(v))
			for _, k := range keys {
				kvs = append(kvs, attribute.KeyValue{Key: attribute.Key(k), Value: conv(v[k])})
			}
			return attribute.MapValue(kvs...)
		case []any:
			vs := make([]attribute.Value, 0, len(v))
			for _, e := range v {
				vs = append(vs, conv(e))
			}
			return attribute.SliceValue(vs...)
		case string:
			return attribute.StringValue(v)
		case float64:
			return attribute.Float64Value(v)
		case bool:
			return attribute.BoolValue(v)
		}
		return attribute.Value{}
	}
	return conv(v)
}

// secretAttr makes the attribute of a secret_key entry ("key=value"): HTTP headers
// are string arrays in the semantic conventions.
func secretAttr(entry string) attribute.KeyValue {
	k, v, _ := strings.Cut(entry, "=")
	if strings.HasPrefix(k, "http.request.header.") || strings.HasPrefix(k, "http.response.header.") {
		return attribute.StringSlice(k, []string{v})
	}
	return attribute.String(k, v)
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

// sendPersonal sends every entry of the corpus in every place it fits.
func sendPersonal(t *testing.T, app *sdkApp, corpus []corpusEntry) {
	t.Helper()
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	str := attribute.StringValue
	for i, e := range corpus {
		id := "p-" + strconv.Itoa(i)
		idLog := attribute.String("corpus.id", id)
		idAttr := attribute.String("corpus.id", id)
		at := start.Add(time.Duration(i) * time.Millisecond)
		switch e.kind {
		case "url":
			keys := []string{"url.full", "http.url"}
			if strings.HasPrefix(e.value, "/") {
				keys = []string{"http.target"}
			}
			var la []attribute.KeyValue
			var sa []attribute.KeyValue
			for _, k := range keys {
				la = append(la, attribute.String(k, e.value))
				sa = append(sa, attribute.String(k, e.value))
			}
			app.log(str("request failed"), append(la, idLog)...)
			app.checkoutSpan(id, at, "upstream failed", func(s trace.Span) { s.SetAttributes(sa...) })
			app.count("checkout.lookups", append(sa, idAttr)...)
		case "sql":
			app.log(str("slow query"), attribute.String("db.system", "postgresql"), attribute.String("db.query.text", e.value), idLog)
			app.checkoutSpan(id, at, "query failed", func(s trace.Span) {
				s.SetAttributes(attribute.String("db.system", "postgresql"), attribute.String("db.statement", e.value),
					attribute.String("db.query.text", e.value))
			})
		case "secret_key":
			kv := secretAttr(e.value)
			app.log(str("config loaded"), kv, idLog)
			app.log(attribute.MapValue(kv, attribute.Map("request", kv)), idLog)
			app.checkoutSpan(id, at, "charge declined", func(s trace.Span) { s.SetAttributes(kv) })
			app.count("checkout.lookups", kv, idAttr)
		case "stack":
			msg := firstLine(e.value)
			app.log(str(e.value), attribute.String("exception.type", leakExceptionType), attribute.String("exception.message", msg),
				attribute.String("exception.stacktrace", e.value), idLog)
			app.checkoutSpan(id, at, "unhandled "+msg, func(s trace.Span) {
				s.RecordError(checkoutError{msg})
				exception(s, msg, e.value)
			})
		case "body":
			v := jsonLogValue(t, e.value)
			app.log(v, attribute.KeyValue{Key: "request", Value: v}, idLog)
		default: // a detector's kind: wherever free text goes
			app.log(str(strings.Replace(leakSentences[i%len(leakSentences)], "%s", e.value, 1)),
				attribute.String("app.input", e.value), idLog)
			app.log(attribute.MapValue(attribute.String("msg", "lookup failed"), attribute.String("input", e.value),
				attribute.Map("context", attribute.Slice("values", str(e.value), str("ok")))), idLog)
			app.checkoutSpan(id, at, "charge failed for "+e.value, func(s trace.Span) {
				// Instrumentation that names a span after its input.
				_, child := app.tracer.Start(trace.ContextWithSpan(context.Background(), s), "lookup "+e.value,
					trace.WithTimestamp(at), trace.WithAttributes(attribute.String("corpus.id", id)))
				child.End(trace.WithTimestamp(at.Add(time.Millisecond)))
				app.spans++
				s.SetAttributes(attribute.String("app.input", e.value))
				s.RecordError(checkoutError{"lookup failed for " + e.value})
				exception(s, "bad input", "com.example.accounts.LookupException: bad input\n\tat com.example.accounts.Lookup.find(\""+
					e.value+"\")\n\tat com.example.checkout.Charge.run(Charge.java:42)")
			})
			app.count("checkout.lookups", attribute.String("app.input", e.value), idAttr)
		}
	}
}

// personalResource carries the corpus's detector values and secret-named keys as
// resource attributes, as labels and environment captured by resource detectors would.
func personalResource(corpus []corpusEntry) *resource.Resource {
	attrs := []attribute.KeyValue{attribute.String("service.name", leakService), attribute.String("faas.name", leakFunction)}
	for i, e := range corpus {
		switch e.kind {
		case "url", "sql", "stack", "body":
		case "secret_key":
			attrs = append(attrs, secretAttr(e.value))
		default:
			attrs = append(attrs, attribute.String("app.owner."+strconv.Itoa(i), e.value))
		}
	}
	return resource.NewSchemaless(attrs...)
}

// sendOperational sends each ordinary operational string as a log body and as a log,
// span and metric attribute.
func sendOperational(app *sdkApp, lines []string) {
	start := time.Now().Add(-time.Minute)
	for i, l := range lines {
		id := "op-" + strconv.Itoa(i)
		app.log(attribute.StringValue(l), attribute.String("app.detail", l), attribute.String("corpus.id", id))
		_, span := app.tracer.Start(context.Background(), "op-check", trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("app.detail", l), attribute.String("corpus.id", id)))
		span.End(trace.WithTimestamp(start.Add(time.Millisecond)))
		app.spans++
		app.count("ops.checks", attribute.String("app.detail", l), attribute.String("corpus.id", id))
	}
}

// TestNoPersonalDataLeavesTheAgent sends a corpus of personal data and secrets with the
// official OpenTelemetry SDK through a real agent (default redaction policy) and a real
// manager, and searches everything that left for them: an OTLP/HTTP and an OTLP/gRPC
// backend, a real S3 server, the file exporter, the manager's telemetry store and the
// rest of its data directory. No secret may be found; the operational parts of the
// records must arrive intact; and ordinary operational strings sent the same way must
// arrive unchanged in at least 99% of cases.
func TestNoPersonalDataLeavesTheAgent(t *testing.T) {
	testenv.Peer(t, "versitygw") // skip before starting anything
	ctx := context.Background()

	archive, client := startS3(t)
	backend := newOTLPBackend(t)
	dir := t.TempDir()
	mdir, filePath := filepath.Join(dir, "manager"), filepath.Join(dir, "export", "telemetry.jsonl")
	m := startTelemetryManager(t, "127.0.0.1:0", mdir, []config.Exporter{
		{Name: "downstream-http", Type: "otlphttp", Endpoint: backend.http.URL, Compression: "gzip"},
		{Name: "downstream-grpc", Type: "otlpgrpc", Endpoint: backend.addr, TLS: config.ExporterTLS{Insecure: true}},
		archive,
		{Name: "file", Type: "file", Path: filePath},
	})
	stopped := false
	defer func() {
		if !stopped {
			m.Shutdown(ctx)
		}
	}()
	token := createAcme(t, m)
	ag := startAgentProc(t, m.URL(), token, filepath.Join(dir, "agent"), freePort(t), freePort(t))

	personal := append(readCorpus(t, "../agent/redact/testdata/personal.txt"), readCorpus(t, "testdata/leak-corpus.txt")...)
	operational := corpusLines(t, "../agent/redact/testdata/operational.txt")
	// An operational string may hold a secret of the other corpus (a hash the same hex
	// as a token): the search takes such strings out of what it searches first.
	var overlaps []string
	for _, l := range operational {
		for _, e := range personal {
			if slices.ContainsFunc(e.secrets, func(s string) bool { return strings.Contains(l, s) }) {
				overlaps = append(overlaps, l)
				break
			}
		}
	}

	// The application: the personal corpus over OTLP/HTTP and over gRPC, the
	// operational one over gRPC.
	overHTTP := newSDKApp(t, ag, false, personalResource(personal))
	sendPersonal(t, overHTTP, personal)
	overGRPC := newSDKApp(t, ag, true, personalResource(personal))
	sendPersonal(t, overGRPC, personal)
	ops := newSDKApp(t, ag, true, resource.NewSchemaless(attribute.String("service.name", opsService),
		attribute.String("faas.name", "ops-handler")))
	sendOperational(ops, operational)
	for _, a := range []*sdkApp{overHTTP, overGRPC, ops} {
		a.shutdown(t)
	}

	// Everything the agent accepted so far, ours included, is acknowledged by the
	// manager only once every sink, the store last, has it.
	agentMetrics := "http://" + ag.http + "/metrics"
	accepted := map[otlp.Signal]float64{}
	for _, sig := range otlp.Signals {
		accepted[sig] = counter(t, agentMetrics, "periscope_agent_accepted_records_total", `signal="`+sig.String()+`"`)
	}
	eventually(t, 20*time.Second, "the manager acknowledging every record the agent accepted", func() error {
		for _, sig := range otlp.Signals {
			if sent := counter(t, agentMetrics, "periscope_agent_sent_records_total", `signal="`+sig.String()+`"`); sent < accepted[sig] {
				return fmt.Errorf("%v: %v of %v sent", sig, sent, accepted[sig])
			}
		}
		return nil
	})
	want := map[otlp.Signal]map[string]int{
		otlp.Logs:    {leakService: overHTTP.logs + overGRPC.logs, opsService: ops.logs},
		otlp.Traces:  {leakService: overHTTP.spans + overGRPC.spans, opsService: ops.spans},
		otlp.Metrics: {leakService: overHTTP.points + overGRPC.points, opsService: ops.points},
	}
	complete := func(e *exported) error {
		for sig, byService := range want {
			for service, n := range byService {
				if got := e.count(sig, service); got < n {
					return fmt.Errorf("%d %v from %s, want %d", got, sig, service, n)
				}
			}
		}
		return nil
	}
	out := map[string]*exported{}
	eventually(t, 20*time.Second, "every record at every exporter's backend", func() error {
		for _, tr := range []string{"otlphttp", "otlpgrpc"} {
			out[tr] = backend.snapshot(tr)
		}
		var err error
		if out["s3"], err = readS3(ctx, client, "telemetry"); err != nil {
			return err
		}
		if out["file"], err = readExportFile(filePath); err != nil {
			return err
		}
		for _, name := range []string{"otlphttp", "otlpgrpc", "s3", "file"} {
			if err := complete(out[name]); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	})
	api := apiclient.New(m.URL(), adminToken)
	page, err := api.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Service: leakService}, Limit: 10})
	if err != nil || len(page.Logs) == 0 {
		t.Fatalf("the store's query API finds no %s logs: %v", leakService, err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if out["store"], err = readStore(ctx, mdir); err != nil {
		t.Fatal(err)
	}
	if err := complete(out["store"]); err != nil {
		t.Fatalf("store: %v", err)
	}
	if out["manager-files"], err = readDir(mdir); err != nil {
		t.Fatal(err)
	}
	sinks := []string{"otlphttp", "otlpgrpc", "s3", "file", "store", "manager-files"}

	t.Run("NoLeaks", func(t *testing.T) {
		hay := map[string][]string{}
		for _, s := range sinks {
			hay[s] = haystacks(out[s].raw)
			for i, h := range hay[s] {
				for _, l := range overlaps {
					h = strings.ReplaceAll(h, l, "")
				}
				hay[s][i] = h
			}
		}
		// The search is not blind: every operational string, which arrives as sent,
		// is found in every backend's bytes.
		for _, s := range sinks[:5] {
			for _, l := range operational {
				if !slices.ContainsFunc(hay[s], func(h string) bool { return strings.Contains(h, l) }) && !slices.Contains(overlaps, l) {
					t.Errorf("%s: the search does not find the operational string %q that arrived", s, l)
				}
			}
		}
		// A secret leaks to a sink when it is anywhere in what the sink holds.
		type tally struct {
			secrets, leaks int
			bySink         map[string]int
		}
		byKind := map[string]*tally{}
		var kinds []string
		for _, e := range personal {
			tl := byKind[e.kind]
			if tl == nil {
				tl = &tally{bySink: map[string]int{}}
				byKind[e.kind] = tl
				kinds = append(kinds, e.kind)
			}
			for _, secret := range e.secrets {
				tl.secrets++
				var where []string
				for _, s := range sinks {
					for _, h := range hay[s] {
						if i := strings.Index(h, secret); i >= 0 {
							where = append(where, fmt.Sprintf("%s: …%q…", s, h[max(0, i-60):min(len(h), i+len(secret)+20)]))
							tl.bySink[s]++
							break
						}
					}
				}
				if len(where) > 0 {
					tl.leaks++
					t.Errorf("%s secret %q leaked to %d sinks, e.g. %s", e.kind, secret, len(where), where[0])
				}
			}
		}
		total := 0
		head := fmt.Sprintf("%-10s %7s %5s", "kind", "secrets", "leaks")
		for _, s := range sinks {
			head += fmt.Sprintf(" %*s", len(s), s)
		}
		t.Log(head)
		for _, k := range kinds {
			row := fmt.Sprintf("%-10s %7d %5d", k, byKind[k].secrets, byKind[k].leaks)
			for _, s := range sinks {
				row += fmt.Sprintf(" %*d", len(s), byKind[k].bySink[s])
			}
			t.Log(row)
			total += byKind[k].leaks
		}
		t.Logf("%d secrets leaked; %d log records, %d spans and %d metric points of the corpus sent", total,
			want[otlp.Logs][leakService], want[otlp.Traces][leakService], want[otlp.Metrics][leakService])
	})

	t.Run("OperationalPartsIntact", func(t *testing.T) {
		goType := reflect.TypeOf(checkoutError{})
		errType := goType.PkgPath() + "." + goType.Name()
		for _, s := range sinks[:5] {
			var spans, logs, points int
			for _, r := range out[s].records {
				if r.service != leakService {
					continue
				}
				if r.function != leakFunction {
					t.Errorf("%s: %v function %q, want %q", s, r.signal, r.function, leakFunction)
				}
				if !redacted(r.attrs) {
					t.Errorf("%s: a %v record of the personal corpus (%s) carries no periscope.redacted.* count", s, r.signal, r.attrs["corpus.id"])
				}
				switch r.signal {
				case otlp.Logs:
					logs++
				case otlp.Metrics:
					points++
				case otlp.Traces:
					if strings.HasPrefix(r.name, "lookup ") {
						continue // a child span named after its input
					}
					spans++
					for k, v := range map[string]string{"http.route": leakRoute, "http.request.method": "POST",
						"http.response.status_code": strconv.Itoa(leakStatusCode), "code.function.name": leakCodeFunction} {
						if r.attrs[k] != v {
							t.Errorf("%s: span %s %s = %q, want %q", s, r.attrs["corpus.id"], k, r.attrs[k], v)
						}
					}
					if r.name != leakSpanName || r.duration != leakDuration {
						t.Errorf("%s: span %q lasting %v, want %q lasting %v", s, r.name, r.duration, leakSpanName, leakDuration)
					}
					for _, ev := range r.events {
						if typ := ev["exception.type"]; typ != leakExceptionType && typ != errType {
							t.Errorf("%s: exception.type %q, want %q or %q", s, typ, leakExceptionType, errType)
						}
					}
				}
			}
			if logs == 0 || spans == 0 || points == 0 {
				t.Errorf("%s: %d logs, %d spans, %d points of the personal corpus", s, logs, spans, points)
			}
			if res := resourceOf(out[s].records, leakService); !redacted(res) {
				t.Errorf("%s: the personal resource carries no periscope.redacted.* count: %v", s, res)
			}
		}
	})

	t.Run("FalsePositives", func(t *testing.T) {
		changed := map[string]bool{}
		places := 0
		for _, s := range sinks[:5] {
			seen := map[string]int{}
			for _, r := range out[s].records {
				if r.service != opsService {
					continue
				}
				id := r.attrs["corpus.id"]
				i, err := strconv.Atoi(strings.TrimPrefix(id, "op-"))
				if err != nil || i >= len(operational) {
					t.Errorf("%s: operational record with corpus.id %q", s, id)
					continue
				}
				want := operational[i]
				got := []string{r.attrs["app.detail"]}
				if r.signal == otlp.Logs {
					got = append(got, r.body)
				}
				for _, g := range got {
					places++
					if g != want {
						if !changed[id] {
							t.Logf("false positive at %s (%v): %q -> %q", s, r.signal, want, g)
						}
						changed[id] = true
					}
				}
				if redacted(r.attrs) {
					changed[id] = true
				}
				seen[id]++
			}
			for i := range operational {
				if id := "op-" + strconv.Itoa(i); seen[id] < 3 {
					t.Errorf("%s: operational %q reached it in %d of 3 records", s, operational[i], seen[id])
				}
			}
		}
		rate := float64(len(changed)) / float64(len(operational))
		t.Logf("operational corpus: %d of %d strings changed somewhere (%.2f%%), checked in %d places across %d sinks",
			len(changed), len(operational), 100*rate, places, 5)
		if rate >= 0.01 {
			t.Errorf("false-positive rate %.2f%% is not under 1%%", 100*rate)
		}
	})
}

// redacted reports whether attrs hold a periscope.redacted.* count.
func redacted(attrs map[string]string) bool {
	for k := range attrs {
		if strings.HasPrefix(k, "periscope.redacted.") {
			return true
		}
	}
	return false
}

// resourceOf returns the resource attributes of service's first record.
func resourceOf(recs []outRecord, service string) map[string]string {
	i := slices.IndexFunc(recs, func(r outRecord) bool { return r.service == service })
	if i < 0 {
		return nil
	}
	return recs[i].resource
}
