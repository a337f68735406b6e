package receiver

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/consumer/consumertest"
)

func serveHTTP(t *testing.T, c consumer.Consumer, maxBytes int64) string {
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
	c := &consumertest.Recorder{}
	url := serveHTTP(t, c, 0)
	req := consumertest.LogsRequest(3)
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
	if len(c.Got) != 3 {
		t.Fatalf("consumer got %d requests, want 3", len(c.Got))
	}
	for i, r := range c.Got {
		dec := plogotlp.NewExportRequest()
		if err := dec.UnmarshalProto(r.Body); err != nil || dec.Logs().LogRecordCount() != 3 || r.Signal != otlp.Logs {
			t.Errorf("request %d: %v, %d records, signal %v", i, err, dec.Logs().LogRecordCount(), r.Signal)
		}
		if c.Auth[i] != "Bearer pdt_x" {
			t.Errorf("request %d: consumer saw authorization %q", i, c.Auth[i])
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	full := &consumertest.Recorder{Err: consumer.Full("queue full", 3*time.Second)}
	pb, _ := consumertest.LogsRequest(50).MarshalProto()
	small := serveHTTP(t, &consumertest.Recorder{}, 200)

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

	url := serveHTTP(t, &consumertest.Recorder{}, 0)
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

func TestCredentialsAreCheckedBeforeTheBodyIsRead(t *testing.T) {
	// An oversized body from a client without credentials gets 401, not 413: the
	// receiver never read it.
	url := serveHTTP(t, &consumertest.Gatekeeper{Want: "Bearer pdt_ok"}, 100)
	pb, _ := consumertest.LogsRequest(50).MarshalProto()
	if resp, _ := post(t, url+"/v1/logs", otlp.ContentTypeProto, "", pb); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
}

func TestLimiterRefusesBeyondItsBound(t *testing.T) {
	c := consumertest.NewBlocker()
	mux := http.NewServeMux()
	(&HTTP{Consumer: c, Limiter: NewLimiter(1)}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	pb, _ := consumertest.LogsRequest(1).MarshalProto()
	first := make(chan int)
	go func() {
		resp, _ := post(t, srv.URL+"/v1/logs", otlp.ContentTypeProto, "", pb)
		first <- resp.StatusCode
	}()
	<-c.Started // the first request now holds the only slot
	resp, _ := post(t, srv.URL+"/v1/logs", otlp.ContentTypeProto, "", pb)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second request: %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(c.Release)
	if code := <-first; code != 200 {
		t.Errorf("first request: %d", code)
	}
}

func TestHTTPRefusesDeepJSONWithoutDecodingIt(t *testing.T) {
	// Issue 17: half a million levels in 14 MB cost the decoder about 410 MB.
	const n = 500_000
	deep := []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":` + strings.Repeat(`{"arrayValue":{"values":[`, n) +
		`{"stringValue":"x"}` + strings.Repeat(`]}}`, n) + `}]}]}]}`)
	c := &consumertest.Recorder{}
	url := serveHTTP(t, c, 32<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, body := post(t, url+"/v1/logs", otlp.ContentTypeJSON, "", deep)
	runtime.ReadMemStats(&after)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":3`) {
		t.Fatalf("deep JSON: %d %s", resp.StatusCode, body)
	}
	// Reading the 14 MB body takes about three times its size (the buffer grows
	// as it is read); decoding it took thirty times.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MB request nested %d deep answered 400 after %d MB of allocations", len(deep)>>20, n, alloc>>20)
	if alloc > 5*uint64(len(deep)) {
		t.Fatalf("refusing deep JSON allocated %d MB for a %d MB body", alloc>>20, len(deep)>>20)
	}
	if len(c.Got) != 0 {
		t.Fatal("the consumer got a refused request")
	}
}

func TestEveryHTTPErrorCarriesACode(t *testing.T) {
	// A google.rpc.Status without a code reads as OK (0) to a sender that looks
	// only at the body.
	pb, _ := consumertest.LogsRequest(50).MarshalProto()
	url := serveHTTP(t, &consumertest.Recorder{}, 0)
	small := serveHTTP(t, &consumertest.Recorder{}, 200)
	full := serveHTTP(t, &consumertest.Recorder{Err: consumer.Full("queue full", time.Second)}, 0)
	locked := serveHTTP(t, &consumertest.Gatekeeper{Want: "Bearer pdt_other"}, 0)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte{0}, 10000))
	zw.Close()
	for _, tc := range []struct {
		name, method, url, ct, enc string
		body                       []byte
		status                     int
	}{
		{"too large", "POST", small, otlp.ContentTypeProto, "", pb, http.StatusRequestEntityTooLarge},
		{"too large as JSON", "POST", small, otlp.ContentTypeJSON, "", pb, http.StatusRequestEntityTooLarge},
		{"inflates too large", "POST", small, otlp.ContentTypeProto, "gzip", gz.Bytes(), http.StatusRequestEntityTooLarge},
		{"content type", "POST", url, "text/plain", "", pb, http.StatusUnsupportedMediaType},
		{"content encoding", "POST", url, otlp.ContentTypeProto, "br", pb, http.StatusUnsupportedMediaType},
		{"method", "PUT", url, otlp.ContentTypeJSON, "", pb, http.StatusMethodNotAllowed},
		{"malformed", "POST", url, otlp.ContentTypeJSON, "", []byte("{"), http.StatusBadRequest},
		{"bad gzip", "POST", url, otlp.ContentTypeProto, "gzip", []byte("x"), http.StatusBadRequest},
		{"unauthorized", "POST", locked, otlp.ContentTypeProto, "", pb, http.StatusUnauthorized},
		{"full", "POST", full, otlp.ContentTypeProto, "", pb, http.StatusTooManyRequests},
	} {
		req, _ := http.NewRequest(tc.method, tc.url+"/v1/logs", bytes.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ct)
		req.Header.Set("Authorization", "Bearer pdt_x")
		if tc.enc != "" {
			req.Header.Set("Content-Encoding", tc.enc)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
			continue
		}
		st, err := errorStatus(resp.Header.Get("Content-Type"), body)
		if err != nil || st.Code == 0 || st.Message == "" {
			t.Errorf("%s: %d answered with status %v (%v), want a non-zero code and a message", tc.name, tc.status, st, err)
		}
	}
}
