package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/store/duckfile"
)

// outRecord is one log record, span or metric data point as it left the manager,
// whichever way it left: the leak test's common view of every backend.
type outRecord struct {
	signal   otlp.Signal
	service  string
	function string // the resource's faas.name, or the store's function column
	name     string // span or metric name
	body     string // log body (structured bodies as JSON)
	attrs    map[string]string
	resource map[string]string
	duration time.Duration       // spans
	events   []map[string]string // span events' attributes, with the event's name under "event.name"
}

// exported is what one backend received: the bytes it holds, searched for secrets,
// and the records decoded from them, checked for what must arrive intact.
type exported struct {
	raw     [][]byte
	records []outRecord
}

// count returns how many records of sig came from service.
func (e *exported) count(sig otlp.Signal, service string) int {
	n := 0
	for _, r := range e.records {
		if r.signal == sig && r.service == service {
			n++
		}
	}
	return n
}

func pdataAttrs(m pcommon.Map) map[string]string {
	out := make(map[string]string, m.Len())
	for k, v := range m.All() {
		out[k] = v.AsString()
	}
	return out
}

// resourceRecord fills what a record takes from its resource.
func resourceRecord(sig otlp.Signal, res pcommon.Resource) outRecord {
	attrs := pdataAttrs(res.Attributes())
	return outRecord{signal: sig, service: attrs["service.name"], function: attrs["faas.name"], resource: attrs}
}

func logRecords(l plog.Logs) []outRecord {
	var out []outRecord
	for _, rl := range l.ResourceLogs().All() {
		base := resourceRecord(otlp.Logs, rl.Resource())
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				r := base
				r.body, r.attrs = lr.Body().AsString(), pdataAttrs(lr.Attributes())
				out = append(out, r)
			}
		}
	}
	return out
}

func spanRecords(tr ptrace.Traces) []outRecord {
	var out []outRecord
	for _, rs := range tr.ResourceSpans().All() {
		base := resourceRecord(otlp.Traces, rs.Resource())
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				r := base
				r.name, r.attrs = s.Name(), pdataAttrs(s.Attributes())
				r.duration = s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime())
				for _, e := range s.Events().All() {
					ev := pdataAttrs(e.Attributes())
					ev["event.name"] = e.Name()
					r.events = append(r.events, ev)
				}
				r.attrs["otel.status_description"] = s.Status().Message()
				out = append(out, r)
			}
		}
	}
	return out
}

