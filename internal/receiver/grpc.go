package receiver

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // senders may compress with gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/periscope-dev/periscope/internal/telemetry"
)

// NewGRPCServer returns a gRPC server offering the OTLP logs, trace and metrics export
// services, handing each request to c. maxBytes bounds a message (zero means
// DefaultMaxBytes); lim, when not nil, bounds requests in progress; extra options are
// added after Periscope's own. Request bodies are reused once Consume returns (see
// Request.Body).
func NewGRPCServer(c Consumer, maxBytes int, lim *Limiter, opts ...grpc.ServerOption) *grpc.Server {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{
		grpc.ForceServerCodec(rawCodec{}),
		grpc.MaxRecvMsgSize(maxBytes),
		// A fixed pool of stream workers instead of a goroutine per request.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}, opts...)...)
	bodies := &bodyPool{}
	for _, sig := range telemetry.Signals {
		srv.RegisterService(serviceDesc(sig, lim, bodies), c)
	}
	return srv
}

// bodyPool keeps request buffers between requests. gRPC hands a message over in a
// buffer it reuses, so each request is copied out; without the pool every copy was a
// new allocation of the request's size, zeroed, and garbage once consumed.
type bodyPool struct{ p sync.Pool }

// maxPooledBody bounds the buffers kept, so one huge request does not pin its memory.
const maxPooledBody = 1 << 20

func (b *bodyPool) get() *[]byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return v
	}
	return new([]byte)
}

func (b *bodyPool) put(buf *[]byte) {
	if cap(*buf) <= maxPooledBody {
		*buf = (*buf)[:0]
		b.p.Put(buf)
	}
}

// serviceDesc describes one OTLP export service with a handler that passes the raw
// message on, so the request is not decoded and re-encoded on its way to the queue.
func serviceDesc(sig telemetry.Signal, lim *Limiter, bodies *bodyPool) *grpc.ServiceDesc {
	var name string
	switch sig {
	case telemetry.Logs:
		name = "opentelemetry.proto.collector.logs.v1.LogsService"
	case telemetry.Traces:
		name = "opentelemetry.proto.collector.trace.v1.TraceService"
	case telemetry.Metrics:
		name = "opentelemetry.proto.collector.metrics.v1.MetricsService"
	}
	handler := func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		header := func(key string) string {
			if v := md.Get(strings.ToLower(key)); len(v) > 0 {
				return v[0]
			}
			return ""
		}
		if a, ok := srv.(Authorizer); ok {
			var err error
			if ctx, err = a.Authorize(ctx, header); err != nil {
				return nil, grpcError(asError(err))
			}
		}
		if !lim.acquire() {
			return nil, grpcError(errBusy)
		}
		defer lim.release()
		body := bodies.get()
		defer bodies.put(body)
		if err := dec(body); err != nil {
			return nil, err
		}
		if err := srv.(Consumer).Consume(ctx, Request{Signal: sig, Body: *body, Header: header}); err != nil {
			return nil, grpcError(asError(err))
		}
		empty := []byte{} // an empty Export*ServiceResponse: full success
		return &empty, nil
	}
	return &grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*Consumer)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: handler}},
		Metadata:    "periscope/receiver",
	}
}

func grpcError(e *Error) error {
	st := status.New(e.Code, e.Message)
	if e.RetryAfter > 0 {
		// OTLP senders retry RESOURCE_EXHAUSTED only when RetryInfo says when.
		if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// rawCodec moves messages as bytes. Requests are checked by the consumer (the Tagger
// validates their structure), and responses are pre-encoded.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *[]byte:
		return *m, nil
	case interface{ MarshalProto() ([]byte, error) }:
		return m.MarshalProto()
	}
	// Status details and other protobuf messages the gRPC runtime itself sends.
	return nil, fmt.Errorf("raw codec cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec cannot unmarshal into %T", v)
	}
	// gRPC may reuse data once Unmarshal returns; *b is a pooled buffer to copy into.
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
