package export

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/retry"
)

// grpcRequest is one request a grpcReceiver accepted.
type grpcRequest struct {
	Metadata    metadata.MD
	Compression string // the grpc-encoding the request arrived with
	received
}

// grpcReceiver is a downstream OTLP/gRPC receiver built on the Collector's pdata
// service registrations.
type grpcReceiver struct {
	addr string
	// fail, when set, decides the RPC's outcome instead of accepting the request.
	fail func(ctx context.Context) error

	mu   sync.Mutex
	reqs []grpcRequest
}

func startGRPCReceiver(t *testing.T, fail func(context.Context) error, opts ...grpc.ServerOption) *grpcReceiver {
	t.Helper()
	rcv := &grpcReceiver{fail: fail}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv.addr = l.Addr().String()
	srv := grpc.NewServer(append(opts, grpc.StatsHandler(compressionRecorder{}))...)
	ptraceotlp.RegisterGRPCServer(srv, &tracesServer{rcv: rcv})
	pmetricotlp.RegisterGRPCServer(srv, &metricsServer{rcv: rcv})
	plogotlp.RegisterGRPCServer(srv, &logsServer{rcv: rcv})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return rcv
}

func (rcv *grpcReceiver) accept(ctx context.Context, sig otlp.Signal, req interface{ MarshalProto() ([]byte, error) }) error {
	if rcv.fail != nil {
		return rcv.fail(ctx)
	}
	data, err := req.MarshalProto()
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	got, err := decodeOTLP(sig, data, false)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	r := grpcRequest{Metadata: md, received: got}
	if c, ok := ctx.Value(compressionKey{}).(*string); ok {
		r.Compression = *c
	}
	rcv.mu.Lock()
	rcv.reqs = append(rcv.reqs, r)
	rcv.mu.Unlock()
	return nil
}

func (rcv *grpcReceiver) requests() []grpcRequest {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([]grpcRequest(nil), rcv.reqs...)
}

type tracesServer struct {
	ptraceotlp.UnimplementedGRPCServer
	rcv *grpcReceiver
}

func (s *tracesServer) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	return ptraceotlp.NewExportResponse(), s.rcv.accept(ctx, otlp.Traces, req)
}

type metricsServer struct {
	pmetricotlp.UnimplementedGRPCServer
	rcv *grpcReceiver
}

func (s *metricsServer) Export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	return pmetricotlp.NewExportResponse(), s.rcv.accept(ctx, otlp.Metrics, req)
}

type logsServer struct {
	plogotlp.UnimplementedGRPCServer
	rcv *grpcReceiver
}

func (s *logsServer) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	return plogotlp.NewExportResponse(), s.rcv.accept(ctx, otlp.Logs, req)
}

// compressionRecorder notes each RPC's incoming grpc-encoding where the handler can
// read it, since gRPC hides that header from the handler's metadata.
type compressionRecorder struct{}

type compressionKey struct{}

func (compressionRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, compressionKey{}, new(string))
}

func (compressionRecorder) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		if c, ok := ctx.Value(compressionKey{}).(*string); ok {
			*c = h.Compression
		}
	}
}

func (compressionRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (compressionRecorder) HandleConn(context.Context, stats.ConnStats) {}

func TestOTLPGRPCExportsEverySignal(t *testing.T) {
	for _, tc := range []struct{ compression, wantEncoding string }{
		{"", "gzip"}, {"gzip", "gzip"}, {"none", ""},
	} {
		t.Run("compression="+tc.compression, func(t *testing.T) {
			rcv := startGRPCReceiver(t, nil)
			e := newExporter(t, Config{
				Name: "downstream", Type: "otlpgrpc", Endpoint: rcv.addr, Compression: tc.compression,
				TLS:     TLSConfig{Insecure: true},
				Headers: map[string]string{"Authorization": "Bearer s3cret", "X-Scope-OrgID": "acme"},
			})

			sent := exportEverySignal(t, e, 50)

			reqs := rcv.requests()
			if len(reqs) != len(sent) {
				t.Fatalf("receiver got %d requests, want %d", len(reqs), len(sent))
			}
			for i, r := range reqs {
				b := sent[i]
				if w := want(b.Signal, b.DeploymentID, 50); !equalReceived(r.received, w) {
					t.Errorf("receiver decoded %+v\nwant %+v", r.received, w)
				}
				// gRPC metadata keys are lower case on the wire.
				if got := r.Metadata.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cret" {
					t.Errorf("authorization metadata = %q", got)
				}
				if got := r.Metadata.Get("x-scope-orgid"); len(got) != 1 || got[0] != "acme" {
					t.Errorf("x-scope-orgid metadata = %q", got)
				}
				if r.Compression != tc.wantEncoding {
					t.Errorf("grpc-encoding = %q, want %q", r.Compression, tc.wantEncoding)
				}
			}
		})
	}
}

