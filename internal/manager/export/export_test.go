package export

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.yaml.in/yaml/v3"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// received is what a downstream receiver got from one export request, reduced to what
// the tests compare: the deployment on each resource and the name of each record.
type received struct {
	Signal      otlp.Signal
	Deployments []string
	Records     []string
}

// testBatch builds a batch of n records of sig from deployment, named <sig>-<i>, as the
// manager would hand it to an exporter.
func testBatch(t *testing.T, sig otlp.Signal, deployment string, n int) consumer.Batch {
	t.Helper()
	return consumer.Batch{
		Signal:       sig,
		DeploymentID: deployment,
		Received:     time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC),
		Records:      n,
		Data:         testPayload(t, sig, deployment, n, ""),
	}
}

// testPayload encodes an export request of n records; pad is added to each record to
// make large payloads.
func testPayload(t *testing.T, sig otlp.Signal, deployment string, n int, pad string) []byte {
	t.Helper()
	resource := func(r pcommon.Resource) {
		r.Attributes().PutStr(otlp.AttrDeploymentID, deployment)
		r.Attributes().PutStr("service.name", "checkout")
	}
	name := func(i int) string { return fmt.Sprintf("%s-%d%s", sig, i, pad) }
	var (
		data []byte
		err  error
	)
	switch sig {
	case otlp.Logs:
		l := plog.NewLogs()
		rl := l.ResourceLogs().AppendEmpty()
		resource(rl.Resource())
		sl := rl.ScopeLogs().AppendEmpty()
		for i := range n {
			r := sl.LogRecords().AppendEmpty()
			r.Body().SetStr(name(i))
			r.SetSeverityText("INFO")
		}
		data, err = plogotlp.NewExportRequestFromLogs(l).MarshalProto()
	case otlp.Traces:
		tr := ptrace.NewTraces()
		rs := tr.ResourceSpans().AppendEmpty()
		resource(rs.Resource())
		ss := rs.ScopeSpans().AppendEmpty()
		for i := range n {
			s := ss.Spans().AppendEmpty()
			s.SetName(name(i))
			s.SetTraceID(pcommon.TraceID{1, byte(i)})
			s.SetSpanID(pcommon.SpanID{2, byte(i)})
		}
		data, err = ptraceotlp.NewExportRequestFromTraces(tr).MarshalProto()
	case otlp.Metrics:
		m := pmetric.NewMetrics()
		rm := m.ResourceMetrics().AppendEmpty()
		resource(rm.Resource())
		sm := rm.ScopeMetrics().AppendEmpty()
		for i := range n {
			g := sm.Metrics().AppendEmpty()
			g.SetName(name(i))
			g.SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(int64(i))
		}
		data, err = pmetricotlp.NewExportRequestFromMetrics(m).MarshalProto()
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// exportEverySignal exports one batch of n records per signal, deployment
// "dep-<signal>", and returns them in the order sent.
func exportEverySignal(t *testing.T, e Exporter, n int) []consumer.Batch {
	t.Helper()
	var sent []consumer.Batch
	for _, sig := range otlp.Signals {
		b := testBatch(t, sig, "dep-"+sig.String(), n)
		sent = append(sent, b)
		if err := e.Export(context.Background(), b); err != nil {
			t.Fatalf("Export(%s) = %v", sig, err)
		}
	}
	return sent
}

// want is what a receiver should get for testBatch(t, sig, deployment, n).
func want(sig otlp.Signal, deployment string, n int) received {
	r := received{Signal: sig, Deployments: []string{deployment}}
	for i := range n {
		r.Records = append(r.Records, fmt.Sprintf("%s-%d", sig, i))
	}
	return r
}

// decodeOTLP decodes an export request in protobuf or, with json set, OTLP-JSON.
func decodeOTLP(sig otlp.Signal, data []byte, json bool) (received, error) {
	r := received{Signal: sig}
	deployment := func(res pcommon.Resource) {
		v, _ := res.Attributes().Get(otlp.AttrDeploymentID)
		r.Deployments = append(r.Deployments, v.AsString())
	}
	unmarshal := func(req interface {
		UnmarshalProto([]byte) error
		UnmarshalJSON([]byte) error
	}) error {
		if json {
			return req.UnmarshalJSON(data)
		}
		return req.UnmarshalProto(data)
	}
	switch sig {
	case otlp.Logs:
		req := plogotlp.NewExportRequest()
		if err := unmarshal(req); err != nil {
			return r, err
		}
		for _, rl := range req.Logs().ResourceLogs().All() {
			deployment(rl.Resource())
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					r.Records = append(r.Records, lr.Body().AsString())
				}
			}
		}
	case otlp.Traces:
		req := ptraceotlp.NewExportRequest()
		if err := unmarshal(req); err != nil {
			return r, err
		}
		for _, rs := range req.Traces().ResourceSpans().All() {
			deployment(rs.Resource())
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					r.Records = append(r.Records, s.Name())
				}
			}
		}
	case otlp.Metrics:
		req := pmetricotlp.NewExportRequest()
		if err := unmarshal(req); err != nil {
			return r, err
		}
		for _, rm := range req.Metrics().ResourceMetrics().All() {
			deployment(rm.Resource())
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					r.Records = append(r.Records, m.Name())
				}
			}
		}
	default:
		return r, fmt.Errorf("unknown signal %s", sig)
	}
	return r, nil
}

