package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// downstream is an OTLP/HTTP backend built on the Collector's own pdata libraries. It
// keeps every resource it receives, flattened to one entry per record.
type downstream struct {
	mu      sync.Mutex
	records []received
	srv     *httptest.Server
}

// received is one log record, span or data point with its resource attributes.
type received struct {
	signal   otlp.Signal
	resource map[string]string
	name     string // log body, span name or metric name
	attrs    map[string]string
}

func newDownstream(t *testing.T) *downstream {
	d := &downstream{}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := otlp.Decompress(r.Header.Get("Content-Encoding"), r.Body, 64<<20)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		sig, err := otlp.ParseSignal(strings.TrimPrefix(r.URL.Path, "/v1/"))
		if err == nil {
			err = d.add(sig, data)
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func attrMap(m pcommon.Map) map[string]string {
	out := map[string]string{}
	m.Range(func(k string, v pcommon.Value) bool { out[k] = v.AsString(); return true })
	return out
}

// add decodes one export request with pdata and records its contents.
func (d *downstream) add(sig otlp.Signal, data []byte) error {
	var recs []received
	switch sig {
	case otlp.Logs:
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			return err
		}
		recs = flattenLogs(req.Logs())
	case otlp.Traces:
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			return err
		}
		rss := req.Traces().ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			res := attrMap(rss.At(i).Resource().Attributes())
			for j := 0; j < rss.At(i).ScopeSpans().Len(); j++ {
				spans := rss.At(i).ScopeSpans().At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					recs = append(recs, received{sig, res, spans.At(k).Name(), attrMap(spans.At(k).Attributes())})
				}
			}
		}
	case otlp.Metrics:
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(data); err != nil {
			return err
		}
		rms := req.Metrics().ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			res := attrMap(rms.At(i).Resource().Attributes())
			for j := 0; j < rms.At(i).ScopeMetrics().Len(); j++ {
				ms := rms.At(i).ScopeMetrics().At(j).Metrics()
				for k := 0; k < ms.Len(); k++ {
					recs = append(recs, received{sig, res, ms.At(k).Name(), nil})
				}
			}
		}
	}
	d.mu.Lock()
	d.records = append(d.records, recs...)
	d.mu.Unlock()
	return nil
}

func flattenLogs(l plog.Logs) []received {
	var recs []received
	rls := l.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		res := attrMap(rls.At(i).Resource().Attributes())
		for j := 0; j < rls.At(i).ScopeLogs().Len(); j++ {
			lrs := rls.At(i).ScopeLogs().At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				recs = append(recs, received{otlp.Logs, res, lrs.At(k).Body().AsString(), attrMap(lrs.At(k).Attributes())})
			}
		}
	}
	return recs
}

// find returns the records of sig whose resource has service.name == service.
func (d *downstream) find(sig otlp.Signal, service string) []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []received
	for _, r := range d.records {
		if r.signal == sig && r.resource["service.name"] == service {
			out = append(out, r)
		}
	}
	return out
}

// storeSink stands in for the telemetry store: it counts every log record it is
// handed by its "seq" attribute, so a test can see whether anything arrived twice.
type storeSink struct {
	mu   sync.Mutex
	seqs map[string]int
}

func (s *storeSink) Consume(_ context.Context, b consumer.Batch) error {
	if b.Signal != otlp.Logs {
		return nil
	}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(b.Data); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range flattenLogs(req.Logs()) {
		if seq, ok := r.attrs["seq"]; ok {
			s.seqs[seq]++
		}
	}
	return nil
}

func startTelemetryManager(t *testing.T, listen, dir string, exps []config.Exporter, sinks ...manager.TelemetrySink) *manager.Manager {
	t.Helper()
	return startTelemetryManagerGRPC(t, listen, dir, "", exps, sinks...)
}

