// Package ingress is the agent's reverse proxy in front of an ingress-facing
// service: it forwards every request to the service, streaming bodies both ways
// without buffering them and passing upgraded connections (WebSockets) through,
// and records per route template × method × status a request counter and the
// http.server.request.duration histogram, which it hands to the runtime
// Collector as a runtime.Source. docs/signals.md ("HTTP traffic") lists the
// names, units and attributes.
//
// The hot path takes no lock: a series' figures are atomic counters found in a
// sync.Map, and route matching allocates nothing.
package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
)

// Settings carries what a Proxy borrows from the agent; zero values are safe.
type Settings struct {
	// Logger receives state changes and the HTTP server's own errors (at debug
	// level: a misbehaving client must not flood the agent's log).
	Logger *slog.Logger
	// Clock stamps metrics and times requests.
	Clock clock.Clock
}

// Proxy is one ingress-facing service's reverse proxy and the source of its
// HTTP traffic metrics.
type Proxy struct {
	cfg      Config
	upstream *url.URL
	log      *slog.Logger
	clock    clock.Clock
	routes   *router
	rec      recorder
	start    time.Time
	rp       *httputil.ReverseProxy
	tr       *http.Transport
	// handlers counts requests in progress, upgraded ones included, which
	// http.Server.Shutdown does not wait for.
	handlers sync.WaitGroup

	mu       sync.Mutex
	srv      *http.Server
	ln       net.Listener
	addr     string
	port     int64
	cancel   context.CancelFunc
	served   chan struct{}
	serveErr error
	shutdown bool
}

// New validates cfg and builds a Proxy; it starts nothing.
func New(cfg Config, set Settings) (*Proxy, error) {
	if err := cfg.Validate("ingress/" + config.Clip(cfg.Name, config.MaxIngressNameLen)); err != nil {
		return nil, err
	}
	cfg = withDefaults(cfg)
	up, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("ingress %q: upstream: %w", cfg.Name, err)
	}
	routes, err := newRouter(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("ingress %q: %w", cfg.Name, err)
	}
	p := &Proxy{
		cfg:      cfg,
		upstream: up,
		log:      set.Logger,
		clock:    clock.Or(set.Clock),
		routes:   routes,
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "ingress", "ingress", cfg.Name)
	p.start = p.clock.Now()
	p.tr = &http.Transport{
		Proxy:                  nil, // the upstream is local to the deployment: never via an environment proxy
		DialContext:            (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           512,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.DialTimeout,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: int64(MaxHeaderBytesLimit),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    p.tr,
		BufferPool:   newBufferPool(),
		ErrorHandler: p.upstreamError,
		ErrorLog:     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		// FlushInterval 0: ReverseProxy flushes each write at once for
		// responses of unknown length and for text/event-stream, and lets
		// responses of known length fill its buffer.
	}
	return p, nil
}

// Name identifies the proxy among the agent's runtime sources.
func (p *Proxy) Name() string { return "ingress/" + p.cfg.Name }

// Addr returns the address the proxy listens on once started, else "".
func (p *Proxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return ""
	}
	return p.ln.Addr().String()
}

// Start binds the listen address (so "address in use" is a startup error) and
// serves until Shutdown.
func (p *Proxy) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown {
		return fmt.Errorf("ingress %q: start after shutdown", p.cfg.Name)
	}
	if p.srv != nil {
		return fmt.Errorf("ingress %q: already started", p.cfg.Name)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ingress %q: listen %s: %w", p.cfg.Name, p.cfg.Listen, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p.addr = host
	p.port, _ = strconv.ParseInt(port, 10, 64)
	// Requests' contexts derive from base: cancelling it after the drain ends
	// upgraded connections (WebSockets), which http.Server.Shutdown does not
	// track.
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	p.ln = ln
	p.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.mu.Lock()
			p.serveErr = err
			p.mu.Unlock()
		}
	}(p.srv, p.served)
	p.log.Info("ingress proxy listening", "addr", ln.Addr().String(), "upstream", p.upstream.Redacted())
	return nil
}