func equalReceived(a, b received) bool {
	return a.Signal == b.Signal && slices.Equal(a.Deployments, b.Deployments) && slices.Equal(a.Records, b.Records)
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		errs []string // substrings the error must contain; none means valid
	}{
		{"otlphttp minimal", Config{Name: "a", Type: "otlphttp", Endpoint: "https://otlp.example.com:4318"}, nil},
		{"otlphttp zstd with mTLS", Config{Name: "a", Type: "otlphttp", Endpoint: "http://h/otlp", Compression: "zstd",
			TLS: TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"}}, nil},
		{"otlpgrpc minimal", Config{Name: "g", Type: "otlpgrpc", Endpoint: "otlp.example.com:4317"}, nil},
		{"s3 minimal", Config{Name: "s", Type: "s3", Bucket: "b"}, nil},
		{"s3 full", Config{Name: "s", Type: "s3", Bucket: "b", Endpoint: "http://127.0.0.1:9000", AccessKeyID: "k",
			SecretAccessKey: "s", Format: "otlp_proto", Compression: "none", PathStyle: true}, nil},
		{"file minimal", Config{Name: "f", Type: "file", Path: "/tmp/x.jsonl"}, nil},
		{"file rotating", Config{Name: "f", Type: "file", Path: "x", MaxSizeMB: 10, MaxBackups: 3}, nil},

		{"no name", Config{Type: "file", Path: "x"}, []string{"exporter with no name: name: must be set"}},
		{"no type", Config{Name: "a"}, []string{`exporter "a": type: must be set`}},
		{"unknown type", Config{Name: "a", Type: "kafka"}, []string{`exporter "a": type: "kafka" must be otlphttp, otlpgrpc, s3 or file`}},
		{"otlphttp no endpoint", Config{Name: "a", Type: "otlphttp"}, []string{`exporter "a": endpoint: "" is not an http(s) URL`}},
		{"otlphttp host:port endpoint", Config{Name: "a", Type: "otlphttp", Endpoint: "otlp:4318"}, []string{`endpoint: "otlp:4318" is not an http(s) URL`}},
		{"otlphttp bad compression", Config{Name: "a", Type: "otlphttp", Endpoint: "http://h", Compression: "lz4"},
			[]string{`exporter "a": compression: "lz4" must be gzip, zstd or none`}},
		{"otlphttp half a client cert", Config{Name: "a", Type: "otlphttp", Endpoint: "http://h", TLS: TLSConfig{CertFile: "c"}},
			[]string{`exporter "a": tls: cert_file and key_file: set both or neither`}},
		{"negative timeout", Config{Name: "a", Type: "otlphttp", Endpoint: "http://h", Timeout: Duration(-time.Second)},
			[]string{`exporter "a": timeout: must not be negative`}},
		{"otlpgrpc URL endpoint", Config{Name: "g", Type: "otlpgrpc", Endpoint: "http://h"}, []string{`exporter "g": endpoint: "http://h" is not host:port`}},
		{"otlpgrpc insecure with a CA", Config{Name: "g", Type: "otlpgrpc", Endpoint: "h:4317", TLS: TLSConfig{Insecure: true, CAFile: "ca.pem"}},
			[]string{`exporter "g": tls: insecure turns TLS off`}},
		{"otlpgrpc zstd", Config{Name: "g", Type: "otlpgrpc", Endpoint: "h:4317", Compression: "zstd"},
			[]string{`exporter "g": compression: "zstd" must be gzip or none`}},
		{"s3 everything wrong", Config{Name: "s", Type: "s3", Endpoint: "minio:9000", AccessKeyID: "k", Format: "parquet", Compression: "zstd"},
			[]string{`exporter "s": bucket: must be set`, `exporter "s": endpoint: "minio:9000"`,
				`exporter "s": access_key_id and secret_access_key: set both or neither`,
				`exporter "s": format: "parquet" must be otlp_json or otlp_proto`, `exporter "s": compression: "zstd" must be gzip or none`}},
		{"file no path", Config{Name: "f", Type: "file"}, []string{`exporter "f": path: must be set`}},
		{"file compression", Config{Name: "f", Type: "file", Path: "x", Compression: "gzip"}, []string{`exporter "f": compression:`}},
		{"file rotation without backups", Config{Name: "f", Type: "file", Path: "x", MaxSizeMB: 5},
			[]string{`exporter "f": max_backups: must be at least 1 when max_size_mb is set`}},
		{"file negatives", Config{Name: "f", Type: "file", Path: "x", MaxSizeMB: -1, MaxBackups: -1},
			[]string{"max_size_mb: must not be negative", "max_backups: must not be negative"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tc.errs)
			}
			for _, s := range tc.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, s)
				}
			}
			if got, want := strings.Count(err.Error(), "\n")+1, len(tc.errs); got != want {
				t.Errorf("Validate() reported %d problems, want %d:\n%v", got, want, err)
			}
			if _, nerr := New(tc.cfg); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New() = %v, want the Validate error", nerr)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	const doc = `
name: backend
type: otlphttp
endpoint: https://otlp.example.com
headers: {authorization: Bearer x}
compression: zstd
timeout: 10s
tls: {ca_file: /etc/ca.pem, server_name: otlp.internal}
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Timeout != Duration(10*time.Second) || c.TLS.CAFile != "/etc/ca.pem" || c.TLS.ServerName != "otlp.internal" ||
		c.Headers["authorization"] != "Bearer x" || c.Compression != "zstd" {
		t.Errorf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	if err := yaml.Unmarshal([]byte("timeout: 10"), &c); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Errorf("timeout without a unit: err = %v, want a duration error", err)
	}
	out, err := yaml.Marshal(Config{Timeout: Duration(90 * time.Second)})
	if err != nil || !strings.Contains(string(out), "timeout: 1m30s") {
		t.Errorf("Marshal = %s, %v; want timeout: 1m30s", out, err)
	}
}