func startTelemetryManagerGRPC(t *testing.T, listen, dir, grpcAddr string, exps []config.Exporter, sinks ...manager.TelemetrySink) *manager.Manager {
	t.Helper()
	return startTelemetryManagerWith(t, func(cfg *config.Manager) {
		cfg.OTLPGRPC = grpcAddr
		cfg.Listen, cfg.DataDir = listen, dir
		cfg.Exporters = exps
	}, sinks...)
}

// startTelemetryManagerWith starts a manager for the telemetry tests with
// configure adjusting its configuration.
func startTelemetryManagerWith(t *testing.T, configure func(*config.Manager), sinks ...manager.TelemetrySink) *manager.Manager {
	t.Helper()
	cfg := config.DefaultManager()
	cfg.AdminToken = adminToken
	cfg.HeartbeatInterval = config.Duration(time.Second)
	configure(&cfg)
	m, err := manager.New(cfg, manager.Settings{Logger: logger(t), EvalInterval: 100 * time.Millisecond,
		FlushInterval: 100 * time.Millisecond, Sinks: sinks})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	agentBinOnce sync.Once
	agentBin     string
	agentBinErr  error
)

// agentBinary builds periscope-agent once per test run, so tests can kill it -9.
func agentBinary(t *testing.T) string {
	t.Helper()
	agentBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "periscope-agent-bin")
		if err != nil {
			agentBinErr = err
			return
		}
		agentBin = filepath.Join(dir, "periscope-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "../../cmd/periscope-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBinErr = fmt.Errorf("build agent: %v\n%s", err, out)
		}
	})
	if agentBinErr != nil {
		t.Fatal(agentBinErr)
	}
	return agentBin
}

// agentProc is a periscope-agent process.
type agentProc struct {
	cmd    *exec.Cmd
	grpc   string
	http   string
	stderr *bytes.Buffer
}

func startAgentProc(t *testing.T, managerURL, token, dataDir, grpcAddr, httpAddr string) *agentProc {
	t.Helper()
	return runAgent(t, grpcAddr, httpAddr, "--manager", managerURL, "--token", token, "--release", "1.8.0",
		"--cloud", "aws", "--region", "us-east-1", "--platform", "aws_ecs", "--transport", "http",
		"--heartbeat-interval", "1s", "--data-dir", dataDir)
}

// runAgent starts periscope-agent with args and its OTLP addresses, and waits
// until it serves.
func runAgent(t *testing.T, grpcAddr, httpAddr string, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(agentBinary(t), append(args, "--otlp-grpc", grpcAddr, "--otlp-http", httpAddr)...)
	// Self-metrics every second, so a test sees them arrive with the application's.
	cmd.Env = append(os.Environ(), "PERISCOPE_SELF_METRICS_INTERVAL=1s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, grpc: grpcAddr, http: httpAddr, stderr: &stderr}
	t.Cleanup(func() { p.kill() })
	eventually(t, 10*time.Second, "agent listening", func() error {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return p
}

func (p *agentProc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// checkContext fails unless a resource carries acme-prod's full deployment context.
func checkContext(t *testing.T, what string, res map[string]string) {
	t.Helper()
	want := map[string]string{
		otlp.AttrDeploymentID: "acme-prod", otlp.AttrCustomer: "acme",
		otlp.AttrCloudProvider: "aws", otlp.AttrCloudRegion: "us-east-1", otlp.AttrCloudPlatform: "aws_ecs",
		otlp.AttrRelease: "1.8.0", otlp.AttrStack: "lighthouse",
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s: resource %s = %q, want %q (resource %v)", what, k, res[k], v, res)
		}
	}
}

func createAcme(t *testing.T, m *manager.Manager) string {
	t.Helper()
	return createAcmeOn(t, apiclient.New(m.URL(), adminToken))
}

// createAcmeOn creates release lighthouse 1.8.0 and deployment acme-prod
// through api and returns the deployment's token.
func createAcmeOn(t *testing.T, api *apiclient.Client) string {
	t.Helper()
	ctx := context.Background()
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "lighthouse", Version: "1.8.0"}); err != nil {
		t.Fatal(err)
	}
	d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme-prod", Customer: "acme", Stack: "lighthouse",
		Cloud: "aws", Region: "us-east-1", Platform: "aws_ecs"})
	if err != nil {
		t.Fatal(err)
	}
	return d.Token
}

