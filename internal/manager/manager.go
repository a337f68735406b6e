// Package manager wires the control plane: the embedded store, the fleet registry,
// the OpAMP check-in server and the REST API behind one HTTP port.
package manager

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"golang.org/x/sync/errgroup"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/auditlog"
	"github.com/periscope-dev/periscope/internal/manager/checkin"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/export"
	"github.com/periscope-dev/periscope/internal/manager/ingest"
	"github.com/periscope-dev/periscope/internal/manager/notify"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/regression"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/manager/tokens"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/otlp/grpcserver"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
	"github.com/periscope-dev/periscope/internal/store/postgres"
	"github.com/periscope-dev/periscope/internal/tlsconfig"
)

// Settings are the manager's collaborators; zero values are safe.
type Settings struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Rand is the token randomness (crypto/rand when nil).
	Rand io.Reader
	// Console receives the one-time admin token banner (discarded when nil). It is
	// never the log: secrets do not go to logs.
	Console io.Writer
	// EvalInterval overrides how often staleness is checked (tests).
	EvalInterval time.Duration
	// FlushInterval overrides how often check-in state is written (tests, benchmarks).
	FlushInterval time.Duration
	// LeaderEvery overrides how often a replica on PostgreSQL tries for
	// leadership and how often the fleet is read for other replicas' changes
	// (1 s when zero).
	LeaderEvery time.Duration
	// Sinks receive every accepted telemetry batch besides the exporters and the
	// telemetry store; like them, each sees each batch once however often an agent
	// resends it after another sink refused it.
	Sinks []TelemetrySink
}

// Manager is the control plane. New validates; Start opens and listens.
type Manager struct {
	cfg config.Manager
	set Settings
	log *slog.Logger

	store   fleetStore
	reg     *registry.Registry
	notify  *notify.Notifier // nil when no webhook is configured
	keys    *tokens.Keyring
	checkin *checkin.Server
	cmds    *commands.Service
	srv     *http.Server
	ln      net.Listener
	ingest  *ingest.Ingest
	fanout  *export.Fanout
	tel     TelemetryStore
	regress *regression.Detector
	// rollouts moves new releases through their stacks' plans; the registry
	// asks it every deployment's desired release.
	rollouts *rollouts.Engine
	auditSw  *auditlog.Sweeper
	grpcSrv  *grpcserver.Server
	// ingestLimit bounds telemetry requests in progress over HTTP and gRPC together.
	ingestLimit *receiver.Limiter
	grpcLn      net.Listener
	// tls is the manager's own TLS, nil when it serves plain HTTP.
	tls   *tlsconfig.Server
	ready atomic.Bool
	// leading is whether this manager runs the background work that must run
	// once across replicas (leadership.go).
	leading atomic.Bool
	// group owns the background loops (the HTTP and OTLP/gRPC servers, the
	// watermark flusher): the first that fails cancels groupCtx with its error,
	// which Wait returns. stopBg ends them at Shutdown.
	group    *errgroup.Group
	groupCtx context.Context
	stopBg   context.CancelFunc

	shutdownOnce sync.Once
	shutdownErr  error
}

// fleetStore is what the manager needs of its fleet store: every contract of
// package store, and whether it can write now (for /readyz).
type fleetStore interface {
	store.Fleet
	store.Notifications
	store.Commands
	store.Rollouts
	store.Sessions
	Writable(ctx context.Context) error
}

