// Package agent is the agent's composition root: the one place that builds the parts
// running in a customer deployment and runs them together.
//
//	opamp     checks in with the manager, applies offered releases through the update hook
//	pipeline  OTLP receivers → tag → redact → disk queue → forward to the manager
//	record    the customer's local record of what was sent and removed (/report)
//	commands  runs the remote commands the manager invokes, under the customer's rule
//	context   keeps the pipeline's deployment context current from the manager
//	runtime   collects runtime signals (queues, storage, ingress proxies, workloads) into
//	          the pipeline, their health to opamp; runs the ingress proxies and, under
//	          the supervisor, the configured workloads
//
// Usage: New validates the configuration and starts nothing; Start opens the queues,
// binds the OTLP ports and connects, failing if any of that fails (so "address in
// use" is a startup error); Wait returns the first error of a part that stops on its
// own; Shutdown stops intake, lets in-flight requests finish and closes everything,
// keeping what is queued on disk. Shutdown is idempotent and safe without Start.
//
// The agent runs on customers' machines and stays pure Go: it must build with
// CGO_ENABLED=0 and link nothing under internal/manager (internal/archtest checks).
package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/periscope-dev/periscope/internal/agent/commands"
	"github.com/periscope-dev/periscope/internal/agent/forward"
	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/agent/pipeline"
	"github.com/periscope-dev/periscope/internal/agent/reach"
	"github.com/periscope-dev/periscope/internal/agent/record"
	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/ingress"
	"github.com/periscope-dev/periscope/internal/agent/runtime/supervisor"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Settings are the agent's collaborators; zero values are safe.
type Settings struct {
	// Logger receives the agent's logs, tagged by component; nil discards them.
	Logger *slog.Logger
	// Env is the environment cloud detection reads and the update command starts
	// with; nil means os.Environ().
	Env []string
	// Hostname names the agent in its self-metrics; empty means os.Hostname().
	Hostname string
	// LossInterval is the shortest time between two reports (log line and report
	// to the manager) of telemetry the agent dropped; zero means one minute.
	LossInterval time.Duration
	// RecordInterval is how often the local record writes what redaction removed;
	// zero means its default (10s).
	RecordInterval time.Duration
}

// Agent runs one deployment's agent: check-in, telemetry pipeline and deployment
// context, under one lifecycle.
type Agent struct {
	cfg config.Agent
	s   Settings
	log *slog.Logger

	checkin *opamp.Agent
	// reach logs the manager's reachability for the check-in, the
	// forwarders and the context fetch together.
	reach *reach.Tracker
	// otlp holds the OTLP listeners Start binds before the check-in, for the
	// pipeline to serve on.
	otlp otlpListeners
	cmds *commands.Runner
	// outRed redacts command output with the effective policy.
	outRed *outputRedactor
	// sources are the runtime-signal sources built from the configuration.
	sources []runtime.Source
	// proxies are the ingress proxies among sources, run from Start to
	// Shutdown.
	proxies []*ingress.Proxy
	// sup runs the configured workloads (nil without any), from before the
	// collector starts until after it stopped.
	sup *supervisor.Supervisor
	// healthTo is the collector a replica's change is reported through at
	// once; set before the supervisor starts.
	healthTo atomic.Pointer[runtime.Collector]
	// cmdRecord is the record command events go to; separate from mu, which
	// Start holds while the runner already records.
	cmdRecord atomic.Pointer[record.Record]

	// rmu orders redaction changes: the pipeline gets the newest effective
	// policy whether it changes before, while or after the pipeline is built.
	rmu      sync.Mutex
	redactTo *pipeline.Pipeline

	mu        sync.Mutex
	pipe      *pipeline.Pipeline
	collector *runtime.Collector
	record    *record.Record
	cancel    context.CancelFunc
	group     *errgroup.Group
	stopOnce  sync.Once
	stopErr   error
}

