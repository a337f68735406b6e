package receiver

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/periscope-dev/periscope/internal/otlp"
)

// recorder is a consumer that keeps what it got, or refuses with err.
type recorder struct {
	mu   sync.Mutex
	got  []Request
	auth []string
	err  error
}

func (c *recorder) Consume(_ context.Context, r Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	r.Body = bytes.Clone(r.Body) // the receiver reuses it once Consume returns
	c.got = append(c.got, r)
	c.auth = append(c.auth, r.Header("Authorization"))
	return nil
}

func logsRequest(t testing.TB, n int) plogotlp.ExportRequest {
	t.Helper()
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	for i := 0; i < n; i++ {
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("payment declined")
	}
	return plogotlp.NewExportRequestFromLogs(l)
}

func serveHTTP(t *testing.T, c Consumer, maxBytes int64) string {
	mux := http.NewServeMux()
	(&HTTP{Consumer: c, MaxBytes: maxBytes}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func post(t *testing.T, url, ct, enc string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer pdt_x")
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestHTTPAcceptsProtobufJSONAndGzip(t *testing.T) {
	c := &recorder{}
	url := serveHTTP(t, c, 0)
	req := logsRequest(t, 3)
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(pb)
	zw.Close()

	for _, tc := range []struct {
		ct, enc string
		body    []byte
	}{
		{otlp.ContentTypeProto, "", pb},
		{otlp.ContentTypeJSON, "", js},
		{otlp.ContentTypeProto, "gzip", gz.Bytes()},
	} {
		resp, body := post(t, url+"/v1/logs", tc.ct, tc.enc, tc.body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: status %d %s", tc.ct, tc.enc, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Content-Type"); got != tc.ct {
			t.Errorf("response content type %q, want %q", got, tc.ct)
		}
	}
	if len(c.got) != 3 {
		t.Fatalf("consumer got %d requests, want 3", len(c.got))
	}
	for i, r := range c.got {
		dec := plogotlp.NewExportRequest()
		if err := dec.UnmarshalProto(r.Body); err != nil || dec.Logs().LogRecordCount() != 3 || r.Signal != otlp.Logs {
			t.Errorf("request %d: %v, %d records, signal %v", i, err, dec.Logs().LogRecordCount(), r.Signal)
		}
		if c.auth[i] != "Bearer pdt_x" {
			t.Errorf("request %d: consumer saw authorization %q", i, c.auth[i])
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	full := &recorder{err: Full("queue full", 3*time.Second)}
	pb, _ := logsRequest(t, 50).MarshalProto()
	small := serveHTTP(t, &recorder{}, 200)

	resp, _ := post(t, small+"/v1/logs", otlp.ContentTypeProto, "", pb)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d", resp.StatusCode)
	}
	// A small gzip body that expands past the limit is refused too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte{0}, 10000))
	zw.Close()
	if resp, _ = post(t, small+"/v1/logs", otlp.ContentTypeProto, "gzip", gz.Bytes()); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip bomb: %d", resp.StatusCode)
	}

	url := serveHTTP(t, &recorder{}, 0)
	resp, body := post(t, url+"/v1/traces", otlp.ContentTypeJSON, "", []byte(`{"resourceSpans": [`))
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"code":3`) {
		t.Errorf("malformed JSON: %d %s", resp.StatusCode, body)
	}
	if resp, _ = post(t, url+"/v1/logs", "text/plain", "", pb); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", resp.StatusCode)
	}
	if resp, _ = post(t, url+"/v1/logs", otlp.ContentTypeProto, "br", pb); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("brotli: %d", resp.StatusCode)
	}
	if resp, _ = post(t, url+"/v1/logs", otlp.ContentTypeProto, "gzip", []byte("not gzip")); resp.StatusCode != 400 {
		t.Errorf("bad gzip: %d", resp.StatusCode)
	}

	resp, _ = post(t, serveHTTP(t, full, 0)+"/v1/logs", otlp.ContentTypeProto, "", pb)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("full: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestGRPCExportAndBackpressure(t *testing.T) {
	c := &recorder{}
	client := serveGRPC(t, c)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer pdt_x")
	if _, err := client.Export(ctx, logsRequest(t, 4)); err != nil {
		t.Fatal(err)
	}
	if len(c.got) != 1 || c.auth[0] != "Bearer pdt_x" {
		t.Fatalf("consumer got %d requests, auth %v", len(c.got), c.auth)
	}
	dec := plogotlp.NewExportRequest()
	if err := dec.UnmarshalProto(c.got[0].Body); err != nil || dec.Logs().LogRecordCount() != 4 {
		t.Errorf("body: %v, %d records", err, dec.Logs().LogRecordCount())
	}

	c.err = Full("queue full", 2*time.Second)
	_, err := client.Export(ctx, logsRequest(t, 1))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("full: %v", err)
	}
	var delay time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.RetryDelay.AsDuration()
		}
	}
	if delay != 2*time.Second {
		t.Errorf("RetryInfo delay = %v, want 2s", delay)
	}
}

// serveGRPC starts a gRPC receiver for c and returns a logs client of it.
func serveGRPC(t testing.TB, c Consumer) plogotlp.GRPCClient {
	_, addr := startGRPC(t, c, 0, nil)
	return plogotlp.NewGRPCClient(dialGRPC(t, addr))
}

// Request buffers are reused: each request must still arrive whole and alone,
// whatever the size of the one before it.
func TestGRPCBodiesStayWholeWhenBuffersAreReused(t *testing.T) {
	var got []int
	client := serveGRPC(t, ConsumerFunc(func(_ context.Context, r Request) error {
		dec := plogotlp.NewExportRequest()
		if err := dec.UnmarshalProto(r.Body); err != nil {
			return BadRequest("%v", err)
		}
		got = append(got, dec.Logs().LogRecordCount())
		return nil
	}))
	want := []int{50, 3, 200, 1, 20}
	for _, n := range want {
		if _, err := client.Export(context.Background(), logsRequest(t, n)); err != nil {
			t.Fatalf("export of %d records: %v", n, err)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("consumer saw %v records per request, want %v", got, want)
	}
}

// BenchmarkGRPCExport reports what the receiver allocates per 100-record export
// (client included), the cost that request buffers reused between requests cut.
func BenchmarkGRPCExport(b *testing.B) {
	client := serveGRPC(b, ConsumerFunc(func(context.Context, Request) error { return nil }))
	req := logsRequest(b, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Export(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// gatekeeper refuses every request at Authorize.
type gatekeeper struct{ recorder }

func (*gatekeeper) Authorize(ctx context.Context, header func(string) string) (context.Context, error) {
	if header("Authorization") != "Bearer pdt_ok" {
		return ctx, Unauthorized("no")
	}
	return ctx, nil
}

func TestCredentialsAreCheckedBeforeTheBodyIsRead(t *testing.T) {
	// An oversized body from a client without credentials gets 401, not 413: the
	// receiver never read it.
	url := serveHTTP(t, &gatekeeper{}, 100)
	pb, _ := logsRequest(t, 50).MarshalProto()
	if resp, _ := post(t, url+"/v1/logs", otlp.ContentTypeProto, "", pb); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
}

// slow holds every request until released, to fill a limiter, and kicks started
// as each arrives.
type slow struct{ started, release chan struct{} }

func newSlow() *slow { return &slow{started: make(chan struct{}, 1), release: make(chan struct{})} }

func (s *slow) Consume(context.Context, Request) error {
	select {
	case s.started <- struct{}{}:
	default: // a kick is pending already
	}
	<-s.release
	return nil
}

func TestLimiterRefusesBeyondItsBound(t *testing.T) {
	c := newSlow()
	mux := http.NewServeMux()
	(&HTTP{Consumer: c, Limiter: NewLimiter(1)}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	pb, _ := logsRequest(t, 1).MarshalProto()
	first := make(chan int)
	go func() {
		resp, _ := post(t, srv.URL+"/v1/logs", otlp.ContentTypeProto, "", pb)
		first <- resp.StatusCode
	}()
	<-c.started // the first request now holds the only slot
	resp, _ := post(t, srv.URL+"/v1/logs", otlp.ContentTypeProto, "", pb)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request: %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(c.release)
	if code := <-first; code != 200 {
		t.Errorf("first request: %d", code)
	}
}