// Shutdown stops accepting, lets requests in progress finish within ctx's
// deadline, then closes upgraded connections and idle upstream connections. It
// is idempotent and safe without Start.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.shutdown = true
	srv, cancel, served := p.srv, p.cancel, p.served
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		// The deadline passed with requests still in progress: cut them.
		err = errors.Join(fmt.Errorf("ingress %q: drain: %w", p.cfg.Name, err), srv.Close())
	}
	cancel()
	<-served
	drained := make(chan struct{})
	go func() { p.handlers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("ingress %q: upgraded connections still open: %w", p.cfg.Name, ctx.Err()))
	}
	p.tr.CloseIdleConnections()
	p.mu.Lock()
	serveErr := p.serveErr
	p.mu.Unlock()
	if serveErr != nil {
		err = errors.Join(err, fmt.Errorf("ingress %q: serve: %w", p.cfg.Name, serveErr))
	}
	return err
}

// Collect appends the cumulative request counter and duration histogram of
// every route × method × status seen since the proxy was built.
func (p *Proxy) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	p.mu.Lock()
	s := series{name: p.cfg.Name, addr: p.addr, port: p.port, scheme: "http", routes: p.routes}
	p.mu.Unlock()
	p.rec.collect(s, p.start, now, ms)
	return ctx.Err()
}

// ServeHTTP forwards one request and records it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Done()
	t0 := p.clock.Now()
	sw := statusWriter{ResponseWriter: w}
	// Deferred, because ReverseProxy panics with http.ErrAbortHandler when the
	// upstream fails in the middle of a body, and that request counts too.
	defer func() {
		code := sw.code
		if code == 0 {
			// The handler returned without writing: net/http answers 200.
			code = http.StatusOK
		}
		p.rec.record(p.routes.route(r.URL.Path), methodIndex(r.Method), code, p.clock.Now().Sub(t0))
	}()
	// Full duplex: without it net/http, when the upstream's response headers
	// are written before the transport has read the end of the request body,
	// reads the rest of that body itself, racing the transport, which then
	// sees its request fail and closes the upstream connection in the middle
	// of the response body. A proxy streams both ways at once. (HTTP/2
	// connections are full duplex already and answer an error here.)
	_ = http.NewResponseController(w).EnableFullDuplex()
	p.rp.ServeHTTP(&sw, r)
}

// rewrite points the outbound request at the upstream and sets the
// X-Forwarded-* headers as nginx's usual configuration does: the client's
// address appended to any X-Forwarded-For it came with, Host and Proto as the
// client asked.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.upstream)
	if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
		pr.Out.Header["X-Forwarded-For"] = append([]string(nil), prior...)
	}
	pr.SetXForwarded()
}

// statusClientClosed is recorded when the client went away before the upstream
// answered (nginx's 499); no response is written.
const statusClientClosed = 499

// upstreamError answers 502 when the upstream cannot be reached or fails
// before its response headers, 504 when it does not answer in time.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		if sw, ok := w.(*statusWriter); ok && sw.code == 0 {
			sw.code = statusClientClosed
		}
		return
	}
	code, text := http.StatusBadGateway, "upstream unreachable\n"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		code, text = http.StatusGatewayTimeout, "upstream timed out\n"
	}
	p.log.Debug("upstream request failed", "route", p.routes.name(p.routes.route(r.URL.Path)), "err", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, text)
}

// statusWriter remembers the status of the response. Unwrap lets
// http.ResponseController (which ReverseProxy uses) reach the connection's
// Flusher and Hijacker through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx informational responses (other than 101) precede the final one.
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack records 101: ReverseProxy hijacks the connection only to pass an
// upgrade through, and writes the upstream's 101 to it without WriteHeader.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers, so streaming a body
// allocates nothing per request.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte { return *b.p.Get().(*[]byte) }

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