// openFleetStore opens the fleet store the configuration names: the
// PostgreSQL database of a postgres:// storage URL, or the embedded store in
// the data directory.
func openFleetStore(ctx context.Context, cfg config.Manager) (fleetStore, error) {
	if postgres.IsURL(cfg.Storage) {
		st, err := postgres.Open(ctx, cfg.Storage)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := duckdb.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// New validates cfg and returns a manager that has opened nothing yet.
func New(cfg config.Manager, s Settings) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid manager configuration:\n%w", err)
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Console == nil {
		s.Console = io.Discard
	}
	m := &Manager{cfg: cfg, set: s, log: s.Logger}
	if cfg.TLS.Enabled() {
		m.tls = tlsconfig.NewServer(cfg.TLS, s.Logger.With("component", "tls"))
	}
	return m, nil
}

// Start opens the store, loads the fleet, binds the port and serves. An address
// in use or an unreadable data directory is an error here, not later.
//
// Everything under the data directory is private to the process's user: Start
// creates the directory with mode 0700, takes group and other permissions off
// what is in it, and sets the process's umask to 077, because DuckDB creates
// its write-ahead logs itself at every checkpoint (see prepareDataDir).
func (m *Manager) Start(ctx context.Context) error {
	if m.tls != nil {
		if err := m.tls.Load(); err != nil {
			return err
		}
	}
	if err := prepareDataDir(m.cfg.DataDir); err != nil {
		return err
	}
	st, err := openFleetStore(ctx, m.cfg)
	if err != nil {
		return err
	}
	m.store = st
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stopBg = cancel
	m.group, m.groupCtx = errgroup.WithContext(bgCtx)
	if err := m.start(ctx); err != nil {
		m.Shutdown(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

func (m *Manager) start(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	params := fleet.Params{HeartbeatInterval: time.Duration(m.cfg.HeartbeatInterval), StaleAfter: m.cfg.EffectiveStaleAfter()}
	var err error
	// The notifier exists before the registry, which tells it every status
	// change, and starts once the registry has loaded the fleet.
	var onEvent func(fleet.Event)
	if len(m.cfg.Notifications.Webhooks) > 0 {
		m.notify, err = notify.New(m.cfg.Notifications, m.store, notify.Settings{Logger: m.log.With("component", "notify"), Clock: m.set.Clock, Registerer: reg})
		if err != nil {
			return err
		}
		onEvent = m.notify.Observe
	}
	// The rollout engine and the registry need each other: the engine reads
	// and pins the fleet, the registry asks it every desired release. Its
	// state is loaded before the registry evaluates the fleet.
	rf := &rolloutFleet{log: m.log.With("component", "rollouts")}
	m.rollouts, err = rollouts.New(m.cfg.Rollouts.Plan(), rf, rf, rolloutNotices{log: rf.log, notify: m.notify}, m.store, rollouts.Settings{
		CheckEvery: time.Duration(m.cfg.Rollouts.CheckEvery), Clock: m.set.Clock, Rand: m.set.Rand, Logger: rf.log,
		// The engine starts after the check-in server exists, and only
		// requests start rollouts.
		OnDesired: func(ids []string) { m.reg.DesiredChanged(ids) }})
	if err != nil {
		return err
	}
	rf.eng = m.rollouts
	if err := m.rollouts.Load(ctx); err != nil {
		return err
	}
	// The registry's timer retires expired rotation overlaps from its start,
	// before the check-in server exists.
	var checkins atomic.Pointer[checkin.Server]
	m.reg, err = registry.New(m.store, registry.Settings{OnEvent: onEvent, Decider: rf, Logger: m.log.With("component", "registry"), Clock: m.set.Clock, Rand: m.set.Rand,
		Registerer: reg, Params: params, EvalInterval: m.set.EvalInterval, FlushInterval: m.set.FlushInterval,
		VendorRedactionHash: redactpolicy.VendorHash(m.cfg.Redaction), SyncInterval: m.syncInterval(),
		// m.checkin exists before the server serves, and only requests change what is desired.
		OnDesiredChange:    func(ids []string) { m.checkin.Push(context.Background(), ids) },
		OnThresholdsChange: func(id string) { m.checkin.PushThresholds(context.Background(), id) },
		ThresholdDefaults:  m.cfg.Thresholds,
		OnTokensChange: func(id string) {
			if cs := checkins.Load(); cs != nil {
				cs.TokensChanged(context.Background(), id)
			}
		}})
	if err != nil {
		return err
	}
	rf.reg = m.reg
	if err := m.reg.Start(ctx); err != nil {
		return err
	}
	m.keys = tokens.New(m.store, m.set.Rand, m.set.Clock)
	if err := m.keys.Load(ctx); err != nil {
		return fmt.Errorf("load API tokens: %w", err)
	}
	if err := m.bootstrapAdmin(ctx); err != nil {
		return err
	}
	// The store writes each command's audit entries with the change itself.
	m.cmds, err = commands.New(m.store, m.reg, commands.Settings{Logger: m.log.With("component", "commands"), Clock: m.set.Clock, Rand: m.set.Rand,
		Registerer: reg,
		// m.checkin exists before the server serves, and only requests invoke commands.
		Push: func(ctx context.Context, ids []string) { m.checkin.PushCommands(ctx, ids) }})
	if err != nil {
		return err
	}
	m.checkin, err = checkin.New(m.reg, checkin.Settings{Logger: m.log.With("component", "checkin"), Registerer: reg, HeartbeatInterval: params.HeartbeatInterval,
		MaxMessageBytes: int64(m.cfg.MaxOpAMPMessageBytes), VendorRedaction: m.cfg.Redaction, Commands: m.cmds})
	if err != nil {
		return err
	}
	checkins.Store(m.checkin)
	if err := m.startTelemetry(ctx, reg); err != nil {
		return err
	}
	rc := m.cfg.Regression
	m.regress = regression.New(m.reg, m.tel, regression.Settings{
		Thresholds: regression.Thresholds{MinRequests: int64(rc.MinRequests), ErrorRateIncrease: rc.ErrorRateIncrease, ErrorRateRatio: rc.ErrorRateRatio,
			P95Increase: time.Duration(rc.P95Increase), P95Ratio: rc.P95Ratio},
		Window: time.Duration(rc.Window), Every: time.Duration(rc.CheckEvery), Clock: m.set.Clock, Logger: m.log.With("component", "regression")})
	m.auditSw, err = auditlog.New(m.store, auditlog.Settings{Retention: time.Duration(m.cfg.Audit.Retention), Clock: m.set.Clock,
		Logger: m.log.With("component", "audit")})
	if err != nil {
		return err
	}
	if err := m.startReplica(ctx, reg); err != nil {
		return err
	}
	httpMetrics := newHTTPMetrics(reg)

	mux := http.NewServeMux()
	a := api.New(m.reg, m.keys, m.log.With("component", "api")).WithTelemetry(m.tel, m.set.Clock).WithNotifications(m.notify).WithAudit(m.store).WithCommands(m.cmds).WithRollouts(m.rollouts)
	a.Register(mux)
	mux.Handle("/v1/opamp", m.checkin.Handler())
	(&receiver.HTTP{Consumer: m.ingest, MaxBytes: int64(m.cfg.MaxRequestBytes), Limiter: m.ingestLimit}).Register(mux)
	mux.Handle("GET "+ingest.ContextPath, ingest.ContextHandler(deployments{m.reg}))
	mux.HandleFunc("GET /healthz", m.healthz)
	mux.HandleFunc("GET /readyz", m.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	dash, err := web.New(m.reg, m.keys, web.Settings{Logger: m.log.With("component", "web"), Clock: m.set.Clock, Rand: m.set.Rand,
		Telemetry: m.tel, Notifications: m.notify, Audit: m.store, Sessions: m.store, Commands: m.cmds, Rollouts: m.rollouts, CheckinInterval: params.HeartbeatInterval})
	if err != nil {
		return err
	}
	dash.Register(mux)

	ln, err := m.listen(m.cfg.Listen, "h2", "http/1.1")
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.Listen, err)
	}
	m.ln = ln
	m.srv = &http.Server{
		Handler:           httpMetrics.wrap(mux),
		ConnContext:       m.checkin.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	// Open log tails end at shutdown instead of holding it up until the deadline.
	m.srv.RegisterOnShutdown(a.Close)
	m.srv.RegisterOnShutdown(dash.Close)
	m.group.Go(func() error {
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP server on %s: %w", ln.Addr(), err)
		}
		return nil
	})
	m.ready.Store(true)
	fleetAt := "data_dir"
	if postgres.IsURL(m.cfg.Storage) {
		fleetAt = "postgres" // never the URL, which may hold a password
	}
	m.log.Info("manager listening", "addr", ln.Addr().String(), "tls", m.tls != nil, "data_dir", m.cfg.DataDir, "fleet_store", fleetAt,
		"heartbeat_interval", params.HeartbeatInterval, "stale_after", params.StaleAfter)
	return nil
}

// Rollouts returns the rollout engine (for tests and the demo).
func (m *Manager) Rollouts() *rollouts.Engine { return m.rollouts }

// readyz answers 200 while the manager can do its work and 503 with the reason
// while it cannot: shutting down, or a fleet store that cannot write (a full
// disk), which it answers until the store can write again.
func (m *Manager) readyz(w http.ResponseWriter, r *http.Request) {
	if !m.ready.Load() {
		http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
		return
	}
	if err := m.store.Writable(r.Context()); err != nil {
		http.Error(w, "not ready: the fleet store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// bootstrapAdmin makes sure someone can administer the manager: the configured
// admin token is accepted, or, on a first start without one, a token is generated
// and shown once on the console.
func (m *Manager) bootstrapAdmin(ctx context.Context) error {
	const id = "bootstrap-admin"
	if m.cfg.AdminToken != "" {
		// Replicas deployed together start together with the same token: one
		// may add it, or remove it to add it again, between another's lookup
		// and add. Each round reads the tokens afresh; a round that loses the
		// race finds the winner's token in the next.
		var err error
		for range 5 {
			if err = m.keys.Load(ctx); err != nil {
				return fmt.Errorf("read API tokens: %w", err)
			}
			if t, ok := m.keys.Lookup(m.cfg.AdminToken); ok && t.Role == auth.RoleAdmin {
				return nil
			}
			// A rotated configured token replaces the previous one.
			if err := m.keys.Delete(ctx, auth.APIToken{}, id); err != nil && !errors.Is(err, registry.ErrNotFound) {
				return fmt.Errorf("rotate admin token: %w", err)
			}
			_, err = m.keys.Add(ctx, auth.APIToken{}, id, "admin (from configuration)", auth.RoleAdmin, m.cfg.AdminToken)
			if !errors.Is(err, store.ErrConflict) {
				return err
			}
		}
		return err
	}
	for _, t := range m.keys.List() {
		if t.Role == auth.RoleAdmin {
			return nil
		}
	}
	secret, t, err := m.keys.Create(ctx, auth.APIToken{}, "admin (generated on first start)", auth.RoleAdmin)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.set.Console, "\nAn admin API token was generated (id %s). It is shown only this once:\n\n    %s\n\nUse it as PERISCOPE_TOKEN for the CLI, or set admin_token / PERISCOPE_ADMIN_TOKEN to choose your own.\n\n", t.ID, secret)
	return nil
}

// Addr is the address the manager listens on (useful with port 0).
func (m *Manager) Addr() string { return m.ln.Addr().String() }

// URL is the manager's base URL: https:// when it serves TLS.
func (m *Manager) URL() string {
	if m.tls != nil {
		return "https://" + m.Addr()
	}
	return "http://" + m.Addr()
}

// listen binds addr, serving TLS on it (offering nextProtos) when the manager
// has a certificate.
func (m *Manager) listen(addr string, nextProtos ...string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || m.tls == nil {
		return ln, err
	}
	return tls.NewListener(ln, m.tls.Config(nextProtos...)), nil
}

// Registry exposes the live fleet to in-process callers (the demo, tests).
func (m *Manager) Registry() *registry.Registry { return m.reg }

// Commands returns the remote-command service (for tests that play an agent).
func (m *Manager) Commands() *commands.Service { return m.cmds }

// Wait blocks until the HTTP or the OTLP/gRPC server stops on its own (an error) or
// ctx ends.
func (m *Manager) Wait(ctx context.Context) error {
	if m.groupCtx == nil {
		return nil
	}
	select {
	case <-m.groupCtx.Done():
		if err := context.Cause(m.groupCtx); !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	case <-ctx.Done():
		return nil
	}
}

// Shutdown stops taking requests, closes push connections, writes pending fleet
// state and closes the store. It is idempotent and safe without Start.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.shutdownOnce.Do(func() {
		m.ready.Store(false)
		var errs []error
		// Both servers drain at once, so neither eats the other's share of the deadline.
		grpcDone := make(chan error, 1)
		go func() {
			if m.grpcSrv != nil {
				grpcDone <- m.grpcSrv.Shutdown(ctx)
			}
			close(grpcDone)
		}()
		if m.srv != nil {
			errs = append(errs, m.srv.Shutdown(ctx))
		}
		errs = append(errs, <-grpcDone)
		if m.stopBg != nil {
			m.stopBg()
			errs = append(errs, m.group.Wait())
		}
		if m.ingest != nil {
			errs = append(errs, m.ingest.Flush())
		}
		if m.fanout != nil {
			errs = append(errs, m.fanout.Shutdown(ctx))
		}
		if m.auditSw != nil {
			errs = append(errs, m.auditSw.Shutdown(ctx))
		}
		if m.regress != nil {
			errs = append(errs, m.regress.Shutdown(ctx))
		}
		// Before the registry, which a step in progress pins through.
		if m.rollouts != nil {
			errs = append(errs, m.rollouts.Shutdown(ctx))
		}
		if m.tel != nil {
			errs = append(errs, m.tel.Close())
		}
		if m.checkin != nil {
			errs = append(errs, m.checkin.Shutdown(ctx))
		}
		if m.cmds != nil {
			errs = append(errs, m.cmds.Shutdown(ctx))
		}
		if m.reg != nil {
			errs = append(errs, m.reg.Shutdown(ctx))
		}
		// After the registry, whose last evaluation may report changes; before
		// the store, which keeps what is still to be delivered.
		if m.notify != nil {
			errs = append(errs, m.notify.Shutdown(ctx))
		}
		if m.store != nil {
			errs = append(errs, m.store.Close())
		}
		m.shutdownErr = errors.Join(errs...)
		m.log.Info("manager stopped")
	})
	return m.shutdownErr
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	h := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_http_requests_total", Help: "HTTP requests by route pattern and status code."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "periscope_http_request_duration_seconds", Help: "HTTP request latency by route pattern.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route"}),
	}
	reg.MustRegister(h.requests, h.duration)
	return h
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

// Unwrap lets http.ResponseController reach the connection (WebSocket upgrades).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack passes WebSocket upgrades through to the connection.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack not supported")
	}
	return h.Hijack()
}

func (h *httpMetrics) wrap(next *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		h.requests.WithLabelValues(route, fmt.Sprint(rec.code)).Inc()
		h.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