// TestTelemetryReachesEveryBackend sends logs, traces and metrics with the official
// OpenTelemetry Go SDK (and telemetrygen) to a real agent process, and finds them at
// an OTLP receiver built on the Collector's libraries, at a real OpenTelemetry
// Collector, and as objects in a real S3-compatible server, all tagged as acme-prod
// even though the application claimed to be another deployment.
func TestTelemetryReachesEveryBackend(t *testing.T) {
	collectorBin := testenv.Peer(t, "otelcol-peer")
	testenv.Peer(t, "versitygw") // skip before starting anything
	telemetrygen := testenv.Peer(t, "telemetrygen")
	ctx := context.Background()

	// A real OpenTelemetry Collector as a backend, printing what it gets.
	sinkGRPC := freePort(t)
	cfgPath, _ := filepath.Abs("../../scripts/peers/otelcol-sink.yaml")
	col := exec.Command(collectorBin, "--config", cfgPath)
	col.Env = append(os.Environ(), "SINK_GRPC="+sinkGRPC, "SINK_HTTP="+freePort(t))
	var colOut syncBuffer
	col.Stderr = &colOut
	if err := col.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { col.Process.Kill(); col.Wait() })

	archive, client := startS3(t)

	down := newDownstream(t)
	m := startTelemetryManager(t, "127.0.0.1:0", t.TempDir(), []config.Exporter{
		{Name: "downstream", Type: "otlphttp", Endpoint: down.srv.URL, Compression: "gzip", Headers: map[string]string{"X-Scope": "vendor"}},
		{Name: "collector", Type: "otlpgrpc", Endpoint: sinkGRPC, TLS: config.ExporterTLS{Insecure: true}},
		archive,
	})
	defer m.Shutdown(ctx)
	token := createAcme(t, m)
	ag := startAgentProc(t, m.URL(), token, t.TempDir(), freePort(t), freePort(t))

	// The application, instrumented with the official SDK, claims another identity.
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("k8s.pod.name", "checkout-6f9c"),
		attribute.String(otlp.AttrDeploymentID, "umbrella-dr"), attribute.String(otlp.AttrCustomer, "umbrella"))
	te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(ag.http), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(te), sdktrace.WithResource(res))
	le, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(ag.http), otlploghttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(le)), sdklog.WithResource(res))
	me, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(ag.http), otlpmetrichttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)), sdkmetric.WithResource(res))

	tracer := tp.Tracer("checkout")
	for i := 0; i < 5; i++ {
		_, span := tracer.Start(ctx, "POST /checkout")
		span.End()
	}
	lg := lp.Logger("checkout")
	for i := 0; i < 5; i++ {
		var rec otellog.Record
		rec.SetBody(attribute.StringValue("payment declined"))
		rec.SetSeverity(otellog.SeverityError)
		lg.Emit(ctx, rec)
	}
	counter, _ := mp.Meter("checkout").Int64Counter("checkout.requests")
	counter.Add(ctx, 7)
	for _, shutdown := range []func(context.Context) error{tp.Shutdown, lp.Shutdown, mp.Shutdown} {
		if err := shutdown(ctx); err != nil {
			t.Fatalf("SDK export to the agent failed: %v", err)
		}
	}

	// telemetrygen, the OpenTelemetry project's load generator, over gRPC.
	for _, args := range [][]string{
		{"logs", "--logs", "20", "--service", "telemetrygen-logs"},
		{"traces", "--traces", "4", "--service", "telemetrygen-traces"},
	} {
		cmd := exec.Command(telemetrygen, append(args, "--otlp-endpoint", ag.grpc, "--otlp-insecure", "--rate", "200")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("telemetrygen %s: %v\n%s", args[0], err, out)
		}
	}

	eventually(t, 20*time.Second, "SDK and telemetrygen records at the downstream receiver", func() error {
		for _, c := range []struct {
			sig     otlp.Signal
			service string
			min     int
		}{
			{otlp.Traces, "checkout", 5}, {otlp.Logs, "checkout", 5}, {otlp.Metrics, "checkout", 1},
			{otlp.Logs, "telemetrygen-logs", 20}, {otlp.Traces, "telemetrygen-traces", 4},
		} {
			if n := len(down.find(c.sig, c.service)); n < c.min {
				return fmt.Errorf("%s from %s: %d, want %d", c.sig, c.service, n, c.min)
			}
		}
		return nil
	})
	for _, sig := range otlp.Signals {
		for _, r := range down.find(sig, "checkout") {
			checkContext(t, "downstream "+sig.String(), r.resource)
			if r.resource["k8s.pod.name"] != "checkout-6f9c" {
				t.Errorf("application attribute k8s.pod.name lost: %v", r.resource)
			}
		}
	}
	for _, r := range down.find(otlp.Logs, "telemetrygen-logs") {
		checkContext(t, "telemetrygen log", r.resource)
	}
	if logs := down.find(otlp.Logs, "checkout"); logs[0].name != "payment declined" {
		t.Errorf("log body = %q", logs[0].name)
	}

	t.Run("AgentSelfMetrics", func(t *testing.T) {
		var accepted []received
		eventually(t, 10*time.Second, "the agent's own metrics at the downstream", func() error {
			accepted = accepted[:0]
			for _, r := range down.find(otlp.Metrics, "periscope-agent") {
				if r.name == "periscope_agent_accepted_records_total" {
					accepted = append(accepted, r)
				}
			}
			if len(accepted) == 0 {
				return fmt.Errorf("no periscope_agent_accepted_records_total yet")
			}
			return nil
		})
		checkContext(t, "agent self-metrics", accepted[0].resource)
	})

	t.Run("Collector", func(t *testing.T) {
		eventually(t, 20*time.Second, "records printed by the OpenTelemetry Collector", func() error {
			out := colOut.String()
			for _, want := range []string{
				"-> periscope.deployment.id: Str(acme-prod)", "-> periscope.customer: Str(acme)",
				"-> periscope.release.version: Str(1.8.0)", "-> periscope.stack.name: Str(lighthouse)",
				"-> cloud.provider: Str(aws)", "-> cloud.region: Str(us-east-1)", "-> cloud.platform: Str(aws_ecs)",
				"-> service.name: Str(checkout)", "Body: Str(payment declined)", "Name           : POST /checkout",
				"Name: checkout.requests",
			} {
				if !strings.Contains(out, want) {
					return fmt.Errorf("collector output lacks %q; last output:\n%s", want, out[max(0, len(out)-3000):])
				}
			}
			if strings.Contains(out, "umbrella") {
				return fmt.Errorf("the spoofed identity reached the collector")
			}
			return nil
		})
	})

	t.Run("S3", func(t *testing.T) {
		key := regexp.MustCompile(`^periscope/(logs|traces|metrics)/\d{4}/\d{2}/\d{2}/\d{2}/acme-prod/\d+-[0-9a-f]{8}\.json\.gz$`)
		signals := map[string]int{}
		eventually(t, 20*time.Second, "objects of every signal in the bucket", func() error {
			out, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("telemetry")})
			if err != nil {
				return err
			}
			clear(signals)
			for _, o := range out.Contents {
				mm := key.FindStringSubmatch(*o.Key)
				if mm == nil {
					return fmt.Errorf("object key %q does not follow the documented layout", *o.Key)
				}
				signals[mm[1]]++
			}
			if len(signals) != 3 {
				return fmt.Errorf("signals in the bucket: %v", signals)
			}
			return nil
		})
		out, _ := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("telemetry"), Prefix: aws.String("periscope/logs/")})
		found := false
		for _, o := range out.Contents {
			obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("telemetry"), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(obj.Body)
			if err != nil {
				t.Fatalf("object %s is not gzip: %v", *o.Key, err)
			}
			data, _ := io.ReadAll(zr)
			obj.Body.Close()
			req := plogotlp.NewExportRequest()
			if err := req.UnmarshalJSON(data); err != nil {
				t.Fatalf("object %s is not OTLP-JSON: %v", *o.Key, err)
			}
			for _, r := range flattenLogs(req.Logs()) {
				checkContext(t, "s3 object "+*o.Key, r.resource)
				found = found || r.name == "payment declined"
			}
		}
		if !found {
			t.Error("no S3 log object holds the SDK's log records")
		}
	})

	t.Run("TokenCannotWriteAsAnotherDeployment", func(t *testing.T) {
		// Straight to the manager, bypassing the agent: acme's token, umbrella's claims.
		l := plog.NewLogs()
		rl := l.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "spoofer")
		rl.Resource().Attributes().PutStr(otlp.AttrDeploymentID, "umbrella-dr")
		rl.Resource().Attributes().PutStr(otlp.AttrCustomer, "umbrella")
		rl.Resource().Attributes().PutStr(otlp.AttrRelease, "9.9.9")
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("I am umbrella")
		body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		req, _ := http.NewRequest(http.MethodPost, m.URL()+"/v1/logs", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		eventually(t, 10*time.Second, "spoofed record at the downstream", func() error {
			if len(down.find(otlp.Logs, "spoofer")) == 0 {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		for _, r := range down.find(otlp.Logs, "spoofer") {
			checkContext(t, "spoofed record", r.resource)
		}

		// And a bad token writes nothing at all.
		req, _ = http.NewRequest(http.MethodPost, m.URL()+"/v1/logs", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Authorization", "Bearer pdt_not-a-token")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("bad token: status %d, want 401", resp.StatusCode)
		}
	})
}

// startS3 runs versitygw, a real S3-compatible server, with an empty bucket
// "telemetry", and returns the manager's exporter into it and a client to read it.
func startS3(t *testing.T) (config.Exporter, *s3.Client) {
	t.Helper()
	endpoint := testenv.VersityGW(t, "telemetry")
	exp := config.Exporter{Name: "archive", Type: "s3", Bucket: "telemetry", Prefix: "periscope", Region: "us-east-1",
		Endpoint: endpoint, PathStyle: true, AccessKeyID: testenv.VersityAccessKey, SecretAccessKey: testenv.VersitySecretKey}
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(exp.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(testenv.VersityAccessKey, testenv.VersitySecretKey, "")})
	return exp, client
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer = testenv.SyncBuffer

// TestTelemetrySurvivesAgentKillAndManagerOutage kills the agent with SIGKILL in the
// middle of a stream and, separately, stops the manager for a while: every record the
// agent acknowledged must arrive, and none twice.
func TestTelemetrySurvivesAgentKillAndManagerOutage(t *testing.T) {
	ctx := context.Background()
	down := newDownstream(t)
	store := &storeSink{seqs: map[string]int{}}
	exps := []config.Exporter{{Name: "downstream", Type: "otlphttp", Endpoint: down.srv.URL}}
	listen, mdir := freePort(t), t.TempDir()
	m := startTelemetryManager(t, listen, mdir, exps, store)
	token := createAcme(t, m)
	adir, grpcAddr, httpAddr := t.TempDir(), freePort(t), freePort(t)
	ag := startAgentProc(t, m.URL(), token, adir, grpcAddr, httpAddr)

	var acked []string
	seq := 0
	// send posts n single-record requests and keeps the sequence numbers acknowledged.
	send := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			l := plog.NewLogs()
			rl := l.ResourceLogs().AppendEmpty()
			rl.Resource().Attributes().PutStr("service.name", "ledger")
			lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
			lr.Body().SetStr("entry")
			lr.Attributes().PutStr("seq", strconv.Itoa(seq))
			body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
			resp, err := http.Post("http://"+httpAddr+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
			if err != nil {
				continue // agent down: not acknowledged, the application would retry
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				acked = append(acked, strconv.Itoa(seq))
			}
		}
	}

	send(300)
	ag.kill()                                                   // SIGKILL: no shutdown, no flush
	send(20)                                                    // refused while the agent is down
	startAgentProc(t, m.URL(), token, adir, grpcAddr, httpAddr) // same data dir: the queue survives
	send(300)

	retries := func() float64 {
		return counter(t, "http://"+httpAddr+"/metrics", "periscope_agent_retried_requests_total", `signal="logs"`)
	}
	before := retries()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	send(300) // the agent keeps accepting and queues while the manager is away
	eventually(t, 10*time.Second, "the agent retrying while the manager is away", func() error {
		if n := retries(); n <= before {
			return fmt.Errorf("%v retried requests, none since the manager stopped", n)
		}
		return nil
	})
	m = startTelemetryManager(t, listen, mdir, exps, store)
	defer m.Shutdown(ctx)
	send(100)

	if len(acked) < 900 {
		t.Fatalf("only %d of %d records acknowledged", len(acked), seq)
	}
	eventually(t, 60*time.Second, "every acknowledged record in the store and downstream", func() error {
		store.mu.Lock()
		defer store.mu.Unlock()
		for _, s := range acked {
			if store.seqs[s] == 0 {
				return fmt.Errorf("record %s not in the store yet (%d of %d there)", s, len(store.seqs), len(acked))
			}
		}
		if got := len(down.find(otlp.Logs, "ledger")); got < len(acked) {
			return fmt.Errorf("downstream has %d of %d records", got, len(acked))
		}
		return nil
	})
	store.mu.Lock()
	for s, n := range store.seqs {
		if n != 1 {
			t.Errorf("record %s stored %d times", s, n)
		}
	}
	store.mu.Unlock()
	perSeq := map[string]int{}
	for _, r := range down.find(otlp.Logs, "ledger") {
		perSeq[r.attrs["seq"]]++
		checkContext(t, "ledger record", r.resource)
	}
	for s, n := range perSeq {
		if n != 1 {
			t.Errorf("record %s reached the downstream %d times", s, n)
		}
	}
	t.Logf("%d records sent, %d acknowledged, all delivered once", seq, len(acked))
}

// TestManagerTakesOTLPOverGRPC sends straight to the manager's optional OTLP/gRPC port
// with a deployment token in the metadata, as a Collector at the customer could.
func TestManagerTakesOTLPOverGRPC(t *testing.T) {
	ctx := context.Background()
	down := newDownstream(t)
	m := startTelemetryManagerGRPC(t, "127.0.0.1:0", t.TempDir(), "127.0.0.1:0",
		[]config.Exporter{{Name: "downstream", Type: "otlphttp", Endpoint: down.srv.URL}})
	defer m.Shutdown(ctx)
	token := createAcme(t, m)
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := plogotlp.NewGRPCClient(conn)
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "grpc-sender")
	rl.Resource().Attributes().PutStr(otlp.AttrDeploymentID, "umbrella-dr")
	// No agent has checked in, so the manager knows no running release: the sender's
	// own claim about its release is kept, unlike its claim about who it is.
	rl.Resource().Attributes().PutStr(otlp.AttrRelease, "1.8.0")
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("over gRPC")
	req := plogotlp.NewExportRequestFromLogs(l)

	_, err = client.Export(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer pdt_wrong"), req)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("bad token: %v, want Unauthenticated", err)
	}
	if _, err := client.Export(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), req); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the gRPC record at the downstream", func() error {
		if len(down.find(otlp.Logs, "grpc-sender")) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	for _, r := range down.find(otlp.Logs, "grpc-sender") {
		checkContext(t, "gRPC record", r.resource)
	}
}
