package grpcserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/consumer/consumertest"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
)

// startGRPC serves c on a free port and returns the server and its address.
func startGRPC(t testing.TB, c consumer.Consumer, maxBytes int, lim *receiver.Limiter) (*Server, string) {
	t.Helper()
	srv := New(c, Settings{MaxBytes: maxBytes, Limiter: lim})
	return srv, serveOnFreePort(t, srv)
}

// serveOnFreePort serves srv until the test ends and returns its address.
func serveOnFreePort(t testing.TB, srv *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		// An ended context closes what a test left open, as a deadline would.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve returned %v after Shutdown, want nil", err)
		}
	})
	return lis.Addr().String()
}

// dialGRPC connects a grpc-go client, the library the OpenTelemetry SDK and the
// Collector export with.
func dialGRPC(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// countingConsumer counts the log records of every request it takes.
type countingConsumer struct {
	mu      sync.Mutex
	records []int
}

func (c *countingConsumer) Consume(_ context.Context, r consumer.Request) error {
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(r.Body); err != nil {
		return consumer.Malformed("%v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, req.Logs().LogRecordCount())
	return nil
}

func (c *countingConsumer) seen() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.records...)
}

// bigLogsRequest is a request of about size bytes, far beyond one HTTP/2 window.
func bigLogsRequest(t testing.TB, size int) (plogotlp.ExportRequest, int) {
	t.Helper()
	l := plog.NewLogs()
	sl := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	body := strings.Repeat("stack frame ", 90)
	n := size / (len(body) + 10)
	for range n {
		sl.LogRecords().AppendEmpty().Body().SetStr(body)
	}
	return plogotlp.NewExportRequestFromLogs(l), n
}

func TestGRPCLargeRequestsArriveWhole(t *testing.T) {
	c := &countingConsumer{}
	_, addr := startGRPC(t, c, 0, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr))
	// 6 MiB needs window updates on both the stream and the connection.
	req, n := bigLogsRequest(t, 6<<20)
	if _, err := client.Export(context.Background(), req); err != nil {
		t.Fatalf("export of %d records: %v", n, err)
	}
	if got := c.seen(); len(got) != 1 || got[0] != n {
		t.Errorf("consumer saw %v, want one request of %d records", got, n)
	}
}

func TestGRPCGzipRequests(t *testing.T) {
	c := &countingConsumer{}
	_, addr := startGRPC(t, c, 0, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name))))
	for _, n := range []int{1, 500} {
		if _, err := client.Export(context.Background(), consumertest.LogsRequest(n)); err != nil {
			t.Fatalf("gzip export of %d records: %v", n, err)
		}
	}
	if got := c.seen(); len(got) != 2 || got[0] != 1 || got[1] != 500 {
		t.Errorf("consumer saw %v, want [1 500]", got)
	}
}

// A gzip bomb is refused by its decompressed size, not read into memory.
func TestGRPCDecompressedSizeIsBounded(t *testing.T) {
	c := &countingConsumer{}
	_, addr := startGRPC(t, c, 64<<10, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name))))
	l := plog.NewLogs()
	l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr(strings.Repeat("a", 1<<20))
	_, err := client.Export(context.Background(), plogotlp.NewExportRequestFromLogs(l))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("1 MiB decompressed from a few KiB with a 64 KiB limit: %v, want ResourceExhausted", err)
	}
	if got := c.seen(); len(got) != 0 {
		t.Errorf("consumer saw %v", got)
	}
}

func TestGRPCOversizedMessageLeavesTheConnectionUsable(t *testing.T) {
	c := &countingConsumer{}
	_, addr := startGRPC(t, c, 8<<10, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr))
	big, _ := bigLogsRequest(t, 64<<10)
	_, err := client.Export(context.Background(), big)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than the limit") {
		t.Errorf("64 KiB message with an 8 KiB limit: %v, want ResourceExhausted naming the limit", err)
	}
	if _, err := client.Export(context.Background(), consumertest.LogsRequest(3)); err != nil {
		t.Fatalf("small request after the refused one: %v", err)
	}
	if got := c.seen(); len(got) != 1 || got[0] != 3 {
		t.Errorf("consumer saw %v, want [3]", got)
	}
}

func TestGRPCUnknownMethodsAndEncodings(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	conn := dialGRPC(t, addr)
	err := conn.Invoke(context.Background(), "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export", &emptypb.Empty{}, &emptypb.Empty{})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "ProfilesService") {
		t.Errorf("unknown method: %v, want Unimplemented naming it", err)
	}
	encoding.RegisterCompressor(brotliish{})
	_, err = plogotlp.NewGRPCClient(conn).Export(context.Background(), consumertest.LogsRequest(1), grpc.UseCompressor(brotliish{}.Name()))
	if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), "grpc-encoding") {
		t.Errorf("unsupported compressor: %v, want Unimplemented naming grpc-encoding", err)
	}
}

