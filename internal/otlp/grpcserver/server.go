// Package grpcserver serves OTLP over gRPC: the logs, trace and metrics export
// services, on HTTP/2 framing of its own rather than grpc-go's, handing each request
// to a consumer.Consumer and answering refusals as receiver.StatusOf maps them.
//
// The server starts nothing until Serve, whose error the caller must handle, and
// Shutdown(ctx) drains it gracefully, then closes what is left at ctx's end.
package grpcserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
	"github.com/periscope-dev/periscope/internal/retry"
	"github.com/periscope-dev/periscope/internal/sysio"
)

// Server serves the OTLP logs, trace and metrics export services over gRPC (HTTP/2
// without TLS), handing each request to a consumer.Consumer.
//
// It speaks only what OTLP export needs, a unary call per stream, and speaks it with
// fewer wake-ups than a general gRPC server: one goroutine per connection reads
// frames, each complete request is consumed on a goroutine of its own, and that
// goroutine writes the whole answer and flushes it in one write. There is no writer
// goroutine and no ping of its own. Measured on the agent's load, grpc-go's general
// machinery cost as much CPU as the rest of the pipeline (docs/benchmarks.md).
//
// What it does offer: many concurrent streams per connection, flow control in both
// directions, gzip-compressed messages, grpc-timeout, status details (RetryInfo for
// retryable refusals), UNIMPLEMENTED for unknown methods and encodings, and a
// graceful shutdown that lets requests in progress finish.
type Server struct {
	next     consumer.Consumer
	maxBytes int
	lim      *receiver.Limiter
	bodies   bodyPool
	// okHeaders and okTrailers are the pre-encoded header blocks of a success.
	okHeaders, okTrailers []byte

	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	conns    map[*grpcConn]struct{}
	stopping bool
	wg       sync.WaitGroup // connections and handlers
}

// Settings configure a Server.
type Settings struct {
	// MaxBytes bounds a message, compressed or not; zero means
	// receiver.DefaultMaxBytes.
	MaxBytes int
	// Limiter, when not nil, bounds requests in progress; the manager shares one with
	// its OTLP/HTTP handler.
	Limiter *receiver.Limiter
}

// The windows and bounds the server announces. A request is read whole before it is
// consumed, so a stream window of a megabyte lets most requests arrive without
// waiting for a window update.
const (
	grpcMaxStreams     = 100
	grpcStreamWindow   = 1 << 20
	grpcConnWindow     = 4 << 20
	grpcMaxHeaderBytes = 64 << 10
	grpcPrefaceTimeout = 10 * time.Second
	// A PING's ACK waits this long at most for other frames to go with it, and at
	// most this many wait: far below any keepalive timeout.
	pingAckDelay       = 100 * time.Millisecond
	maxPendingPingAcks = 8
	// http2 defaults that apply until the peer's SETTINGS say otherwise.
	http2DefaultWindow = 65535
)

// New returns a server offering the OTLP export services to c. It starts nothing:
// Serve does. Request bodies are reused once Consume returns (see consumer.Request).
func New(c consumer.Consumer, set Settings) *Server {
	if set.MaxBytes <= 0 {
		set.MaxBytes = receiver.DefaultMaxBytes
	}
	s := &Server{next: c, maxBytes: set.MaxBytes, lim: set.Limiter,
		lns: map[net.Listener]struct{}{}, conns: map[*grpcConn]struct{}{}}
	s.okHeaders = encodeHeaders("", [][2]string{{"content-type", "application/grpc"}, {"grpc-accept-encoding", "gzip"}})
	s.okTrailers = encodeHeaders("", [][2]string{{"grpc-status", "0"}})
	return s
}

// encodeHeaders HPACK-encodes a response header block starting with :status (200 for ""). Each
// field is a literal that is never indexed, so blocks need no encoder state shared
// with the connection and can be encoded once and sent on any connection.
func encodeHeaders(status string, fields [][2]string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	if status == "" {
		status = "200"
	}
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: status})
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true})
	}
	return buf.Bytes()
}