func TestOTLPGRPCStatusClassification(t *testing.T) {
	withRetryInfo := func(c codes.Code, d time.Duration) error {
		st, err := status.New(c, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tc := range []struct {
		name       string
		err        error
		permanent  bool
		retryAfter time.Duration // 0: none expected
	}{
		{"InvalidArgument", status.Error(codes.InvalidArgument, "bad"), true, 0},
		{"Unauthenticated", status.Error(codes.Unauthenticated, "who"), true, 0},
		{"PermissionDenied", status.Error(codes.PermissionDenied, "no"), true, 0},
		{"Unimplemented", status.Error(codes.Unimplemented, "no logs here"), true, 0},
		{"ResourceExhausted without RetryInfo", status.Error(codes.ResourceExhausted, "message too large"), true, 0},
		{"ResourceExhausted with RetryInfo", withRetryInfo(codes.ResourceExhausted, 3*time.Second), false, 3 * time.Second},
		{"Unavailable", status.Error(codes.Unavailable, "restarting"), false, 0},
		{"Unavailable with RetryInfo", withRetryInfo(codes.Unavailable, 2*time.Second), false, 2 * time.Second},
		{"Aborted", status.Error(codes.Aborted, "conflict"), false, 0},
		{"OutOfRange", status.Error(codes.OutOfRange, "range"), false, 0},
		{"DataLoss", status.Error(codes.DataLoss, "lost"), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := startGRPCReceiver(t, func(context.Context) error { return tc.err })
			e := newExporter(t, Config{Name: "downstream", Type: "otlpgrpc", Endpoint: rcv.addr, TLS: TLSConfig{Insecure: true}})
			err := e.Export(context.Background(), testBatch(t, otlp.Logs, "dep-a", 1))
			if err == nil {
				t.Fatal("Export succeeded")
			}
			if retry.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v (err %v)", retry.IsPermanent(err), tc.permanent, err)
			}
			if d, ok := retry.RetryAfter(err); d != tc.retryAfter || ok != (tc.retryAfter != 0) {
				t.Errorf("RetryAfter = %v, %v; want %v", d, ok, tc.retryAfter)
			}
			if want := status.Code(tc.err).String(); !strings.Contains(err.Error(), `otlpgrpc exporter "downstream"`) || !strings.Contains(err.Error(), want) {
				t.Errorf("error %q should name the exporter and the code %s", err, want)
			}
		})
	}
}

func TestOTLPGRPCUnreachableIsRetryable(t *testing.T) {
	e := newExporter(t, Config{Name: "downstream", Type: "otlpgrpc", Endpoint: closedAddr(t), TLS: TLSConfig{Insecure: true}})
	err := e.Export(context.Background(), testBatch(t, otlp.Traces, "dep-a", 1))
	if err == nil || retry.IsPermanent(err) {
		t.Fatalf("Export to a closed port = %v, want a retryable error", err)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("code = %s, want Unavailable (err %v)", status.Code(err), err)
	}
}

func TestOTLPGRPCTimeoutIsRetryable(t *testing.T) {
	rcv := startGRPCReceiver(t, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	e := newExporter(t, Config{Name: "slow", Type: "otlpgrpc", Endpoint: rcv.addr, TLS: TLSConfig{Insecure: true},
		Timeout: Duration(100 * time.Millisecond)})
	err := e.Export(context.Background(), testBatch(t, otlp.Metrics, "dep-a", 1))
	if err == nil || retry.IsPermanent(err) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Export to a hung receiver = %v, want a retryable DeadlineExceeded", err)
	}
}

func TestOTLPGRPCUndecodableBatchIsPermanent(t *testing.T) {
	rcv := startGRPCReceiver(t, nil)
	e := newExporter(t, Config{Name: "downstream", Type: "otlpgrpc", Endpoint: rcv.addr, TLS: TLSConfig{Insecure: true}})
	b := testBatch(t, otlp.Logs, "dep-a", 1)
	b.Data = []byte{0xff, 0xff, 0xff}
	if err := e.Export(context.Background(), b); err == nil || !retry.IsPermanent(err) {
		t.Fatalf("Export of garbage = %v, want a permanent error", err)
	}
	if n := len(rcv.requests()); n != 0 {
		t.Errorf("receiver got %d requests for a batch that cannot be decoded", n)
	}
}

func TestOTLPGRPCTLS(t *testing.T) {
	pki := newTestPKI(t)
	rcv := startGRPCReceiver(t, nil, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	})))

	e := newExporter(t, Config{Name: "secure", Type: "otlpgrpc", Endpoint: rcv.addr,
		TLS: TLSConfig{CAFile: pki.certFile, CertFile: pki.certFile, KeyFile: pki.keyFile}})
	if err := e.Export(context.Background(), testBatch(t, otlp.Traces, "dep-a", 2)); err != nil {
		t.Fatalf("Export over TLS = %v", err)
	}
	if got := rcv.requests(); len(got) != 1 || !equalReceived(got[0].received, want(otlp.Traces, "dep-a", 2)) {
		t.Errorf("receiver got %+v", got)
	}

	untrusting := newExporter(t, Config{Name: "untrusting", Type: "otlpgrpc", Endpoint: rcv.addr})
	if err := untrusting.Export(context.Background(), testBatch(t, otlp.Traces, "dep-a", 2)); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("Export without the CA = %v, want a certificate error", err)
	}
	plaintext := newExporter(t, Config{Name: "plaintext", Type: "otlpgrpc", Endpoint: rcv.addr, TLS: TLSConfig{Insecure: true}})
	if err := plaintext.Export(context.Background(), testBatch(t, otlp.Traces, "dep-a", 2)); err == nil {
		t.Error("plaintext Export to a TLS receiver succeeded")
	}
}