// brotliish is a compressor the server does not know (it does not compress at all).
type brotliish struct{}

func (brotliish) Compress(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil }
func (brotliish) Decompress(r io.Reader) (io.Reader, error)    { return r, nil }
func (brotliish) Name() string                                 { return "periscope-test-unknown" }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// rendezvous holds every request until want requests are in progress at once.
type rendezvous struct {
	want    int32
	in      atomic.Int32
	release chan struct{}
	once    sync.Once
}

func (r *rendezvous) Consume(context.Context, consumer.Request) error {
	if r.in.Add(1) == r.want {
		r.once.Do(func() { close(r.release) })
	}
	select {
	case <-r.release:
		return nil
	case <-time.After(10 * time.Second):
		return consumer.Unavailable("requests were handled one at a time", 0)
	}
}

// Requests on one connection are consumed side by side: a consumer waiting on its
// disk does not hold up the requests behind it.
func TestGRPCConsumesStreamsOfOneConnectionConcurrently(t *testing.T) {
	const n = 20
	c := &rendezvous{want: n, release: make(chan struct{})}
	_, addr := startGRPC(t, c, 0, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr))
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := client.Export(context.Background(), consumertest.LogsRequest(2))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// deadlineSeer records the deadline its requests carry.
type deadlineSeer struct{ deadline chan time.Time }

func (d *deadlineSeer) Consume(ctx context.Context, _ consumer.Request) error {
	dl, _ := ctx.Deadline()
	d.deadline <- dl
	return nil
}

func TestGRPCTimeoutBecomesTheConsumersDeadline(t *testing.T) {
	c := &deadlineSeer{deadline: make(chan time.Time, 1)}
	_, addr := startGRPC(t, c, 0, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	if _, err := client.Export(ctx, consumertest.LogsRequest(1)); err != nil {
		t.Fatal(err)
	}
	if got := <-c.deadline; got.IsZero() || got.Sub(want).Abs() > time.Second {
		t.Errorf("consumer's deadline %v, want about %v", got, want)
	}
}

func TestGRPCAuthorizeSeesMetadata(t *testing.T) {
	gk := &consumertest.Gatekeeper{Want: "Bearer pdt_ok"}
	_, addr := startGRPC(t, gk, 0, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr))
	if _, err := client.Export(context.Background(), consumertest.LogsRequest(1)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer pdt_ok")
	if _, err := client.Export(ctx, consumertest.LogsRequest(1)); err != nil {
		t.Fatalf("with token: %v", err)
	}
	if len(gk.Got) != 1 || gk.Auth[0] != "Bearer pdt_ok" {
		t.Errorf("consumer saw %d requests with %q", len(gk.Got), gk.Auth)
	}
}

func TestGRPCShutdownAnswersRequestsInProgress(t *testing.T) {
	c := consumertest.NewBlocker()
	srv, addr := startGRPC(t, c, 0, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr))
	first := make(chan error, 1)
	go func() {
		_, err := client.Export(context.Background(), consumertest.LogsRequest(1))
		first <- err
	}()
	<-c.Started // the request is now being consumed
	stopped := make(chan struct{})
	go func() { srv.Shutdown(context.Background()); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Shutdown returned while a request was in progress")
	case <-time.After(200 * time.Millisecond):
	}
	close(c.Release)
	if err := <-first; err != nil {
		t.Errorf("request in progress during Shutdown: %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return once the request was answered")
	}
	if _, err := client.Export(context.Background(), consumertest.LogsRequest(1)); status.Code(err) != codes.Unavailable {
		t.Errorf("request after stop: %v, want Unavailable", err)
	}
}

func TestGRPCPortAnswersHTTP1WithAHint(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, _ := io.ReadAll(conn)
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 400")) || !bytes.Contains(resp, []byte("OTLP/HTTP port")) {
		t.Errorf("HTTP/1 request answered %q", resp)
	}
}

// rawClient speaks HTTP/2 frame by frame, for what grpc-go clients never do on purpose.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawClient {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawClient{t: t, conn: conn, bw: bufio.NewWriter(conn)}
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(c.bw, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	io.WriteString(c.bw, http2.ClientPreface)
	c.fr.WriteSettings()
	c.bw.Flush()
	return c
}

// open sends the request headers of an export on stream id.
func (c *rawClient) open(id uint32) {
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"},
		{":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		c.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
}

// message frames a request as one gRPC message.
func message(t *testing.T, n int) []byte {
	pb, err := consumertest.LogsRequest(n).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{0, byte(len(pb) >> 24), byte(len(pb) >> 16), byte(len(pb) >> 8), byte(len(pb))}, pb...)
}