// New validates cfg and returns an agent that has started nothing.
func New(cfg config.Agent, s Settings) (*Agent, error) {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Env == nil {
		s.Env = os.Environ()
	}
	if s.Hostname == "" {
		s.Hostname, _ = os.Hostname()
	}
	// One tracker for every part that talks to the manager, so a manager
	// that is down is one warning, not one per part per retry.
	a := &Agent{cfg: cfg, s: s, log: s.Logger, reach: reach.New(s.Logger, nil, cfg.Manager, 0)}
	c, cmds, red, err := newCheckin(cfg, CheckinSettings{Logger: s.Logger, Env: s.Env, Reach: a.reach, OnRedaction: a.setRedaction,
		OnThresholds: a.setThresholds, Record: commandRecorder{a: a}})
	if err != nil {
		return nil, err
	}
	a.checkin, a.cmds, a.outRed = c, cmds, red
	// Validated here too, for the fields' names in the error: the sources'
	// constructors know only their own entry.
	if err := cfg.Runtime.Validate(); err != nil {
		return nil, err
	}
	// A workload's stderr and a container's log lines reach the manager as
	// their last error: redacted like a command's output, by the effective
	// policy.
	redact := func(line string) string { out, _ := a.outRed.redact(line); return out }
	a.sources, a.proxies, err = runtimeSources(cfg.Runtime, s.Env, s.Logger, redact)
	if err != nil {
		return nil, err
	}
	if len(cfg.Runtime.Workloads) > 0 {
		a.sup, err = supervisor.New(supervisor.Config{Workloads: cfg.Runtime.Workloads}, supervisor.Settings{
			Logger: s.Logger, Env: s.Env,
			Redact: redact,
			// A crash shows on the manager at once, not a round later.
			OnChange: func(c runtime.Component) {
				if col := a.healthTo.Load(); col != nil {
					col.Report(c)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("runtime.workloads: %w", err)
		}
		a.sources = append(a.sources, a.sup)
	}
	return a, nil
}

// Start connects to the manager, opens the queues and binds the OTLP ports. On error
// everything it started is stopped again.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.group != nil {
		return errors.New("agent already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	a.cancel, a.group = cancel, g
	// The record and the commands runner come first: an invocation may arrive
	// as soon as the check-in connects.
	rec, err := record.Open(record.Options{Dir: record.Dir(a.cfg.DataDir), FlushInterval: a.s.RecordInterval,
		Logger: a.log.With("component", "record")})
	if err == nil {
		err = rec.Start(gctx)
	}
	if err != nil {
		cancel()
		return fmt.Errorf("the agent's local record: %w", err)
	}
	a.record = rec
	a.cmdRecord.Store(rec)
	// The OTLP ports are bound before the check-in: a port in use is a
	// startup error at once, before a session opens under the deployment's
	// token and the manager sees an agent that then vanishes.
	if a.otlp, err = bindOTLP(a.cfg.OTLPGRPC, a.cfg.OTLPHTTP); err != nil {
		cancel()
		return errors.Join(err, rec.Shutdown(context.WithoutCancel(ctx)))
	}
	if err := a.cmds.Start(gctx); err != nil {
		cancel()
		return errors.Join(fmt.Errorf("remote commands: %w", err), a.otlp.close(), rec.Shutdown(context.WithoutCancel(ctx)))
	}
	if err := a.checkin.Start(gctx); err != nil {
		cancel()
		return errors.Join(err, a.otlp.close(), a.cmds.Shutdown(context.WithoutCancel(ctx)), rec.Shutdown(context.WithoutCancel(ctx)))
	}
	p, cs, err := a.newPipeline(rec)
	if err == nil {
		err = a.redactWith(p)
	}
	if err == nil {
		cs.Prime(p)
		err = p.Start(gctx)
		if err != nil {
			err = errors.Join(err, p.Shutdown(context.WithoutCancel(ctx)))
		}
	}
	if err != nil {
		cancel()
		return errors.Join(err, a.otlp.close(), a.cmds.Shutdown(context.WithoutCancel(ctx)), rec.Shutdown(context.WithoutCancel(ctx)),
			a.checkin.Shutdown(context.WithoutCancel(ctx)))
	}
	a.pipe = p
	g.Go(func() error { cs.Run(gctx, p); return nil })
	// After the pipeline, which takes the runtime signals, and the check-in,
	// which takes their health.
	if len(a.sources) > 0 {
		c, err := runtime.New(runtime.Settings{Sources: a.sources, Interval: time.Duration(a.cfg.Runtime.Interval),
			Timeout: time.Duration(a.cfg.Runtime.Timeout), Consumer: p, Health: a.checkin,
			Resource: a.resource(), Logger: a.log.With("component", "runtime"), Thresholds: a.checkin.Thresholds()})
		if err == nil {
			a.healthTo.Store(c)
			// A set that arrived between reading it and storing c.
			c.SetThresholds(a.checkin.Thresholds())
			// The proxies bind here, so an ingress address in use is a
			// startup error like an OTLP port in use.
			err = startProxies(gctx, a.proxies)
		}
		if err == nil && a.sup != nil {
			// Before the collector, whose first round then finds the
			// replicas started; a missing command is a startup error.
			if err = a.sup.Start(gctx); err != nil {
				err = errors.Join(fmt.Errorf("runtime.workloads: %w", err), shutdownProxies(context.WithoutCancel(ctx), a.proxies))
			}
		}
		if err == nil {
			if err = c.Start(gctx); err != nil {
				err = errors.Join(err, shutdownProxies(context.WithoutCancel(ctx), a.proxies), a.stopWorkloads(context.WithoutCancel(ctx)))
			}
		}
		if err != nil {
			cancel()
			return errors.Join(fmt.Errorf("runtime signals: %w", err), p.Shutdown(context.WithoutCancel(ctx)),
				a.cmds.Shutdown(context.WithoutCancel(ctx)), rec.Shutdown(context.WithoutCancel(ctx)), a.checkin.Shutdown(context.WithoutCancel(ctx)))
		}
		a.collector = c
	}
	return nil
}

// setThresholds applies a new set of thresholds from the manager to the
// runtime collector at once; before the collector exists, it reads the set in
// force when it is built.
func (a *Agent) setThresholds(s thresholds.Set) {
	if c := a.healthTo.Load(); c != nil {
		c.SetThresholds(s)
	}
}

// stopWorkloads stops the supervised workloads, if any, within ctx.
func (a *Agent) stopWorkloads(ctx context.Context) error {
	if a.sup == nil {
		return nil
	}
	return a.sup.Shutdown(ctx)
}

// resource is the resource of the agent's own telemetry (self-metrics and
// runtime signals); the pipeline adds the deployment context.
func (a *Agent) resource() map[string]string {
	return map[string]string{"service.name": opamp.ServiceName, "service.version": opamp.Version, "host.name": a.s.Hostname}
}

// redactWith makes p the pipeline redaction changes go to, and applies the
// effective policy in force if the manager changed it while p was being built.
func (a *Agent) redactWith(p *pipeline.Pipeline) error {
	a.rmu.Lock()
	defer a.rmu.Unlock()
	a.redactTo = p
	if e := a.checkin.Redaction(); e.Hash() != p.Redaction().Hash() {
		if err := p.SetRedaction(e); err != nil {
			return fmt.Errorf("redaction policy: %w", err)
		}
	}
	return nil
}

// setRedaction applies a changed effective policy (the manager's vendor policy
// changed it) to the pipeline, once there is one.
func (a *Agent) setRedaction(e redactpolicy.Effective) {
	a.rmu.Lock()
	defer a.rmu.Unlock()
	if a.redactTo == nil {
		return // redactWith applies the newest when the pipeline is built
	}
	if err := a.redactTo.SetRedaction(e); err != nil {
		a.log.Error("cannot apply the redaction policy; the previous one stays in force", "effective_hash", e.Hash(), "err", err)
	}
}

// Redaction returns the effective redaction policy the agent runs.
func (a *Agent) Redaction() redactpolicy.Effective { return a.checkin.Redaction() }

// newPipeline builds the telemetry path and the source of its deployment context.
func (a *Agent) newPipeline(rec *record.Record) (*pipeline.Pipeline, *pipeline.ContextSource, error) {
	cfg := a.cfg
	tlsConf, err := opamp.ManagerTLS(cfg)
	if err != nil {
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	onFull := queue.Refuse
	if cfg.Queue.OnFull == "drop_oldest" {
		onFull = queue.DropOldest
	}
	det := opamp.Detect(a.s.Env)
	pick := func(flag, detected string) string {
		if flag != "" {
			return flag
		}
		return detected
	}
	local := otlp.Context{Release: cfg.Release, Cloud: pick(cfg.Cloud, det.Cloud),
		Region: pick(cfg.Region, det.Region), Platform: pick(cfg.Platform, det.Platform)}
	hashKey, err := redactionHashKey(cfg)
	if err != nil {
		return nil, nil, err
	}
	p, err := pipeline.New(pipeline.Settings{
		GRPCAddr: cfg.OTLPGRPC, HTTPAddr: cfg.OTLPHTTP, MaxRequestBytes: int64(cfg.MaxRequestBytes),
		QueueDir: filepath.Join(cfg.DataDir, "queue"),
		Queue: queue.Options{MaxBytes: int64(cfg.Queue.MaxBytes), MaxAge: time.Duration(cfg.Queue.MaxAge),
			OnFull: onFull, Sync: cfg.Queue.Sync},
		GRPCListener: a.otlp.grpc, HTTPListener: a.otlp.http,
		Forward:             forward.Settings{Endpoint: cfg.Manager, TokenFunc: a.checkin.Token, Compression: cfg.Compression, TLS: tlsConf, Reach: a.reach},
		SelfMetricsInterval: time.Duration(cfg.SelfMetricsInterval),
		Resource:            a.resource(),
		LossInterval:        a.s.LossInterval,
		// The vendor policy kept by the last run is loaded by now (checkin.Start),
		// so the first record accepted is redacted by it.
		Redaction: a.checkin.Redaction(),
		HashKey:   hashKey,
		Recorder:  recorder{rec: rec, destination: cfg.Manager},
		Report:    record.Handler(record.Dir(cfg.DataDir), clock.Real{}),
		OnLoss: func(l pipeline.Loss) {
			if err := a.checkin.SetTelemetryLoss(l.Counts, l.Last); err != nil {
				a.log.Warn("could not report telemetry loss to the manager", "error", err)
			}
		},
		Logger:     a.log.With("component", "pipeline"),
		Registerer: reg,
		Gatherer:   reg,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry pipeline: %w", err)
	}
	cs := &pipeline.ContextSource{Manager: cfg.Manager, TokenFunc: a.checkin.Token, Local: local,
		CacheFile: filepath.Join(cfg.DataDir, "deployment-context.json"),
		Client:    &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsConf}}}
	return p, cs, nil
}

// recorder tells the local record what the pipeline sent and removed.
type recorder struct {
	rec         *record.Record
	destination string
}

func (r recorder) Sent(sig otlp.Signal, records, bytes int) {
	r.rec.Sent(sig.String(), records, bytes, r.destination)
}

func (r recorder) Removed(sig otlp.Signal, st *redact.Stats) {
	items := make([]record.Removal, len(st.Removals))
	for i, rm := range st.Removals {
		items[i] = record.Removal{Kind: rm.Reason.String(), Key: rm.Key, Count: rm.Count}
	}
	r.rec.Removed(sig.String(), items)
}

// commandRecorder writes the runner's events to the local record.
type commandRecorder struct{ a *Agent }

func (c commandRecorder) Command(ev commands.Event) {
	rec := c.a.cmdRecord.Load()
	if rec == nil {
		return
	}
	inv := ev.Invocation
	line := record.CommandEvent{Event: ev.Kind, ID: inv.ID, Command: inv.Command, By: inv.By, Why: inv.Reason,
		State: string(ev.State), Detail: ev.Reason}
	if len(inv.Params) > 0 {
		line.Params = make(map[string]string, len(inv.Params))
		for k, v := range inv.Params {
			line.Params[k] = command.String(v)
		}
	}
	if r := ev.Result; r != nil {
		line.ExitCode, line.Signal, line.HTTPStatus = r.ExitCode, r.Signal, r.HTTPStatus
		line.OutputBytes, line.OutputSHA256, line.Truncated = r.OutputBytes, r.OutputSHA256, r.Truncated
		line.Redacted, line.DurationMS = r.Redacted, r.Duration.Milliseconds()
	}
	rec.Command(line)
}

// redactionHashKey returns the key of the redaction's hash action: the customer's
// own from the configuration, else a random key kept in the data directory, so hashed
// values stay joinable across restarts yet the vendor cannot recompute them.
func redactionHashKey(cfg config.Agent) ([]byte, error) {
	if cfg.Redaction.HashKey != "" {
		return []byte(cfg.Redaction.HashKey), nil
	}
	path := filepath.Join(cfg.DataDir, "redaction-hash.key")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the redaction hash key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("make a redaction hash key: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create agent data directory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, fmt.Errorf("save the redaction hash key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("save the redaction hash key: %w", err)
	}
	return key, nil
}

// Addrs returns the bound OTLP addresses (empty when disabled or not started).
func (a *Agent) Addrs() (grpcAddr, httpAddr string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pipe == nil {
		return "", ""
	}
	return a.pipe.Addrs()
}

// Wait blocks until a part of the agent stops on its own, returning its error, or
// until Shutdown has stopped them all (nil). It returns at once without Start.
func (a *Agent) Wait() error {
	a.mu.Lock()
	g := a.group
	a.mu.Unlock()
	if g == nil {
		return nil
	}
	return g.Wait()
}

// Shutdown stops the pipeline (what is not sent stays queued on disk) and the
// check-in, within ctx's deadline. It is idempotent and safe without Start.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.stopOnce.Do(func() {
		a.mu.Lock()
		p, rec, cancel, g, coll := a.pipe, a.record, a.cancel, a.group, a.collector
		a.mu.Unlock()
		var errs []error
		if coll != nil {
			// The proxies drain first, so requests in progress end answered,
			// then the collector, then the workloads (their last states still
			// reach the check-in); all before the pipeline they feed.
			errs = append(errs, shutdownProxies(ctx, a.proxies), coll.Shutdown(ctx), a.stopWorkloads(ctx))
		}
		if p != nil {
			errs = append(errs, p.Shutdown(ctx))
		}
		// Running commands end failed and their outcomes go out while the
		// check-in still runs; the record hears of them before it closes.
		errs = append(errs, a.cmds.Shutdown(ctx))
		if rec != nil {
			// After the pipeline: its forwarders' last deliveries are recorded too.
			errs = append(errs, rec.Shutdown(ctx))
		}
		if cancel != nil {
			cancel()
		}
		if g != nil {
			errs = append(errs, g.Wait())
		}
		errs = append(errs, a.checkin.Shutdown(ctx))
		a.stopErr = errors.Join(errs...)
	})
	return a.stopErr
}

// otlpListeners are the agent's bound OTLP ports; nil for one turned off.
type otlpListeners struct{ grpc, http net.Listener }

// bindOTLP listens on the OTLP addresses ("" or "off" leaves one off).
func bindOTLP(grpcAddr, httpAddr string) (otlpListeners, error) {
	var l otlpListeners
	var err error
	on := func(addr string) bool { return addr != "" && addr != "off" }
	if on(httpAddr) {
		if l.http, err = net.Listen("tcp", httpAddr); err != nil {
			return l, fmt.Errorf("OTLP/HTTP listener on %s (otlp_http): %w", httpAddr, err)
		}
	}
	if on(grpcAddr) {
		if l.grpc, err = net.Listen("tcp", grpcAddr); err != nil {
			return l, errors.Join(fmt.Errorf("OTLP/gRPC listener on %s (otlp_grpc): %w", grpcAddr, err), l.close())
		}
	}
	return l, nil
}

// close closes the listeners not yet handed to a started pipeline; one
// already closed by it answers net.ErrClosed, which is not a failure here.
func (l otlpListeners) close() error {
	var errs []error
	for _, lis := range []net.Listener{l.grpc, l.http} {
		if lis != nil {
			if err := lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
