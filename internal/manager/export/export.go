// Package export delivers the manager's telemetry batches to downstream destinations:
// an OTLP/HTTP or OTLP/gRPC endpoint, an S3 bucket, or a local file.
//
// An Exporter makes exactly one delivery attempt per Export call. Queueing and retries
// belong to the caller, which tells failures apart with retry.IsPermanent (drop the
// batch) and retry.RetryAfter (wait at least this long before trying again); any
// other error is worth retrying.
//
// # S3 object layout
//
// The s3 exporter writes one object per batch, keyed by the time the manager received
// the batch (in UTC) and the deployment that sent it:
//
//	<prefix>/<signal>/<YYYY>/<MM>/<DD>/<HH>/<deployment-id>/<unixnano>-<random>.<ext>
//
// <prefix> and its slash are left out when no prefix is configured; <signal> is
// traces, metrics or logs; <unixnano> is the receive time in nanoseconds since the
// Unix epoch, so keys of one deployment and hour sort by arrival; <random> is 8
// lowercase hex digits that keep batches received in the same nanosecond apart.
// <ext> is "json" for OTLP-JSON (format otlp_json, the default) or "pb" for the
// OTLP protobuf encoding (format otlp_proto), followed by ".gz" when the object is
// gzip-compressed (compression gzip, the default). Each object holds one OTLP export
// request, such as ExportLogsServiceRequest, exactly as an OTLP receiver would accept it.
//
// # File format
//
// The file exporter appends one OTLP-JSON export request per line (JSON Lines). A line's
// top-level key, resourceSpans, resourceMetrics or resourceLogs, tells its signal.
// When max_size_mb is set, the file is rotated before it would grow past that size:
// <path> becomes <path>.1, <path>.1 becomes <path>.2 and so on, keeping max_backups
// rotated files and deleting the oldest.
package export

import (
	"context"
	"crypto/tls"
	"fmt"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/retry"
	"github.com/periscope-dev/periscope/internal/tlsconfig"
)

// defaultTimeout bounds one Export call when the configuration sets no timeout.
const defaultTimeout = 30 * time.Second

// Exporter delivers batches to one destination. Its methods are safe for concurrent
// use, so a caller may keep several batches in flight.
type Exporter interface {
	// Name returns the exporter's configured name.
	Name() string
	// Export makes one attempt to deliver b; see retry.IsPermanent and retry.RetryAfter for
	// what a failure means.
	Export(ctx context.Context, b consumer.Batch) error
	// Close releases connections and files; the exporter must not be used afterwards.
	Close(ctx context.Context) error
}

// Config is one entry of the manager's exporters list; the model lives in package
// config so the agent, which shares that package, does not link the exporters.
type Config = config.Exporter

// TLSConfig is an exporter's client TLS settings.
type TLSConfig = config.ExporterTLS

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration = config.Duration

// loadTLS reads the files t names into a client TLS configuration.
func loadTLS(t TLSConfig) (*tls.Config, error) {
	return tlsconfig.Client(config.ClientTLS{CAFile: t.CAFile, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify,
		CertFile: t.CertFile, KeyFile: t.KeyFile})
}

// New validates c and builds its exporter.
func New(c Config) (Exporter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var (
		e   Exporter
		err error
	)
	switch c.Type {
	case "otlphttp":
		e, err = newOTLPHTTP(c)
	case "otlpgrpc":
		e, err = newOTLPGRPC(c)
	case "s3":
		e, err = newS3(c)
	case "file":
		e, err = newFile(c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s exporter %q: %w", c.Type, c.Name, err)
	}
	return e, nil
}

func timeout(c Config) time.Duration {
	if c.Timeout > 0 {
		return time.Duration(c.Timeout)
	}
	return defaultTimeout
}

// request is what the pdata export request types of the three signals share.
type request interface {
	UnmarshalProto([]byte) error
	MarshalProto() ([]byte, error)
	UnmarshalJSON([]byte) error
	MarshalJSON() ([]byte, error)
}

// decodeRequest decodes a batch; a batch that does not decode never will.
func decodeRequest(b consumer.Batch) (request, error) {
	var r request
	switch b.Signal {
	case otlp.Logs:
		r = plogotlp.NewExportRequest()
	case otlp.Traces:
		r = ptraceotlp.NewExportRequest()
	case otlp.Metrics:
		r = pmetricotlp.NewExportRequest()
	default:
		return nil, retry.Permanent(fmt.Errorf("batch: no export request for %v", b.Signal))
	}
	if err := r.UnmarshalProto(b.Data); err != nil {
		return nil, retry.Permanent(fmt.Errorf("decode %s batch: %w", b.Signal, err))
	}
	return r, nil
}

// otlpJSON returns a batch as an OTLP-JSON export request.
func otlpJSON(b consumer.Batch) ([]byte, error) {
	r, err := decodeRequest(b)
	if err != nil {
		return nil, err
	}
	out, err := r.MarshalJSON()
	if err != nil {
		return nil, retry.Permanent(fmt.Errorf("encode %s batch as JSON: %w", b.Signal, err))
	}
	return out, nil
}