// statusOf reads frames until stream id ends and returns its grpc-status.
func (c *rawClient) statusOf(id uint32) string {
	c.bw.Flush()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				for _, hf := range f.Fields {
					if hf.Name == "grpc-status" {
						return hf.Value
					}
				}
				return "(none)"
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("GOAWAY %v waiting for stream %d", f.ErrCode, id)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
				c.bw.Flush()
			}
		}
	}
}

// A stream the client resets halfway gives up its slot: the next request on the
// connection is taken, and the half-sent one never reaches the consumer.
func TestGRPCResetStreamFreesItsSlot(t *testing.T) {
	c := &countingConsumer{}
	_, addr := startGRPC(t, c, 0, receiver.NewLimiter(1))
	rc := dialRaw(t, addr)
	msg := message(t, 4)
	rc.open(1)
	rc.fr.WriteData(1, false, msg[:len(msg)/2])
	rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	rc.open(3)
	rc.fr.WriteData(3, false, msg[:10])
	rc.fr.WriteData(3, true, msg[10:])
	if got := rc.statusOf(3); got != "0" {
		t.Errorf("request after a reset one: grpc-status %s, want 0", got)
	}
	if got := c.seen(); len(got) != 1 || got[0] != 4 {
		t.Errorf("consumer saw %v, want [4]", got)
	}
}

// Data on a stream that was never opened ends the connection with PROTOCOL_ERROR.
func TestGRPCProtocolErrorsEndTheConnection(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	rc := dialRaw(t, addr)
	rc.fr.WriteData(5, true, message(t, 1))
	rc.bw.Flush()
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("GOAWAY %v, want PROTOCOL_ERROR", g.ErrCode)
			}
			break
		}
	}
	if _, err := rc.fr.ReadFrame(); !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("after GOAWAY: %v, want the connection closed", err)
	}
}

// Every PING gets its ACK: with the next answer when one is due, or on its own
// shortly after when the connection is otherwise quiet.
func TestGRPCPingsAreAnswered(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	rc := dialRaw(t, addr)
	waitAck := func(data [8]byte) {
		t.Helper()
		rc.bw.Flush()
		for {
			f, err := rc.fr.ReadFrame()
			if err != nil {
				t.Fatalf("waiting for the ACK of PING %q: %v", data, err)
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == data {
				return
			}
		}
	}
	quiet := [8]byte{'q', 'u', 'i', 'e', 't'}
	rc.fr.WritePing(false, quiet)
	waitAck(quiet)

	busy := [8]byte{'b', 'u', 's', 'y'}
	rc.fr.WritePing(false, busy)
	rc.open(1)
	rc.fr.WriteData(1, true, message(t, 1))
	waitAck(busy)
}

func TestGRPCExportAndBackpressure(t *testing.T) {
	c := &consumertest.Recorder{}
	client := serveGRPC(t, c)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer pdt_x")
	if _, err := client.Export(ctx, consumertest.LogsRequest(4)); err != nil {
		t.Fatal(err)
	}
	if len(c.Got) != 1 || c.Auth[0] != "Bearer pdt_x" {
		t.Fatalf("consumer got %d requests, auth %v", len(c.Got), c.Auth)
	}
	dec := plogotlp.NewExportRequest()
	if err := dec.UnmarshalProto(c.Got[0].Body); err != nil || dec.Logs().LogRecordCount() != 4 {
		t.Errorf("body: %v, %d records", err, dec.Logs().LogRecordCount())
	}

	c.Err = consumer.Full("queue full", 2*time.Second)
	_, err := client.Export(ctx, consumertest.LogsRequest(1))
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
func serveGRPC(t testing.TB, c consumer.Consumer) plogotlp.GRPCClient {
	_, addr := startGRPC(t, c, 0, nil)
	return plogotlp.NewGRPCClient(dialGRPC(t, addr))
}

// Request buffers are reused: each request must still arrive whole and alone,
// whatever the size of the one before it.
func TestGRPCBodiesStayWholeWhenBuffersAreReused(t *testing.T) {
	var got []int
	client := serveGRPC(t, consumer.ConsumerFunc(func(_ context.Context, r consumer.Request) error {
		dec := plogotlp.NewExportRequest()
		if err := dec.UnmarshalProto(r.Body); err != nil {
			return consumer.Malformed("%v", err)
		}
		got = append(got, dec.Logs().LogRecordCount())
		return nil
	}))
	want := []int{50, 3, 200, 1, 20}
	for _, n := range want {
		if _, err := client.Export(context.Background(), consumertest.LogsRequest(n)); err != nil {
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
	client := serveGRPC(b, consumer.ConsumerFunc(func(context.Context, consumer.Request) error { return nil }))
	req := consumertest.LogsRequest(100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Export(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
