package export

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip" // registers the gzip compressor with gRPC
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/retry"
)

// otlpGRPC sends batches to an OTLP/gRPC receiver over one shared connection.
type otlpGRPC struct {
	name     string
	timeout  time.Duration
	md       metadata.MD
	callOpts []grpc.CallOption
	conn     *grpc.ClientConn
	traces   ptraceotlp.GRPCClient
	metrics  pmetricotlp.GRPCClient
	logs     plogotlp.GRPCClient
}

func newOTLPGRPC(c Config) (*otlpGRPC, error) {
	creds := insecure.NewCredentials()
	if !c.TLS.Insecure {
		tlsConf, err := loadTLS(c.TLS)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(tlsConf)
	}
	// NewClient does not dial: the connection is made, and remade, by the first RPCs,
	// so an unreachable receiver shows up as a retryable Export error, not here.
	conn, err := grpc.NewClient(c.Endpoint,
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("periscope-manager"))
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", c.Endpoint, err)
	}
	e := &otlpGRPC{
		name:    c.Name,
		timeout: timeout(c),
		md:      metadata.New(c.Headers),
		conn:    conn,
		traces:  ptraceotlp.NewGRPCClient(conn),
		metrics: pmetricotlp.NewGRPCClient(conn),
		logs:    plogotlp.NewGRPCClient(conn),
	}
	if c.Compression == "" || c.Compression == "gzip" {
		e.callOpts = append(e.callOpts, grpc.UseCompressor(gzip.Name))
	}
	return e, nil
}

// Name returns the exporter's configured name.
func (e *otlpGRPC) Name() string { return e.name }

// Export calls the signal's OTLP Export RPC with b.
func (e *otlpGRPC) Export(ctx context.Context, b consumer.Batch) error {
	if err := e.export(ctx, b); err != nil {
		return fmt.Errorf("otlpgrpc exporter %q: %w", e.name, err)
	}
	return nil
}

func (e *otlpGRPC) export(ctx context.Context, b consumer.Batch) error {
	r, err := decodeRequest(b)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if len(e.md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, e.md)
	}
	switch r := r.(type) {
	case ptraceotlp.ExportRequest:
		_, err = e.traces.Export(ctx, r, e.callOpts...)
	case pmetricotlp.ExportRequest:
		_, err = e.metrics.Export(ctx, r, e.callOpts...)
	case plogotlp.ExportRequest:
		_, err = e.logs.Export(ctx, r, e.callOpts...)
	}
	if err != nil {
		return grpcError(err)
	}
	return nil
}

// grpcError classifies an RPC failure by the OTLP specification's table of retryable
// codes. ResourceExhausted is retried only when the server sent RetryInfo, because
// without it the usual cause is a message over the server's size limit.
func grpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	delay, hasDelay := time.Duration(0), false
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			delay, hasDelay = ri.GetRetryDelay().AsDuration(), true
		}
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss:
	case codes.ResourceExhausted:
		if !hasDelay {
			return retry.Permanent(err)
		}
	default:
		return retry.Permanent(err)
	}
	if hasDelay {
		return retry.Throttle(err, delay)
	}
	return err
}

// Close closes the connection.
func (e *otlpGRPC) Close(context.Context) error { return e.conn.Close() }
