package export

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/retry"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// httpRequest is one request an httpReceiver accepted.
type httpRequest struct {
	Path      string
	Header    http.Header
	WireBytes int // body size as sent, before decompression
	received
}

// httpReceiver is a downstream OTLP/HTTP receiver that decodes with the Collector's
// pdata library and answers as an OTLP receiver does: 400 with a google.rpc.Status
// for a payload it cannot decode.
type httpReceiver struct {
	mu   sync.Mutex
	reqs []httpRequest
}

func (rcv *httpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sig, err := otlp.ParseSignal(path.Base(r.URL.Path))
	if r.Method != http.MethodPost || err != nil {
		http.NotFound(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "unsupported content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	data, err := decompress(r.Header.Get("Content-Encoding"), body)
	if err != nil {
		rejectHTTP(w, err)
		return
	}
	got, err := decodeOTLP(sig, data, false)
	if err != nil {
		rejectHTTP(w, err)
		return
	}
	rcv.mu.Lock()
	rcv.reqs = append(rcv.reqs, httpRequest{Path: r.URL.Path, Header: r.Header.Clone(), WireBytes: len(body), received: got})
	rcv.mu.Unlock()
	// An empty message is a valid Export*ServiceResponse of every signal: full success.
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func rejectHTTP(w http.ResponseWriter, err error) {
	b, _ := proto.Marshal(&spb.Status{Code: 3, Message: err.Error()})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(b)
}

// decompress undoes a Content-Encoding with implementations independent of the
// exporter's where the standard library has one.
func decompress(encoding string, body []byte) ([]byte, error) {
	switch encoding {
	case "":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case "zstd":
		d, err := zstd.NewReader(nil)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d.DecodeAll(body, nil)
	}
	return nil, errors.New("unsupported content encoding " + encoding)
}

func (rcv *httpReceiver) requests() []httpRequest {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([]httpRequest(nil), rcv.reqs...)
}

func newExporter(t *testing.T, c Config) Exporter {
	t.Helper()
	e, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func TestOTLPHTTPExportsEverySignal(t *testing.T) {
	for _, tc := range []struct{ compression, wantEncoding string }{
		{"", "gzip"}, {"gzip", "gzip"}, {"zstd", "zstd"}, {"none", ""},
	} {
		t.Run("compression="+tc.compression, func(t *testing.T) {
			rcv := &httpReceiver{}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			e := newExporter(t, Config{
				Name: "downstream", Type: "otlphttp", Compression: tc.compression,
				// A base URL with a path, as behind a reverse proxy: the signal path goes after it.
				Endpoint: srv.URL + "/otlp/",
				Headers:  map[string]string{"Authorization": "Bearer s3cret", "X-Scope-OrgID": "acme"},
			})
			if e.Name() != "downstream" {
				t.Errorf("Name() = %q", e.Name())
			}

			sent := exportEverySignal(t, e, 50)

			reqs := rcv.requests()
			if len(reqs) != len(sent) {
				t.Fatalf("receiver got %d requests, want %d", len(reqs), len(sent))
			}
			for i, r := range reqs {
				b := sent[i]
				if r.Path != "/otlp"+b.Signal.Path() {
					t.Errorf("path = %q, want %q", r.Path, "/otlp"+b.Signal.Path())
				}
				if w := want(b.Signal, b.DeploymentID, 50); !equalReceived(r.received, w) {
					t.Errorf("receiver decoded %+v\nwant %+v", r.received, w)
				}
				if got := r.Header.Get("Authorization"); got != "Bearer s3cret" {
					t.Errorf("Authorization = %q", got)
				}
				if got := r.Header.Get("X-Scope-OrgID"); got != "acme" {
					t.Errorf("X-Scope-OrgID = %q", got)
				}
				if got := r.Header.Get("Content-Encoding"); got != tc.wantEncoding {
					t.Errorf("Content-Encoding = %q, want %q", got, tc.wantEncoding)
				}
				compressed := r.WireBytes < len(b.Data)
				if compressed != (tc.wantEncoding != "") {
					t.Errorf("sent %d bytes for a %d-byte payload with encoding %q", r.WireBytes, len(b.Data), tc.wantEncoding)
				}
			}
		})
	}
}

func TestOTLPHTTPReceiverRejectionIsPermanent(t *testing.T) {
	srv := httptest.NewServer(&httpReceiver{})
	defer srv.Close()
	e := newExporter(t, Config{Name: "downstream", Type: "otlphttp", Endpoint: srv.URL})

	b := testBatch(t, otlp.Logs, "dep-a", 1)
	b.Data = []byte("not a protobuf message")
	err := e.Export(context.Background(), b)
	if err == nil || !retry.IsPermanent(err) {
		t.Fatalf("Export of an undecodable payload = %v, want a permanent error", err)
	}
	// The receiver's google.rpc.Status message should reach whoever reads the log.
	for _, s := range []string{`otlphttp exporter "downstream"`, "400 Bad Request", "/v1/logs"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if _, ok := retry.RetryAfter(err); ok {
		t.Error("RetryAfter reported a delay for a 400")
	}
}

func TestOTLPHTTPStatusClassification(t *testing.T) {
	retryDate := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		status     int
		header     map[string]string
		body       string
		permanent  bool
		retryAfter time.Duration // 0: none expected
		mentions   string
	}{
		{status: 400, body: "bad payload", permanent: true, mentions: "400 Bad Request: bad payload"},
		{status: 401, permanent: true, mentions: "401 Unauthorized"},
		{status: 404, permanent: true, mentions: "404 Not Found"},
		{status: 413, permanent: true, mentions: "413"},
		{status: 503, header: map[string]string{"Retry-After": "2"}, retryAfter: 2 * time.Second, mentions: "503 Service Unavailable"},
		{status: 429, header: map[string]string{"Retry-After": retryDate}, retryAfter: 30 * time.Second, mentions: "429"},
		{status: 502, mentions: "502 Bad Gateway"},
		{status: 504, mentions: "504"},
		{status: 500, body: "receiver restarting", mentions: "500 Internal Server Error: receiver restarting"},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			e := newExporter(t, Config{Name: "downstream", Type: "otlphttp", Endpoint: srv.URL})

			err := e.Export(context.Background(), testBatch(t, otlp.Traces, "dep-a", 3))
			if err == nil {
				t.Fatal("Export succeeded")
			}
			if retry.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v (err %v)", retry.IsPermanent(err), tc.permanent, err)
			}
			d, ok := retry.RetryAfter(err)
			switch {
			case tc.retryAfter == 0 && ok:
				t.Errorf("RetryAfter = %v, want none", d)
			case tc.retryAfter != 0 && (!ok || d > tc.retryAfter || d < tc.retryAfter-2*time.Second):
				t.Errorf("RetryAfter = %v, %v; want about %v", d, ok, tc.retryAfter)
			}
			if !strings.Contains(err.Error(), tc.mentions) || !strings.Contains(err.Error(), `"downstream"`) {
				t.Errorf("error %q should name the exporter and mention %q", err, tc.mentions)
			}
		})
	}
}

func TestOTLPHTTPUnreachableIsRetryable(t *testing.T) {
	e := newExporter(t, Config{Name: "downstream", Type: "otlphttp", Endpoint: "http://" + closedAddr(t)})
	err := e.Export(context.Background(), testBatch(t, otlp.Metrics, "dep-a", 1))
	if err == nil || retry.IsPermanent(err) {
		t.Fatalf("Export to a closed port = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q should say the connection was refused", err)
	}
}

func TestOTLPHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	e := newExporter(t, Config{Name: "slow", Type: "otlphttp", Endpoint: srv.URL, Timeout: Duration(100 * time.Millisecond)})

	start := time.Now()
	err := e.Export(context.Background(), testBatch(t, otlp.Logs, "dep-a", 1))
	if err == nil || retry.IsPermanent(err) {
		t.Fatalf("Export to a hung receiver = %v, want a retryable error", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Export took %v despite a 100ms timeout", elapsed)
	}
}

func TestOTLPHTTPTLS(t *testing.T) {
	pki := newTestPKI(t)
	rcv := &httpReceiver{}
	srv := httptest.NewUnstartedServer(rcv)
	// Require a client certificate too, so the test also proves cert_file/key_file are sent.
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{pki.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	}
	srv.StartTLS()
	defer srv.Close()

	e := newExporter(t, Config{Name: "secure", Type: "otlphttp", Endpoint: srv.URL,
		TLS: TLSConfig{CAFile: pki.certFile, CertFile: pki.certFile, KeyFile: pki.keyFile}})
	if err := e.Export(context.Background(), testBatch(t, otlp.Logs, "dep-a", 2)); err != nil {
		t.Fatalf("Export over TLS = %v", err)
	}
	if got := rcv.requests(); len(got) != 1 || !equalReceived(got[0].received, want(otlp.Logs, "dep-a", 2)) {
		t.Errorf("receiver got %+v", got)
	}

	untrusting := newExporter(t, Config{Name: "untrusting", Type: "otlphttp", Endpoint: srv.URL})
	err := untrusting.Export(context.Background(), testBatch(t, otlp.Logs, "dep-a", 2))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Export without the CA = %v, want a certificate error", err)
	}

	if _, err := New(Config{Name: "x", Type: "otlphttp", Endpoint: srv.URL, TLS: TLSConfig{CAFile: pki.keyFile}}); err == nil ||
		!strings.Contains(err.Error(), `otlphttp exporter "x": tls: ca_file`) {
		t.Errorf("New with a key as ca_file = %v, want a ca_file error", err)
	}
}

// testPKI is a self-signed certificate for 127.0.0.1 and localhost, usable by servers
// and clients, written to files as the exporters' configuration names them.
type testPKI struct {
	cert              tls.Certificate
	pool              *x509.CertPool
	certFile, keyFile string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "periscope test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	p := testPKI{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), pool: x509.NewCertPool()}
	if err := os.WriteFile(p.certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	p.pool.AppendCertsFromPEM(certPEM)
	return p
}

// closedAddr returns a local address nothing listens on.
func closedAddr(t *testing.T) string { return testenv.ClosedAddr(t) }