func metricRecords(md pmetric.Metrics) []outRecord {
	var out []outRecord
	for _, rm := range md.ResourceMetrics().All() {
		base := resourceRecord(otlp.Metrics, rm.Resource())
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				var points pmetric.NumberDataPointSlice
				switch m.Type() {
				case pmetric.MetricTypeSum:
					points = m.Sum().DataPoints()
				case pmetric.MetricTypeGauge:
					points = m.Gauge().DataPoints()
				default:
					continue
				}
				for _, p := range points.All() {
					r := base
					r.name, r.attrs = m.Name(), pdataAttrs(p.Attributes())
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// decodeOTLP decodes one export request of sig, protobuf or JSON, into records.
func decodeOTLP(sig otlp.Signal, data []byte, isJSON bool) ([]outRecord, error) {
	type request interface {
		UnmarshalProto([]byte) error
		UnmarshalJSON([]byte) error
	}
	var req request
	switch sig {
	case otlp.Logs:
		r := plogotlp.NewExportRequest()
		req = &r
	case otlp.Traces:
		r := ptraceotlp.NewExportRequest()
		req = &r
	default:
		r := pmetricotlp.NewExportRequest()
		req = &r
	}
	var err error
	if isJSON {
		err = req.UnmarshalJSON(data)
	} else {
		err = req.UnmarshalProto(data)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %v request: %w", sig, err)
	}
	switch r := req.(type) {
	case *plogotlp.ExportRequest:
		return logRecords(r.Logs()), nil
	case *ptraceotlp.ExportRequest:
		return spanRecords(r.Traces()), nil
	default:
		return metricRecords(req.(*pmetricotlp.ExportRequest).Metrics()), nil
	}
}

// otlpBackend is an OTLP receiver over HTTP and gRPC, built on the Collector's pdata,
// that keeps every request's bytes and records.
type otlpBackend struct {
	mu   sync.Mutex
	got  map[string]*exported // by transport: "otlphttp", "otlpgrpc"
	http *httptest.Server
	grpc *grpc.Server
	addr string // the gRPC listener's address
}

func newOTLPBackend(t *testing.T) *otlpBackend {
	t.Helper()
	b := &otlpBackend{got: map[string]*exported{"otlphttp": {}, "otlpgrpc": {}}}
	b.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := otlp.Decompress(r.Header.Get("Content-Encoding"), r.Body, 64<<20)
		if err == nil {
			var sig otlp.Signal
			if sig, err = otlp.ParseSignal(strings.TrimPrefix(r.URL.Path, "/v1/")); err == nil {
				err = b.add("otlphttp", sig, data)
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", otlp.ContentTypeProto)
	}))
	t.Cleanup(b.http.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = l.Addr().String()
	b.grpc = grpc.NewServer()
	plogotlp.RegisterGRPCServer(b.grpc, &grpcLogs{b: b})
	ptraceotlp.RegisterGRPCServer(b.grpc, &grpcTraces{b: b})
	pmetricotlp.RegisterGRPCServer(b.grpc, &grpcMetrics{b: b})
	served := make(chan struct{})
	go func() { defer close(served); _ = b.grpc.Serve(l) }()
	t.Cleanup(func() { b.grpc.Stop(); <-served })
	return b
}

func (b *otlpBackend) add(transport string, sig otlp.Signal, data []byte) error {
	recs, err := decodeOTLP(sig, data, false)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.got[transport]
	e.raw = append(e.raw, data)
	e.records = append(e.records, recs...)
	return nil
}

// snapshot returns a copy of what transport received so far.
func (b *otlpBackend) snapshot(transport string) *exported {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.got[transport]
	return &exported{raw: append([][]byte(nil), e.raw...), records: append([]outRecord(nil), e.records...)}
}

type grpcLogs struct {
	plogotlp.UnimplementedGRPCServer
	b *otlpBackend
}

func (g grpcLogs) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	data, err := req.MarshalProto()
	if err == nil {
		err = g.b.add("otlpgrpc", otlp.Logs, data)
	}
	return plogotlp.NewExportResponse(), err
}

type grpcTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	b *otlpBackend
}

func (g grpcTraces) Export(_ context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	data, err := req.MarshalProto()
	if err == nil {
		err = g.b.add("otlpgrpc", otlp.Traces, data)
	}
	return ptraceotlp.NewExportResponse(), err
}

type grpcMetrics struct {
	pmetricotlp.UnimplementedGRPCServer
	b *otlpBackend
}

func (g grpcMetrics) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	data, err := req.MarshalProto()
	if err == nil {
		err = g.b.add("otlpgrpc", otlp.Metrics, data)
	}
	return pmetricotlp.NewExportResponse(), err
}

// readS3 reads every object in the bucket: gzip-compressed OTLP-JSON, one request
// each, its signal named in its key.
func readS3(ctx context.Context, client *s3.Client, bucket string) (*exported, error) {
	out := &exported{}
	list, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	if aws.ToBool(list.IsTruncated) {
		return nil, fmt.Errorf("more than one page of objects in %s", bucket)
	}
	for _, o := range list.Contents {
		key := aws.ToString(o.Key)
		obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
		data, err := gunzipAll(obj.Body)
		obj.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("object %s: %w", key, err)
		}
		sig, err := otlp.ParseSignal(strings.Split(strings.TrimPrefix(key, "periscope/"), "/")[0])
		if err != nil {
			return nil, fmt.Errorf("object %s: %w", key, err)
		}
		recs, err := decodeOTLP(sig, data, true)
		if err != nil {
			return nil, fmt.Errorf("object %s: %w", key, err)
		}
		out.raw = append(out.raw, data)
		out.records = append(out.records, recs...)
	}
	return out, nil
}

func gunzipAll(r io.Reader) ([]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(zr, 256<<20))
}

// readExportFile reads the file exporter's OTLP-JSON lines.
func readExportFile(path string) (*exported, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := &exported{raw: [][]byte{data}}
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(nil, 64<<20)
	for s.Scan() {
		line := s.Bytes()
		var sig otlp.Signal
		switch {
		case bytes.HasPrefix(line, []byte(`{"resourceLogs"`)):
			sig = otlp.Logs
		case bytes.HasPrefix(line, []byte(`{"resourceSpans"`)):
			sig = otlp.Traces
		case bytes.HasPrefix(line, []byte(`{"resourceMetrics"`)):
			sig = otlp.Metrics
		default:
			return nil, fmt.Errorf("file exporter line of no known signal: %.80s", line)
		}
		recs, err := decodeOTLP(sig, line, true)
		if err != nil {
			return nil, err
		}
		out.records = append(out.records, recs...)
	}
	return out, s.Err()
}

