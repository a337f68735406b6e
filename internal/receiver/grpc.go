package receiver

import (
	"context"
	"fmt"
	"runtime"
	"strings"

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
// added after Periscope's own.
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
	for _, sig := range telemetry.Signals {
		srv.RegisterService(serviceDesc(sig, lim), c)
	}
	return srv
}

// serviceDesc describes one OTLP export service with a handler that passes the raw
// message on, so the request is not decoded and re-encoded on its way to the queue.
func serviceDesc(sig telemetry.Signal, lim *Limiter) *grpc.ServiceDesc {
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
		var body []byte
		if err := dec(&body); err != nil {
			return nil, err
		}
		if err := srv.(Consumer).Consume(ctx, Request{Signal: sig, Body: body, Header: header}); err != nil {
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
	// gRPC may reuse data once Unmarshal returns.
	*b = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }
