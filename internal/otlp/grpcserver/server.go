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
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	"github.com/periscope-dev/periscope/internal/clock"
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
//
// It faces the internet on the manager's OTLP/gRPC port, so every resource a
// connection can hold is bounded (docs/security.md, "The gRPC server"): streams in
// progress, header list and frame sizes, stream churn (the rapid-reset attack), time
// idle, and time blocked writing to a peer that does not read. Requests it does not
// serve get an HTTP and gRPC status at once, and protocol errors the RFC 9113 answer.
type Server struct {
	next     consumer.Consumer
	maxBytes int
	lim      *receiver.Limiter
	idle     time.Duration // 0: connections may idle forever
	clk      clock.Clock
	// writeTimeout is the constant writeTimeout, which tests shorten.
	writeTimeout time.Duration
	bodies       bodyPool
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
	// IdleTimeout ends a connection (GOAWAY, then close) once it has had no request
	// in progress for this long, as grpc-go's keepalive MaxConnectionIdle does; zero
	// means DefaultIdleTimeout, a negative value never.
	IdleTimeout time.Duration
	// Clock reads the time for the stream churn budget; nil means the wall clock.
	Clock clock.Clock
}

// DefaultIdleTimeout is how long a connection may go without a request in progress
// before the server ends it. OpenTelemetry SDKs export every few seconds to a minute,
// so a connection in use stays open; one a client forgot is closed, and a client that
// comes back simply reconnects.
const DefaultIdleTimeout = 2 * time.Minute

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
	http2MaxWindow     = 1<<31 - 1
	// The largest frame the server reads: the default, since it announces no other.
	grpcMaxReadFrame = 16 << 10
	// A connection may end at most maxStreamChurn streams per churnWindow before they
	// are answered (reset by the client, refused or reset by the server); beyond that
	// it is ended with ENHANCE_YOUR_CALM. Opening and resetting streams costs the
	// client next to nothing and the server real work (CVE-2023-44487, rapid reset);
	// a well-behaved client resets a stream only when its deadline passes.
	maxStreamChurn = 200
	churnWindow    = time.Second
	// A write to the peer that has not completed after writeTimeout means the peer
	// stopped reading: the connection is closed rather than left holding a goroutine.
	writeTimeout = 30 * time.Second
	// After a GOAWAY for a protocol error the server reads (and discards) for at most
	// lingerTimeout, so that the GOAWAY reaches a client still sending rather than
	// being lost to a TCP reset.
	lingerTimeout = time.Second
	// recentResets is how many streams the server remembers having reset: frames
	// still in flight on them are ignored, as RFC 9113 section 5.1 asks.
	recentResets = 32
)

// New returns a server offering the OTLP export services to c. It starts nothing:
// Serve does. Request bodies are reused once Consume returns (see consumer.Request).
func New(c consumer.Consumer, set Settings) *Server {
	if set.MaxBytes <= 0 {
		set.MaxBytes = receiver.DefaultMaxBytes
	}
	switch {
	case set.IdleTimeout == 0:
		set.IdleTimeout = DefaultIdleTimeout
	case set.IdleTimeout < 0:
		set.IdleTimeout = 0
	}
	s := &Server{next: c, maxBytes: set.MaxBytes, lim: set.Limiter, idle: set.IdleTimeout, clk: clock.Or(set.Clock), writeTimeout: writeTimeout,
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
	sw     *stallWriter
	fr     *http2.Framer
	ctx    context.Context
	cancel context.CancelFunc
	// idle hands a complete request to a handler waiting for one.
	idle chan *grpcStream

	// Owned by the reading goroutine.
	recvWindow  int64  // what the peer may still send on the connection
	recvUnacked uint32 // consumed but not yet returned with WINDOW_UPDATE
	churn       int    // streams ended unanswered since churnStart
	churnStart  time.Time
	reset       [recentResets]uint32 // streams the server reset lately, a ring
	resetNext   int

	// Owned by the watchdog, which runs one tick at a time.
	tick                    time.Duration
	watchdog                *time.Timer
	idleTicks, stallTicks   int
	lastOpened, lastWritten uint64

	mu           sync.Mutex
	sendReady    *sync.Cond // signalled when send windows grow or the connection ends
	bw           *bufio.Writer
	streams      map[uint32]*grpcStream
	active       int           // streams being received or handled
	opened       uint64        // streams opened so far, for the idle watchdog
	lastStreamID atomic.Uint32 // highest stream the client opened; stored by the reader only
	sendWindow   int64         // connection send window
	peerWindow   int64         // the peer's SETTINGS_INITIAL_WINDOW_SIZE
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
	handling    bool // the request ended (half-closed remote): it is the handler's

	// Guarded by grpcConn.mu.
	sendWindow int64
	reset      bool // the stream was reset, by either side: write nothing more on it
}

// stallWriter counts the writes to the peer and says whether one is in progress, so
// that the watchdog can tell a peer that stopped reading without a clock read per
// write.
type stallWriter struct {
	w       io.Writer
	writes  atomic.Uint64
	writing atomic.Bool
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.writes.Add(1)
	s.writing.Store(true)
	n, err := s.w.Write(p)
	s.writing.Store(false)
	return n, err
}

func (s *Server) newConn(nc net.Conn) *grpcConn {
	r, w := sysio.SocketIO(nc)
	sw := &stallWriter{w: w}
	c := &grpcConn{srv: s, nc: nc, br: bufio.NewReaderSize(r, 32<<10), sw: sw, bw: bufio.NewWriterSize(sw, 8<<10),
		streams: map[uint32]*grpcStream{}, recvWindow: grpcConnWindow,
		sendWindow: http2DefaultWindow, peerWindow: http2DefaultWindow, peerMaxFrame: 16 << 10}
	c.sendReady = sync.NewCond(&c.mu)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = grpcMaxHeaderBytes
	c.fr.SetMaxReadFrameSize(grpcMaxReadFrame)
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
	c.startWatchdog()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				if c.idleStream(se.StreamID) && se.StreamID%2 == 1 {
					c.lastStreamID.Store(se.StreamID) // a request the framer refused opened it
				}
				if !c.streamError(se.StreamID, se.Code) {
					c.linger()
					return
				}
			case errors.As(err, &ce):
				c.goAway(http2.ErrCode(ce))
				c.linger()
				return
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAway(http2.ErrCodeFrameSize)
				c.linger()
				return
			default: // the connection broke or the peer closed it
				return
			}
		} else if !c.handleFrame(f) {
			c.linger()
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
		if !looksLikeHTTP1(preface) {
			return false // RFC 9113 section 3.4: close the connection
		}
		// HTTP/1: say what this port is instead of hanging up silently.
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

// looksLikeHTTP1 reports whether b starts as an HTTP/1 request line does.
func looksLikeHTTP1(b []byte) bool {
	for _, m := range []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "} {
		if bytes.HasPrefix(b, []byte(m)) {
			return true
		}
	}
	return false
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
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.mu.Lock()
			c.ackPingLocked(f.Data)
			c.mu.Unlock()
		}
	case *http2.RSTStreamFrame:
		if c.idleStream(f.StreamID) {
			c.goAway(http2.ErrCodeProtocol) // RFC 9113 section 5.1: idle streams cannot be reset
			return false
		}
		c.forgetReset(f.StreamID) // the client knows the stream is closed: it sends nothing more on it
		c.mu.Lock()
		st := c.streams[f.StreamID]
		if st != nil {
			st.reset = true
		}
		c.mu.Unlock()
		if st != nil {
			if !st.handling {
				c.forget(f.StreamID)
			}
			return c.churned()
		}
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return c.streamError(f.StreamID, http2.ErrCodeProtocol) // a stream cannot depend on itself
		}
	case *http2.GoAwayFrame:
		// The client opens no new streams; those in progress still get answers.
	case *http2.PushPromiseFrame:
		c.goAway(http2.ErrCodeProtocol) // clients must not push
		return false
	}
	return true // unknown frames are ignored, as RFC 9113 asks
}

// idleStream reports whether id names a stream the client has not opened yet.
func (c *grpcConn) idleStream(id uint32) bool { return id > c.lastStreamID.Load() }

// onSettings applies the client's settings, checking each against RFC 9113's bounds.
func (c *grpcConn) onSettings(f *http2.SettingsFrame) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerWindow
			for _, st := range c.streams {
				if st.sendWindow+delta > http2MaxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
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
		code := http2.ErrCodeProtocol
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			code = http2.ErrCode(ce)
		}
		c.goAwayLocked(code)
		return false
	}
	c.sendReady.Broadcast()
	return c.fr.WriteSettingsAck() == nil
}

// onWindowUpdate grows a send window, within RFC 9113's limit of 2^31-1.
func (c *grpcConn) onWindowUpdate(f *http2.WindowUpdateFrame) bool {
	if f.StreamID != 0 && c.idleStream(f.StreamID) {
		c.goAway(http2.ErrCodeProtocol)
		return false
	}
	c.mu.Lock()
	if f.StreamID == 0 {
		if c.sendWindow += int64(f.Increment); c.sendWindow > http2MaxWindow {
			c.goAwayLocked(http2.ErrCodeFlowControl)
			c.mu.Unlock()
			return false
		}
	} else if st := c.streams[f.StreamID]; st != nil {
		if st.sendWindow+int64(f.Increment) > http2MaxWindow {
			c.mu.Unlock()
			return c.streamError(f.StreamID, http2.ErrCodeFlowControl)
		}
		st.sendWindow += int64(f.Increment)
	}
	c.sendReady.Broadcast()
	c.mu.Unlock()
	return true
}

// onHeaders opens a stream, or ends one with trailers.
func (c *grpcConn) onHeaders(f *http2.MetaHeadersFrame) bool {
	id := f.StreamID
	if id%2 == 0 {
		c.goAway(http2.ErrCodeProtocol)
		return false
	}
	if !c.idleStream(id) {
		return c.onLaterHeaders(f)
	}
	c.lastStreamID.Store(id)
	if f.HasPriority() && f.Priority.StreamDep == id {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	if !wellFormedRequest(f) {
		return c.streamError(id, http2.ErrCodeProtocol) // RFC 9113 section 8.1.1: malformed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.draining || c.active >= grpcMaxStreams {
		c.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		c.rememberReset(id)
		return c.churnedLocked()
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
	// refuse answers a request the server does not serve, with an HTTP status for
	// clients that are not gRPC and a gRPC status for those that are.
	refuse := func(s receiver.Status, httpStatus string) bool {
		c.writeStatusLocked(id, s, httpStatus)
		if !ended {
			c.fr.WriteRSTStream(id, http2.ErrCodeNo) // the rest of the request is not wanted
			c.rememberReset(id)
		}
		return true
	}
	if f.Truncated {
		return refuse(receiver.Status{Code: codes.ResourceExhausted, Message: fmt.Sprintf("request headers are larger than the limit of %d bytes", grpcMaxHeaderBytes)}, "431")
	}
	if m := f.PseudoValue("method"); m != "POST" {
		return refuse(receiver.Status{Code: codes.Internal, Message: "method " + m + " is not allowed; gRPC requests are POST"}, "405")
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
	c.opened++
	if ended {
		c.endStream(st)
	}
	return true
}

// onLaterHeaders handles HEADERS on a stream opened before: the request's trailers,
// or a protocol error.
func (c *grpcConn) onLaterHeaders(f *http2.MetaHeadersFrame) bool {
	id := f.StreamID
	c.mu.Lock()
	st := c.streams[id]
	c.mu.Unlock()
	switch {
	case st == nil:
		// Closed, or idle below a stream already opened (RFC 9113 section 5.1.1).
		// Trailers the client sent before it saw a RST_STREAM of the server's end the
		// connection too, as with grpc-go: gRPC clients send none.
		c.goAway(http2.ErrCodeStreamClosed)
		return false
	case st.handling:
		return c.streamError(id, http2.ErrCodeStreamClosed) // the request already ended
	case !f.StreamEnded() || hasPseudo(f.Fields):
		return c.streamError(id, http2.ErrCodeProtocol) // trailers end the stream, without pseudo-headers
	}
	c.endStream(st)
	return true
}

// wellFormedRequest checks what RFC 9113 section 8.3.1 and 8.2.2 ask of a request's
// header list beyond what the framer checks: :method, :scheme and a non-empty :path,
// no response or unknown pseudo-headers, no connection-specific fields.
func wellFormedRequest(f *http2.MetaHeadersFrame) bool {
	var method, scheme, path bool
	for _, hf := range f.Fields {
		switch hf.Name {
		case ":method":
			method = hf.Value != ""
		case ":scheme":
			scheme = hf.Value != ""
		case ":path":
			path = hf.Value != ""
		case ":authority":
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return false
		case "te":
			if hf.Value != "trailers" {
				return false
			}
		default:
			if strings.HasPrefix(hf.Name, ":") {
				return false
			}
		}
	}
	return method && scheme && path
}

func hasPseudo(fields []hpack.HeaderField) bool {
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			return true
		}
	}
	return false
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
	if c.idleStream(f.StreamID) {
		c.goAway(http2.ErrCodeProtocol) // DATA on a stream never opened
		return false
	}
	c.mu.Lock()
	st := c.streams[f.StreamID]
	c.mu.Unlock()
	switch {
	case st == nil && c.wasReset(f.StreamID):
		return true // sent before the client saw the server's RST_STREAM
	case st == nil || st.handling:
		return c.streamError(f.StreamID, http2.ErrCodeStreamClosed) // the request already ended
	}
	if st.recvWindow -= int64(n); st.recvWindow < 0 {
		return c.streamError(st.id, http2.ErrCodeFlowControl)
	}
	*st.body = append(*st.body, f.Data()...)
	if b := *st.body; len(b) >= 5 {
		if size := messageSize(b); size > c.srv.maxBytes {
			c.mu.Lock()
			c.writeStatusLocked(st.id, receiver.Status{Code: codes.ResourceExhausted,
				Message: fmt.Sprintf("message of %d bytes is larger than the limit of %d", size, c.srv.maxBytes)}, "")
			if !f.StreamEnded() {
				c.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
				c.rememberReset(st.id)
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

// streamError answers a stream error (RFC 9113 section 5.4.2): RST_STREAM with code,
// and the stream is done. It reports false when the connection must end, because its
// streams churn faster than maxStreamChurn allows.
func (c *grpcConn) streamError(id uint32, code http2.ErrCode) bool {
	c.resetStream(id, code)
	return c.churned()
}

// churned counts a stream ended before its answer and reports whether the connection
// is still within its budget; past it, it has sent GOAWAY ENHANCE_YOUR_CALM.
func (c *grpcConn) churned() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.churnedLocked()
}

func (c *grpcConn) churnedLocked() bool {
	now := c.srv.clk.Now()
	if now.Sub(c.churnStart) > churnWindow {
		c.churnStart, c.churn = now, 0
	}
	if c.churn++; c.churn <= maxStreamChurn {
		return true
	}
	c.goAwayLocked(http2.ErrCodeEnhanceYourCalm)
	return false
}

// rememberReset notes that the server reset stream id, so DATA the client sent
// before it saw the RST_STREAM is ignored rather than answered. Reader only.
func (c *grpcConn) rememberReset(id uint32) {
	c.reset[c.resetNext] = id
	c.resetNext = (c.resetNext + 1) % recentResets
}

func (c *grpcConn) forgetReset(id uint32) {
	for i, r := range c.reset {
		if r == id {
			c.reset[i] = 0
		}
	}
}

func (c *grpcConn) wasReset(id uint32) bool {
	for _, r := range c.reset {
		if r == id {
			return true
		}
	}
	return false
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

// resetStream sends RST_STREAM with code and drops the stream; a handler consuming
// it finds it reset and writes nothing. Reader only.
func (c *grpcConn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	c.fr.WriteRSTStream(id, code)
	if st := c.streams[id]; st != nil {
		st.reset = true
	}
	c.mu.Unlock()
	c.rememberReset(id)
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
	c.fr.WriteGoAway(c.lastStreamID.Load(), http2.ErrCodeNo, nil)
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
	c.fr.WriteGoAway(c.lastStreamID.Load(), code, nil)
	c.flushLocked()
}

// linger follows a GOAWAY for an error: it closes the sending side and reads what the
// client still sends, for lingerTimeout at most, so that closing the socket with
// unread data does not reset the connection before the client reads the GOAWAY.
func (c *grpcConn) linger() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		c.mu.Lock()
		c.flushLocked()
		c.closed = true // nothing more may be written
		c.mu.Unlock()
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.Copy(io.Discard, io.LimitReader(c.nc, 1<<20))
}

// startWatchdog starts the connection's timer, which ends the connection when it
// has been idle for the server's IdleTimeout or a write has been blocked for
// writeTimeout. It ticks rather than being reset by each request, which would cost
// the request path a timer update.
func (c *grpcConn) startWatchdog() {
	c.tick = c.srv.writeTimeout / 2
	if c.srv.idle > 0 {
		c.tick = min(c.tick, c.srv.idle/4)
	}
	c.tick = max(c.tick, time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.watchdog = time.AfterFunc(c.tick, c.watch)
	}
}

// watch is one tick of the watchdog.
func (c *grpcConn) watch() {
	written := c.sw.writes.Load()
	if c.sw.writing.Load() && written == c.lastWritten {
		c.stallTicks++
	} else {
		c.stallTicks = 0
	}
	c.lastWritten = written
	if time.Duration(c.stallTicks)*c.tick >= c.srv.writeTimeout {
		c.nc.Close() // the blocked write fails, and the connection ends
		return
	}
	if !c.mu.TryLock() {
		// A write holds mu; the next tick looks again.
		c.watchdog.Reset(c.tick)
		return
	}
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.active == 0 && c.opened == c.lastOpened {
		c.idleTicks++
	} else {
		c.idleTicks = 0
	}
	c.lastOpened = c.opened
	idle := c.srv.idle > 0 && time.Duration(c.idleTicks)*c.tick >= c.srv.idle
	c.watchdog.Reset(c.tick)
	c.mu.Unlock()
	if idle {
		c.drain()
	}
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
	if c.watchdog != nil {
		c.watchdog.Stop()
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