// readStore opens the telemetry store of a stopped manager and reads it whole: every
// cell of every table as text for the leak search, and the records through the
// store's views.
func readStore(ctx context.Context, dataDir string) (*exported, error) {
	db, _, err := duckfile.Open(ctx, dataDir, telstore.FileName)
	if err != nil {
		return nil, fmt.Errorf("open the telemetry store: %w", err)
	}
	defer db.Close()
	out := &exported{}
	tables, err := queryStrings(ctx, db, `SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'`)
	if err != nil {
		return nil, err
	}
	for _, tbl := range tables {
		rows, err := queryStrings(ctx, db, `SELECT * FROM "`+tbl[0]+`"`)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		for _, r := range rows {
			b.WriteString(strings.Join(r, "\t"))
			b.WriteByte('\n')
		}
		out.raw = append(out.raw, b.Bytes())
	}
	for _, q := range []struct {
		sig otlp.Signal
		sql string
	}{
		{otlp.Logs, `SELECT service, function, '', body, coalesce(attrs, ''), coalesce(resource, ''), 0, '' FROM logs`},
		{otlp.Traces, `SELECT service, function, name, '', coalesce(attrs, ''), coalesce(resource, ''), duration_ns, coalesce(events, '') FROM spans`},
		{otlp.Metrics, `SELECT service, function, name, '', coalesce(attrs, ''), coalesce(resource, ''), 0, '' FROM metric_points`},
	} {
		rows, err := queryStrings(ctx, db, q.sql)
		if err != nil {
			return nil, err
		}
		for _, c := range rows {
			r := outRecord{signal: q.sig, service: c[0], function: c[1], name: c[2], body: c[3]}
			if r.attrs, err = jsonAttrs(c[4]); err != nil {
				return nil, err
			}
			if r.resource, err = jsonAttrs(c[5]); err != nil {
				return nil, err
			}
			ns, err := strconv.ParseInt(c[6], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("duration %q: %w", c[6], err)
			}
			r.duration = time.Duration(ns)
			if c[7] != "" {
				var evs []struct {
					Name       string         `json:"name"`
					Attributes map[string]any `json:"attributes"`
				}
				if err := json.Unmarshal([]byte(c[7]), &evs); err != nil {
					return nil, fmt.Errorf("span events %.80s: %w", c[7], err)
				}
				for _, e := range evs {
					ev := stringValues(e.Attributes)
					ev["event.name"] = e.Name
					r.events = append(r.events, ev)
				}
			}
			out.records = append(out.records, r)
		}
	}
	return out, nil
}

// queryStrings runs a query and returns every cell as text ("" for NULL).
func queryStrings(ctx context.Context, db *sql.DB, query string) ([][]string, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("%s: %w", query, err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
			case []byte:
				row[i] = string(v)
			default:
				row[i] = fmt.Sprint(v)
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// jsonAttrs reads the store's attributes column: a JSON object, strings kept as they
// are and other values as JSON.
func jsonAttrs(s string) (map[string]string, error) {
	if s == "" {
		return map[string]string{}, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("attributes %.80s: %w", s, err)
	}
	return stringValues(m), nil
}

func stringValues(m map[string]any) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
			continue
		}
		b, _ := json.Marshal(v)
		out[k] = string(b)
	}
	return out
}

// readDir returns every file under dir, raw: whatever else the manager keeps on disk.
func readDir(dir string) (*exported, error) {
	out := &exported{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out.raw = append(out.raw, data)
		return nil
	})
	return out, err
}

// haystacks returns what to search for secrets in raw: the bytes themselves, and, since
// JSON may escape a secret's characters (& as \u0026), the bytes with JSON string
// escapes undone.
func haystacks(raw [][]byte) []string {
	var out []string
	for _, b := range raw {
		out = append(out, string(b))
		if bytes.IndexByte(b, '\\') >= 0 {
			out = append(out, unescapeJSONText(string(b)))
		}
	}
	return out
}

// unescapeJSONText undoes JSON string escapes wherever they are in s, leaving anything
// else as it is.
func unescapeJSONText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'u':
			var r rune
			if i+4 < len(s) {
				if _, err := fmt.Sscanf(s[i+1:i+5], "%04x", &r); err == nil {
					b.WriteRune(r)
					i += 4
					continue
				}
			}
			b.WriteString(`\u`)
		default: // \" \\ \/ and anything unknown: the character itself
			b.WriteByte(c)
		}
	}
	return b.String()
}
