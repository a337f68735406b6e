package export

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/retry"
)

// maxErrorBody caps how much of a rejection's body is read into the error message.
const maxErrorBody = 64 << 10

// otlpHTTP posts batches to an OTLP/HTTP receiver, as the Collector's otlphttp exporter does.
type otlpHTTP struct {
	name        string
	endpoint    string // base URL without a trailing slash
	headers     map[string]string
	compression string // gzip, zstd or none
	timeout     time.Duration
	client      *http.Client
	gzipPool    sync.Pool // *gzip.Writer; the writers' buffers are worth reusing per batch
	zstd        *zstd.Encoder
}

func newOTLPHTTP(c Config) (*otlpHTTP, error) {
	tlsConf, err := loadTLS(c.TLS)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConf
	// Callers export several batches at once to the same receiver; Go's default of two
	// idle connections per host would close and redial most of them.
	transport.MaxIdleConns = 100
	transport.MaxIdleConnsPerHost = 32
	transport.IdleConnTimeout = 90 * time.Second

	e := &otlpHTTP{
		name:        c.Name,
		endpoint:    strings.TrimRight(c.Endpoint, "/"),
		headers:     c.Headers,
		compression: c.Compression,
		timeout:     timeout(c),
		client:      &http.Client{Transport: transport},
	}
	if e.compression == "" {
		e.compression = "gzip"
	}
	if e.compression == "zstd" {
		if e.zstd, err = zstd.NewWriter(nil); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
	}
	return e, nil
}

// Name returns the exporter's configured name.
func (e *otlpHTTP) Name() string { return e.name }

// Export posts b to <endpoint>/v1/<signal>.
func (e *otlpHTTP) Export(ctx context.Context, b consumer.Batch) error {
	if err := e.export(ctx, b); err != nil {
		return fmt.Errorf("otlphttp exporter %q: %w", e.name, err)
	}
	return nil
}

func (e *otlpHTTP) export(ctx context.Context, b consumer.Batch) error {
	switch b.Signal {
	case otlp.Traces, otlp.Metrics, otlp.Logs:
	default:
		return retry.Permanent(fmt.Errorf("batch has unknown signal %s", b.Signal))
	}
	body, err := e.compress(b.Data)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	url := e.endpoint + b.Signal.Path()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return retry.Permanent(err)
	}
	for k, v := range e.headers {
		req.Header.Set(k, v)
	}
	// Set after the custom headers so a stray entry cannot misdescribe the body.
	req.Header.Set("Content-Type", "application/x-protobuf")
	if e.compression != "none" {
		req.Header.Set("Content-Encoding", e.compression)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "periscope-manager")
	}

	resp, err := e.client.Do(req)
	if err != nil {
		return err // the receiver was unreachable or too slow: worth another attempt
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain so the connection goes back to the pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	return httpStatusError(resp, url)
}

// httpStatusError classifies a rejection: 4xx other than 429 are permanent, while 429
// and every 5xx are retried, honouring Retry-After. The OTLP specification retries only
// 502, 503 and 504 among the 5xx, but a 500 from a restarting receiver is usually
// transient, and dropping the batch on it would lose data the caller could still deliver.
func httpStatusError(resp *http.Response, url string) error {
	err := fmt.Errorf("POST %s: %s%s", url, resp.Status, rejectionMessage(resp))
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests || code >= 500 && code < 600:
		return retry.ThrottleHeader(err, resp.Header, time.Now())
	default:
		return retry.Permanent(err)
	}
}

// rejectionMessage returns ": <reason>" from a rejection's body, which OTLP receivers
// send as a protobuf google.rpc.Status and proxies usually as text.
func rejectionMessage(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var msg string
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-protobuf") {
		var st spb.Status
		if proto.Unmarshal(body, &st) == nil {
			msg = st.GetMessage()
		}
	} else {
		msg = strings.TrimSpace(string(body))
	}
	const maxLen = 256
	if len(msg) > maxLen {
		msg = strings.ToValidUTF8(msg[:maxLen], "") + "…"
	}
	if msg == "" {
		return ""
	}
	return ": " + msg
}

func (e *otlpHTTP) compress(data []byte) ([]byte, error) {
	switch e.compression {
	case "zstd":
		return e.zstd.EncodeAll(data, make([]byte, 0, len(data)/2)), nil
	case "gzip":
		var buf bytes.Buffer
		buf.Grow(len(data) / 2)
		zw, _ := e.gzipPool.Get().(*gzip.Writer)
		if zw == nil {
			zw = gzip.NewWriter(&buf)
		} else {
			zw.Reset(&buf)
		}
		defer e.gzipPool.Put(zw)
		if _, err := zw.Write(data); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return buf.Bytes(), nil
	}
	return data, nil
}

// Close drops idle connections.
func (e *otlpHTTP) Close(context.Context) error {
	e.client.CloseIdleConnections()
	if e.zstd != nil {
		return e.zstd.Close()
	}
	return nil
}