// ErrServerStopped is returned by Serve once the server has been shut down.
var ErrServerStopped = errors.New("grpcserver: server stopped")

// Serve accepts connections on ln and serves them until Shutdown; it then returns nil.
// It returns ErrServerStopped at once if Shutdown was called before, and any other
// error when ln fails: the caller MUST handle Serve's error (run it in an errgroup,
// say), or a broken listener leaves the port silently unserved.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		ln.Close()
		return ErrServerStopped
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	accept := retry.Backoff{Initial: 5 * time.Millisecond, Max: time.Second}
	failures := 0
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			if stopping {
				return nil
			}
			// Out of file descriptors, say: wait and retry, as net/http and grpc-go do.
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() {
				failures++
				time.Sleep(accept.Delay(failures, nil))
				continue
			}
			return fmt.Errorf("gRPC accept: %w", err)
		}
		failures = 0
		c := s.newConn(nc)
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			nc.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops the server: it closes the listeners, tells every client with GOAWAY
// to open no new streams, and returns once the requests in progress have been
// answered. When ctx ends first, it closes every connection at once (requests in
// progress then get a broken connection, which gRPC senders retry), waits for the
// consumers still running, whose contexts are cancelled by then, to return, and
// returns ctx's error.
//
// Shutdown is safe to call more than once, concurrently, and without Serve; a later
// Serve returns ErrServerStopped.
func (s *Server) Shutdown(ctx context.Context) error {
	drained := make(chan struct{})
	go func() {
		s.stop((*grpcConn).drain)
		close(drained)
	}()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		s.stop(func(c *grpcConn) { c.nc.Close() })
		<-drained
		return ctx.Err()
	}
}

// stop closes the listeners, ends each connection with end and waits for the
// connections and handlers to finish. end runs without the server's mu held, so that
// a drain stuck writing to a client that does not read cannot keep a later stop from
// closing the connections.
func (s *Server) stop(end func(*grpcConn)) {
	s.mu.Lock()
	s.stopping = true
	for ln := range s.lns {
		ln.Close()
	}
	conns := make([]*grpcConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		end(c)
	}
	s.wg.Wait()
}

// bodyPool keeps request buffers between requests, so reading a request does not
// allocate and zero a buffer of its size each time.
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

// grpcConn is one client connection. The reading goroutine owns br, the receive
// windows and the streams' bodies until each stream ends; mu guards everything
// written (the framer's writing side, bw) and the stream table, which handlers
// update when they finish.
type grpcConn struct {
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	fr     *http2.Framer
	ctx    context.Context
	cancel context.CancelFunc
	// idle hands a complete request to a handler waiting for one.
	idle chan *grpcStream

	// Owned by the reading goroutine.
	recvWindow   int64  // what the peer may still send on the connection
	recvUnacked  uint32 // consumed but not yet returned with WINDOW_UPDATE
	lastStreamID uint32 // highest stream the client opened; written under mu too

	mu           sync.Mutex
	sendReady    *sync.Cond // signalled when send windows grow or the connection ends
	bw           *bufio.Writer
	streams      map[uint32]*grpcStream
	active       int   // streams being received or handled
	sendWindow   int64 // connection send window
	peerWindow   int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMaxFrame uint32
	pingAcks     [][8]byte   // PING ACKs waiting to ride with other frames
	pingTimer    *time.Timer // sends pingAcks if nothing else is written first
	draining     bool        // GOAWAY sent: no new streams
	closed       bool
}

// grpcStream is one export call.
type grpcStream struct {
	id       uint32
	sig      otlp.Signal
	ctx      context.Context
	header   func(string) string
	encoding string        // grpc-encoding: "" (identity) or "gzip"
	timeout  time.Duration // from grpc-timeout; 0 means none
	body     *[]byte       // the length-prefixed message as received
	limited  bool          // holds a Limiter slot

	// Owned by the reading goroutine while the request arrives.
	recvWindow  int64
	recvUnacked uint32
	handling    bool

	// Guarded by grpcConn.mu.
	sendWindow int64
	reset      bool // the client reset the stream: write nothing more on it
}

func (s *Server) newConn(nc net.Conn) *grpcConn {
	r, w := sysio.SocketIO(nc)
	c := &grpcConn{srv: s, nc: nc, br: bufio.NewReaderSize(r, 32<<10), bw: bufio.NewWriterSize(w, 8<<10),
		streams: map[uint32]*grpcStream{}, recvWindow: grpcConnWindow,
		sendWindow: http2DefaultWindow, peerWindow: http2DefaultWindow, peerMaxFrame: 16 << 10}
	c.sendReady = sync.NewCond(&c.mu)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = grpcMaxHeaderBytes
	c.fr.SetReuseFrames()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.idle = make(chan *grpcStream)
	return c
}

// serve reads frames until the connection ends.
func (c *grpcConn) serve() {
	defer c.srv.wg.Done()
	defer c.close()
	if !c.handshake() {
		return
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				c.mu.Lock()
				c.lastStreamID = max(c.lastStreamID, se.StreamID)
				c.mu.Unlock()
				c.resetStream(se.StreamID, se.Code)
			case errors.As(err, &ce):
				c.goAway(http2.ErrCode(ce))
				return
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAway(http2.ErrCodeFrameSize)
				return
			default: // the connection broke or the peer closed it
				return
			}
		} else if !c.handleFrame(f) {
			return
		}
		if c.br.Buffered() == 0 {
			// Nothing more to read at once: send what the frames just read asked for.
			c.mu.Lock()
			err := c.flushLocked()
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// handshake reads the client preface and sends the server's settings.
func (c *grpcConn) handshake() bool {
	c.nc.SetReadDeadline(time.Now().Add(grpcPrefaceTimeout))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c.br, preface); err != nil {
		return false
	}
	if string(preface) != http2.ClientPreface {
		// Most likely HTTP/1: say what this port is instead of hanging up silently.
		msg := "this port serves OTLP over gRPC (HTTP/2); send OTLP/HTTP to the OTLP/HTTP port\n"
		fmt.Fprintf(c.nc, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(msg), msg)
		return false
	}
	c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: grpcMaxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: grpcStreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: grpcMaxHeaderBytes},
	)
	c.fr.WriteWindowUpdate(0, grpcConnWindow-http2DefaultWindow)
	return c.flushLocked() == nil
}

// handleFrame acts on one frame; false ends the connection.
func (c *grpcConn) handleFrame(f http2.Frame) bool {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			return true
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		err := f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingInitialWindowSize:
				delta := int64(s.Val) - c.peerWindow
				c.peerWindow = int64(s.Val)
				for _, st := range c.streams {
					st.sendWindow += delta
				}
			case http2.SettingMaxFrameSize:
				c.peerMaxFrame = s.Val
			}
			return nil
		})
		if err != nil {
			return false
		}
		c.sendReady.Broadcast()
		return c.fr.WriteSettingsAck() == nil
	case *http2.WindowUpdateFrame:
		c.mu.Lock()
		defer c.mu.Unlock()
		if f.StreamID == 0 {
			if c.sendWindow += int64(f.Increment); c.sendWindow > 1<<31-1 {
				c.goAwayLocked(http2.ErrCodeFlowControl)
				return false
			}
		} else if st := c.streams[f.StreamID]; st != nil {
			st.sendWindow += int64(f.Increment)
		}
		c.sendReady.Broadcast()
	case *http2.PingFrame:
		if !f.IsAck() {
			c.mu.Lock()
			c.ackPingLocked(f.Data)
			c.mu.Unlock()
		}
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		st := c.streams[f.StreamID]
		if st != nil {
			st.reset = true
		}
		c.mu.Unlock()
		if st != nil && !st.handling {
			c.forget(f.StreamID)
		}
	case *http2.GoAwayFrame:
		// The client opens no new streams; those in progress still get answers.
	case *http2.PushPromiseFrame:
		c.goAway(http2.ErrCodeProtocol) // clients must not push
		return false
	}
	return true // PRIORITY and unknown frames are ignored, as RFC 9113 asks
}

// onHeaders opens a stream, or ends one with trailers.
func (c *grpcConn) onHeaders(f *http2.MetaHeadersFrame) bool {
	id := f.StreamID
	if id%2 == 0 {
		c.goAway(http2.ErrCodeProtocol)
		return false
	}
	if id <= c.lastStreamID {
		c.mu.Lock()
		st := c.streams[id]
		c.mu.Unlock()
		if st != nil && !st.handling && f.StreamEnded() {
			c.endStream(st) // trailers after the message
		} else if st != nil {
			c.resetStream(id, http2.ErrCodeProtocol)
		}
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastStreamID = id // under mu, so drain reads it
	if c.draining || c.active >= grpcMaxStreams {
		c.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		return true
	}
	st := &grpcStream{id: id, ctx: c.ctx, recvWindow: grpcStreamWindow, sendWindow: c.peerWindow}
	fields := f.Fields
	st.header = func(key string) string {
		key = strings.ToLower(key)
		for _, hf := range fields {
			if hf.Name == key {
				return hf.Value
			}
		}
		return ""
	}
	ended := f.StreamEnded()
	refuse := func(s receiver.Status, httpStatus string) bool {
		c.writeStatusLocked(id, s, httpStatus)
		if !ended {
			c.fr.WriteRSTStream(id, http2.ErrCodeNo) // the rest of the request is not wanted
		}
		return true
	}
	if f.PseudoValue("method") != "POST" {
		c.fr.WriteRSTStream(id, http2.ErrCodeProtocol)
		return true
	}
	if ct := st.header("content-type"); ct != "application/grpc" && !strings.HasPrefix(ct, "application/grpc+") && !strings.HasPrefix(ct, "application/grpc;") {
		return refuse(receiver.Status{Code: codes.Internal, Message: "unsupported content type " + ct + " (want application/grpc)"}, "415")
	}
	path := f.PseudoValue("path")
	sig, ok := grpcMethods[path]
	if !ok {
		return refuse(receiver.Status{Code: codes.Unimplemented, Message: "unknown method " + path + "; this server offers the OTLP export services"}, "")
	}
	st.sig = sig
	switch enc := st.header("grpc-encoding"); enc {
	case "", "identity":
	case "gzip":
		st.encoding = enc
	default:
		return refuse(receiver.Status{Code: codes.Unimplemented, Message: "unsupported grpc-encoding " + enc + " (want gzip or identity)"}, "")
	}
	if v := st.header("grpc-timeout"); v != "" {
		d, err := parseGRPCTimeout(v)
		if err != nil {
			return refuse(receiver.Status{Code: codes.Internal, Message: err.Error()}, "")
		}
		st.timeout = d
	}
	if a, ok := c.srv.next.(consumer.Authorizer); ok {
		ctx, err := a.Authorize(st.ctx, st.header)
		if err != nil {
			return refuse(receiver.StatusOf(err), "")
		}
		st.ctx = ctx
	}
	if err := c.srv.lim.Acquire(); err != nil {
		return refuse(receiver.StatusOf(err), "")
	}
	st.limited = true
	st.body = c.srv.bodies.get()
	c.streams[id] = st
	c.active++
	if ended {
		c.endStream(st)
	}
	return true
}

// grpcMethods maps each export method's path to its signal.
var grpcMethods = map[string]otlp.Signal{
	"/opentelemetry.proto.collector.logs.v1.LogsService/Export":       otlp.Logs,
	"/opentelemetry.proto.collector.trace.v1.TraceService/Export":     otlp.Traces,
	"/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": otlp.Metrics,
}

// onData adds a DATA frame to its stream's message and keeps the windows open.
func (c *grpcConn) onData(f *http2.DataFrame) bool {
	n := f.Header().Length // padding counts against the windows too
	if c.recvWindow -= int64(n); c.recvWindow < 0 {
		c.goAway(http2.ErrCodeFlowControl)
		return false
	}
	if c.recvUnacked += n; c.recvUnacked >= grpcConnWindow/4 {
		c.mu.Lock()
		c.fr.WriteWindowUpdate(0, c.recvUnacked)
		c.mu.Unlock()
		c.recvWindow += int64(c.recvUnacked)
		c.recvUnacked = 0
	}
	if f.StreamID > c.lastStreamID {
		c.goAway(http2.ErrCodeProtocol) // DATA on a stream never opened
		return false
	}
	c.mu.Lock()
	st := c.streams[f.StreamID]
	c.mu.Unlock()
	if st == nil || st.handling {
		return true // a stream already answered or reset: its data is not wanted
	}
	if st.recvWindow -= int64(n); st.recvWindow < 0 {
		c.resetStream(st.id, http2.ErrCodeFlowControl)
		return true
	}
	*st.body = append(*st.body, f.Data()...)
	if b := *st.body; len(b) >= 5 {
		if size := messageSize(b); size > c.srv.maxBytes {
			c.mu.Lock()
			c.writeStatusLocked(st.id, receiver.Status{Code: codes.ResourceExhausted,
				Message: fmt.Sprintf("message of %d bytes is larger than the limit of %d", size, c.srv.maxBytes)}, "")
			if !f.StreamEnded() {
				c.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
			}
			c.mu.Unlock()
			c.forget(st.id)
			return true
		}
	}
	if f.StreamEnded() {
		c.endStream(st)
		return true
	}
	if st.recvUnacked += n; st.recvUnacked >= grpcStreamWindow/4 {
		c.mu.Lock()
		c.fr.WriteWindowUpdate(st.id, st.recvUnacked)
		c.mu.Unlock()
		st.recvWindow += int64(st.recvUnacked)
		st.recvUnacked = 0
	}
	return true
}

// endStream hands a complete request to a handler of the connection that waits for
// one, or to a new one when all are busy.
//
// A handler stays for the connection's next requests rather than ending with its
// request: a new goroutine's stack is small and the consumer grows it again for every
// request, which cost the agent a few percent of its CPU in copying stacks. There are
// never more handlers than requests the connection had in progress at once (at most
// grpcMaxStreams); they end with the connection.
func (c *grpcConn) endStream(st *grpcStream) {
	st.handling = true
	select {
	case c.idle <- st:
	default:
		c.srv.wg.Add(1)
		go c.handler(st)
	}
}

// handler handles st, then each request it is handed until the connection closes.
func (c *grpcConn) handler(st *grpcStream) {
	defer c.srv.wg.Done()
	for {
		c.handle(st)
		select {
		case st = <-c.idle:
		case <-c.ctx.Done():
			return
		}
	}
}

// handle consumes one request and answers it.
func (c *grpcConn) handle(st *grpcStream) {
	defer c.finish(st)
	msg, refusal := c.message(st)
	if refusal.Code == codes.OK {
		ctx := st.ctx
		if st.timeout > 0 {
			dc := newDeadlineCtx(ctx, time.Now().Add(st.timeout))
			defer dc.release()
			ctx = dc
		}
		if err := c.srv.next.Consume(ctx, consumer.Request{Signal: st.sig, Body: msg, Header: st.header}); err != nil {
			refusal = receiver.StatusOf(err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.reset || c.closed {
		return
	}
	if refusal.Code != codes.OK {
		c.writeStatusLocked(st.id, refusal, "")
	} else {
		// The empty message's 5 bytes need room in both send windows.
		for !c.closed && !st.reset && (c.sendWindow < 5 || st.sendWindow < 5) {
			c.sendReady.Wait()
		}
		if c.closed || st.reset {
			return
		}
		c.sendWindow -= 5
		st.sendWindow -= 5
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: c.srv.okHeaders, EndHeaders: true})
		c.fr.WriteData(st.id, false, emptyMessage[:]) // an empty Export*ServiceResponse: full success
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: c.srv.okTrailers, EndHeaders: true, EndStream: true})
	}
	c.flushLocked()
}

var emptyMessage [5]byte

// message checks the length-prefixed message of a complete request and returns it
// uncompressed, or the refusal to answer (whose Code is never OK).
func (c *grpcConn) message(st *grpcStream) ([]byte, receiver.Status) {
	b := *st.body
	if len(b) < 5 {
		return nil, receiver.Status{Code: codes.Internal, Message: "request stream ended without a complete message"}
	}
	size := messageSize(b)
	switch {
	case len(b)-5 < size:
		return nil, receiver.Status{Code: codes.Internal, Message: "request stream ended inside its message"}
	case len(b)-5 > size:
		return nil, receiver.Status{Code: codes.Internal, Message: "a unary export request carries one message, not several"}
	}
	msg := b[5:]
	switch b[0] {
	case 0:
		return msg, receiver.Status{}
	case 1:
		if st.encoding == "" {
			return nil, receiver.Status{Code: codes.Internal, Message: "compressed message without a grpc-encoding"}
		}
		out, err := otlp.Decompress(st.encoding, bytes.NewReader(msg), int64(c.srv.maxBytes))
		switch {
		case errors.Is(err, otlp.ErrTooLarge):
			return nil, receiver.Status{Code: codes.ResourceExhausted, Message: fmt.Sprintf("decompressed message is larger than the limit of %d bytes", c.srv.maxBytes)}
		case err != nil:
			return nil, receiver.Status{Code: codes.Internal, Message: "could not decompress the message: " + err.Error()}
		}
		return out, receiver.Status{}
	}
	return nil, receiver.Status{Code: codes.Internal, Message: fmt.Sprintf("message flag %d is neither 0 nor 1", b[0])}
}

// messageSize reads the length in a gRPC message's 5-byte prefix.
func messageSize(prefixed []byte) int { return int(binary.BigEndian.Uint32(prefixed[1:5])) }

// finish drops a handled stream.
func (c *grpcConn) finish(st *grpcStream) {
	c.mu.Lock()
	c.dropLocked(st)
}

// forget drops a stream that is not being handled: refused mid-request or reset.
func (c *grpcConn) forget(id uint32) {
	c.mu.Lock()
	if st := c.streams[id]; st != nil && !st.handling {
		c.dropLocked(st)
		return
	}
	c.mu.Unlock()
}

// dropLocked removes st from the table, unlocks mu and frees what st held, closing
// the connection when GOAWAY was sent and this was its last stream.
func (c *grpcConn) dropLocked(st *grpcStream) {
	delete(c.streams, st.id)
	c.active--
	last := c.draining && c.active == 0
	c.mu.Unlock()
	c.release(st)
	if last {
		c.nc.Close()
	}
}

// resetStream sends RST_STREAM with code and drops the stream unless it is being
// handled.
func (c *grpcConn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	c.fr.WriteRSTStream(id, code)
	c.mu.Unlock()
	c.forget(id)
}

func (c *grpcConn) release(st *grpcStream) {
	if st.limited {
		c.srv.lim.Release()
	}
	if st.body != nil {
		c.srv.bodies.put(st.body)
	}
}

// writeStatusLocked answers a stream with a trailers-only response carrying e; the
// caller holds mu. httpStatus is the :status to send ("" means 200).
func (c *grpcConn) writeStatusLocked(id uint32, s receiver.Status, httpStatus string) {
	fields := [][2]string{{"content-type", "application/grpc"}, {"grpc-status", strconv.Itoa(int(s.Code))}}
	if s.Message != "" {
		fields = append(fields, [2]string{"grpc-message", encodeGRPCMessage(s.Message)})
	}
	if s.Code == codes.Unimplemented {
		fields = append(fields, [2]string{"grpc-accept-encoding", "gzip"})
	}
	if d := s.GRPCDetails(); d != "" {
		fields = append(fields, [2]string{"grpc-status-details-bin", d})
	}
	block := encodeHeaders(httpStatus, fields)
	for first := true; len(block) > 0 || first; first = false {
		chunk := block[:min(len(block), int(c.peerMaxFrame))]
		block = block[len(chunk):]
		if first {
			c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: chunk, EndHeaders: len(block) == 0, EndStream: true})
		} else {
			c.fr.WriteContinuation(id, len(block) == 0, chunk)
		}
	}
}

// encodeGRPCMessage percent-encodes a grpc-message value as the gRPC HTTP/2 protocol
// asks: every byte outside printable ASCII, and '%'.
func encodeGRPCMessage(msg string) string {
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// parseGRPCTimeout reads a grpc-timeout value: up to 8 digits and a unit.
func parseGRPCTimeout(v string) (time.Duration, error) {
	bad := fmt.Errorf("malformed grpc-timeout %q", v)
	if len(v) < 2 || len(v) > 9 {
		return 0, bad
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, bad
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if unit == 0 {
		return 0, bad
	}
	if n > int64(1<<63-1)/int64(unit) {
		return 1<<63 - 1, nil
	}
	return time.Duration(n) * unit, nil
}

// drain sends GOAWAY so the client opens no new streams, and closes the connection
// once the streams already open are answered.
func (c *grpcConn) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining || c.closed {
		return
	}
	c.draining = true
	c.fr.WriteGoAway(c.lastStreamID, http2.ErrCodeNo, nil)
	c.flushLocked()
	if c.active == 0 {
		c.nc.Close()
	}
}

// goAway ends the connection for a protocol error.
func (c *grpcConn) goAway(code http2.ErrCode) {
	c.mu.Lock()
	c.goAwayLocked(code)
	c.mu.Unlock()
}

func (c *grpcConn) goAwayLocked(code http2.ErrCode) {
	c.fr.WriteGoAway(c.lastStreamID, code, nil)
	c.flushLocked()
}

// flushLocked sends what is buffered, with any PING ACKs still waiting.
func (c *grpcConn) flushLocked() error {
	if c.bw.Buffered() == 0 || c.closed {
		return nil
	}
	c.writePingAcksLocked()
	return c.bw.Flush()
}

// ackPingLocked answers a PING. grpc-go clients, and so most OpenTelemetry senders,
// ping after every response they read to estimate bandwidth; answering at once costs
// a wake-up and a write per request. The ACK waits instead for the next frames
// written on the connection, at most pingAckDelay, and a few at most.
func (c *grpcConn) ackPingLocked(data [8]byte) {
	c.pingAcks = append(c.pingAcks, data)
	switch {
	case len(c.pingAcks) >= maxPendingPingAcks:
		c.writePingAcksLocked()
	case c.pingTimer == nil:
		c.pingTimer = time.AfterFunc(pingAckDelay, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.writePingAcksLocked()
			c.flushLocked()
		})
	case len(c.pingAcks) == 1:
		c.pingTimer.Reset(pingAckDelay)
	}
}

// writePingAcksLocked writes the PING ACKs waiting; the caller flushes.
func (c *grpcConn) writePingAcksLocked() {
	if len(c.pingAcks) == 0 {
		return
	}
	for _, d := range c.pingAcks {
		c.fr.WritePing(true, d)
	}
	c.pingAcks = c.pingAcks[:0]
	c.pingTimer.Stop()
}

// close ends the connection once its reader stops; handlers still running find it
// closed and write nothing.
func (c *grpcConn) close() {
	c.mu.Lock()
	c.closed = true
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	c.sendReady.Broadcast()
	var open []*grpcStream
	for id, st := range c.streams {
		if !st.handling {
			open = append(open, st)
			delete(c.streams, id)
			c.active--
		}
	}
	c.mu.Unlock()
	for _, st := range open {
		c.release(st)
	}
	c.cancel()
	c.nc.Close()
	c.srv.mu.Lock()
	delete(c.srv.conns, c)
	c.srv.mu.Unlock()
}
