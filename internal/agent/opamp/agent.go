// Package opamp is the agent's check-in with the manager, run in each customer deployment. It
// checks in with the manager over OpAMP (WebSocket for push, HTTP polling for
// pull), describing its release, cloud, region and platform, its component health
// and its effective configuration, and applies the release the manager offers
// through the vendor's update hook. It stays pure Go: it must build with
// CGO_ENABLED=0 and link nothing of the manager's.
package opamp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
	"go.yaml.in/yaml/v3"

	"github.com/periscope-dev/periscope/internal/agent/reach"
	"github.com/periscope-dev/periscope/internal/agent/statefile"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/opamplog"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/thresholds"
	"github.com/periscope-dev/periscope/internal/tlsconfig"
)

// Version is the agent's own version, reported as service.version.
const Version = "0.1.0"

// ServiceName is the agent's service.name in its OpAMP description.
const ServiceName = "periscope-agent"

// Settings are the agent's collaborators; zero values are safe.
type Settings struct {
	Logger *slog.Logger
	// Env is the environment cloud detection reads and the update command starts
	// with (os.Environ() when nil).
	Env []string
	// Clock times update hooks for the logs (the wall clock when nil).
	Clock clock.Clock
	// RefusedRetry is how long to wait after the manager refuses the token
	// (DefaultRefusedRetry when zero).
	RefusedRetry time.Duration
	// OnRedaction, when set, is told the effective redaction policy each time the
	// manager's vendor policy changes it. It runs on the OpAMP client's goroutine;
	// the policy in force before that is Redaction's.
	OnRedaction func(redactpolicy.Effective)
	// Commands, when set, runs the remote commands the manager invokes: the
	// agent declares command.Capability, hands it command messages and the
	// commands each release offer declares, and reports the customer's rule.
	Commands Commands
	// OnThresholds, when set, is told each new set of thresholds the manager
	// sends. It runs on the OpAMP client's goroutine; the set in force before
	// that (kept from an earlier run, or none) is Thresholds'.
	OnThresholds func(thresholds.Set)
	// Reach, when set, is told each failed and successful connection and logs
	// the manager's changes of state; the check-in then logs no line of its
	// own per failed attempt.
	Reach *reach.Tracker
}

// Agent checks in with the manager. New validates; Start connects.
type Agent struct {
	cfg config.Agent
	log *slog.Logger
	// reach logs the manager's reachability once per change (nil: this
	// agent logs its own failures).
	reach *reach.Tracker
	env   []string
	clk   clock.Clock

	// hook is the parsed update command (nil for a webhook or no hook), hc the
	// webhook's client, killGrace how long a timed-out command has after SIGTERM.
	hook      *template.Template
	hc        *http.Client
	killGrace time.Duration
	// applyCtx ends running hooks at Shutdown; applies counts them.
	applyCtx    context.Context
	stopApplies context.CancelFunc
	applies     sync.WaitGroup

	mu         sync.Mutex
	components map[string]*protobufs.ComponentHealth
	client     client.OpAMPClient
	connected  bool
	started    time.Time
	det        Detected
	uid        [16]byte
	// tls is how the client trusts an https:// manager; read at Start.
	tls      *tls.Config
	stopOnce sync.Once

	// umu guards the release and the update state. It is held while statuses
	// go to the client so they reach it in order; take it before mu.
	umu      sync.Mutex
	release  string
	last     *outcome  // the latest answer to an offer that is not being applied
	running  *offerJob // the offer whose hook runs
	pending  *offerJob // the newest offer that arrived meanwhile
	stopping bool
	// reported is the last outcome handed to the client, which a replacing
	// client reports first.
	reported *outcome

	tokenState

	// rmu guards red, the vendor redaction policy; it is never held while
	// calling the client.
	rmu sync.Mutex
	red redaction

	cmds Commands

	// tmu guards thr, the deployment's thresholds; it is never held while
	// calling the client.
	tmu sync.Mutex
	thr thresholdState
}

// New validates cfg and returns an agent that has not connected yet.
func New(cfg config.Agent, s Settings) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid agent configuration:\n%w", err)
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Env == nil {
		s.Env = os.Environ()
	}
	a := &Agent{cfg: cfg, log: s.Logger, reach: s.Reach, env: s.Env, clk: clock.Or(s.Clock), components: map[string]*protobufs.ComponentHealth{},
		release: cfg.Release, hc: newWebhookClient(), killGrace: defaultKillGrace}
	a.refusedRetry, a.events = s.RefusedRetry, make(chan sessionEvent, 1)
	a.red.onRedaction = s.OnRedaction
	a.thr.onChange = s.OnThresholds
	a.cmds = s.Commands
	if a.refusedRetry <= 0 {
		a.refusedRetry = DefaultRefusedRetry
	}
	if cfg.Update.Command != "" {
		t, err := parseHookCommand(cfg.Update.Command)
		if err != nil {
			return nil, err
		}
		a.hook = t
	}
	a.applyCtx, a.stopApplies = context.WithCancel(context.Background())
	return a, nil
}

// ManagerTLS reads the files of cfg's manager_tls into the client TLS the
// agent uses towards an https:// manager, for OpAMP and for telemetry alike;
// nil for an http:// one.
func ManagerTLS(cfg config.Agent) (*tls.Config, error) {
	if !strings.HasPrefix(strings.ToLower(cfg.Manager), "https://") {
		return nil, nil
	}
	c, err := tlsconfig.Client(cfg.ManagerTLS)
	if err != nil {
		return nil, fmt.Errorf("manager_%w", err) // manager_tls: ca_file: …
	}
	return c, nil
}

// OpAMPURL turns the manager's base URL into its OpAMP endpoint for a transport.
func OpAMPURL(manager, transport string) (string, error) {
	u, err := url.Parse(manager)
	if err != nil {
		return "", fmt.Errorf("manager URL %q: %w", manager, err)
	}
	if transport == "websocket" {
		u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/opamp"
	return u.String(), nil
}

// Start loads (or creates) the agent's identity and its token and begins
// checking in. It returns once the client runs; connection failures are retried
// in the background.
func (a *Agent) Start(ctx context.Context) error {
	uid, err := a.instanceUID()
	if err != nil {
		return err
	}
	if _, err := OpAMPURL(a.cfg.Manager, a.cfg.Transport); err != nil {
		return err
	}
	if err := a.loadToken(); err != nil {
		return err
	}
	tlsConf, err := ManagerTLS(a.cfg)
	if err != nil {
		return err
	}
	stored := a.loadReleaseState()
	a.loadVendorRedaction()
	a.loadThresholds()
	det := Detect(a.env)
	a.mu.Lock()
	a.started, a.det, a.uid, a.startStatus, a.tls = time.Now(), det, uid, stored, tlsConf
	a.mu.Unlock()
	desc, err := a.connect(ctx, stored)
	if err != nil {
		return err
	}
	a.startSession(ctx)
	a.log.Info("agent started", "manager", a.cfg.Manager, "transport", a.cfg.Transport, "release", a.Release(), "update_hook", hookKind(a.cfg.Update),
		"cloud", attr(desc, "cloud.provider"), "region", attr(desc, "cloud.region"), "instance", uuid.UUID(uid).String())
	return nil
}

// connect starts a new OpAMP client with the agent's current state, reporting
// status as the last update outcome, and makes it the agent's client.
func (a *Agent) connect(ctx context.Context, status *protobufs.RemoteConfigStatus) (*protobufs.AgentDescription, error) {
	endpoint, err := OpAMPURL(a.cfg.Manager, a.cfg.Transport)
	if err != nil {
		return nil, err
	}
	stopping := new(atomic.Bool)
	lg := refusalWatcher{Logger: opamplog.Logger{L: a.log.With("component", "opamp")}, refused: a.refused, isRefused: a.refusedLogged.Load,
		quiet: a.reach != nil, stopping: stopping.Load}
	var oc client.OpAMPClient
	if a.cfg.Transport == "websocket" {
		oc = client.NewWebSocket(lg)
	} else {
		oc = client.NewHTTP(lg)
	}
	c := ownedClient{OpAMPClient: oc, stopping: stopping}
	a.mu.Lock()
	det, uid, tlsConf := a.det, a.uid, a.tls
	a.mu.Unlock()
	desc := a.description(det, a.Release())
	if err := c.SetAgentDescription(desc); err != nil {
		return nil, fmt.Errorf("agent description: %w", err)
	}
	if err := c.SetHealth(a.health()); err != nil {
		return nil, fmt.Errorf("agent health: %w", err)
	}
	caps := protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsHealth |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsEffectiveConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat |
		// The manager hands over a rotated token as an OpAMP connection
		// settings offer (see token.go).
		protobufs.AgentCapabilities_AgentCapabilities_AcceptsOpAMPConnectionSettings |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsConnectionSettingsStatus
	if a.cfg.Update.Enabled() {
		// Only an agent with a hook takes offers; without one the manager shows
		// the deployment as needing a manual redeploy.
		caps |= protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
			protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig
	}
	if err := c.SetCapabilities(&caps); err != nil {
		return nil, fmt.Errorf("agent capabilities: %w", err)
	}
	// The vendor's redaction policy and the deployment's thresholds arrive as
	// custom messages (redactpolicy, thresholds).
	custom := []string{redactpolicy.Capability, thresholds.Capability}
	if a.cmds != nil {
		custom = append(custom, command.Capability)
	}
	if err := c.SetCustomCapabilities(&protobufs.CustomCapabilities{Capabilities: custom}); err != nil {
		return nil, fmt.Errorf("agent custom capabilities: %w", err)
	}
	hb := time.Duration(a.cfg.HeartbeatInterval)
	settings := types.StartSettings{
		OpAMPServerURL:    endpoint,
		TLSConfig:         tlsConf,
		HeaderFunc:        a.authHeader,
		InstanceUid:       types.InstanceUid(uid),
		HeartbeatInterval: &hb,
		Callbacks: types.Callbacks{
			OnConnect: func(context.Context) {
				a.setConnected(true, nil)
				if a.cmds != nil {
					a.cmds.Resend() // results the manager may have missed while apart
				}
			},
			OnConnectFailed: func(_ context.Context, err error) { a.setConnected(false, err) },
			OnError: func(_ context.Context, e *protobufs.ServerErrorResponse) {
				a.log.Error("manager reported an error", "err", e.ErrorMessage)
			},
			GetEffectiveConfig:        a.effectiveConfig,
			OnMessage:                 a.onMessage,
			OnOpampConnectionSettings: a.onConnectionSettings,
		},
	}
	if a.cfg.Update.Enabled() && status != nil {
		// The manager learns the last outcome with the first message instead of
		// waiting for its next offer.
		settings.RemoteConfigStatus = status
	}
	// Set before Start: an offer may arrive before Start returns.
	a.mu.Lock()
	a.client = c
	a.mu.Unlock()
	if err := c.Start(ctx, settings); err != nil {
		a.mu.Lock()
		a.client = nil
		a.mu.Unlock()
		return nil, fmt.Errorf("start OpAMP client: %w", err)
	}
	return desc, nil
}

func attr(d *protobufs.AgentDescription, key string) string {
	for _, kv := range d.NonIdentifyingAttributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// setConnected logs transitions only, so a manager that is down for an hour does
// not fill the customer's disk with the same line.
func (a *Agent) setConnected(ok bool, err error) {
	a.mu.Lock()
	was := a.connected
	a.connected = ok
	a.mu.Unlock()
	switch {
	case ok:
		a.reach.OK()
		if !was {
			a.log.Info("connected to manager")
			a.refusedLogged.Store(false)
		}
	case !ok && errors.Is(err, websocket.ErrBadHandshake):
		// The manager answered with a status, which opamp-go logs next: a
		// refused token is said plainly by refused (token.go), another status
		// as opamp-go's line.
	case a.reach != nil:
		a.reach.Failed(err)
	case was || a.started.After(time.Now().Add(-time.Second)):
		a.log.Warn("cannot reach manager; retrying", "err", err)
	}
}

// Connected reports whether the last exchange with the manager succeeded.
func (a *Agent) Connected() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected
}

func hookKind(u config.AgentUpdate) string {
	switch {
	case u.Command != "":
		return "command"
	case u.Webhook != "":
		return "webhook"
	}
	return "none"
}

// description is what the agent tells the manager about itself; release is the
// one it runs now, which an update changes.
func (a *Agent) description(det Detected, release string) *protobufs.AgentDescription {
	str := func(k, v string) *protobufs.KeyValue {
		return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
	}
	host, _ := os.Hostname()
	pick := func(flag, detected string) string {
		if flag != "" {
			return flag
		}
		return detected
	}
	non := []*protobufs.KeyValue{str("host.name", host), str("os.type", "linux")}
	for _, kv := range [][2]string{
		{"periscope.release.version", release},
		{"cloud.provider", pick(a.cfg.Cloud, det.Cloud)},
		{"cloud.region", pick(a.cfg.Region, det.Region)},
		{"cloud.platform", pick(a.cfg.Platform, det.Platform)},
	} {
		if kv[1] != "" {
			non = append(non, str(kv[0], kv[1]))
		}
	}
	return &protobufs.AgentDescription{
		IdentifyingAttributes:    []*protobufs.KeyValue{str("service.name", ServiceName), str("service.version", Version)},
		NonIdentifyingAttributes: non,
	}
}

// SetComponentHealth records the health of one component the agent runs or
// watches and reports it at once.
func (a *Agent) SetComponentHealth(name string, healthy bool, lastError string) error {
	a.mu.Lock()
	status := "running"
	if !healthy {
		status = "failing"
	}
	a.components[name] = &protobufs.ComponentHealth{Healthy: healthy, Status: status, LastError: lastError, StatusTimeUnixNano: uint64(time.Now().UnixNano())}
	c := a.client
	a.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.SetHealth(a.health())
}

// SetTelemetryLoss reports what the agent dropped of the telemetry it had accepted
// since it started, by "<signal>/<reason>", and when the last record was dropped:
// a healthy component (fleet.LossComponent), so the manager shows the loss beside
// the deployment's status rather than instead of it.
func (a *Agent) SetTelemetryLoss(counts map[string]int64, last time.Time) error {
	a.mu.Lock()
	a.components[fleet.LossComponent] = &protobufs.ComponentHealth{Healthy: true, Status: fleet.FormatLossStatus(counts),
		StatusTimeUnixNano: uint64(last.UnixNano())}
	c := a.client
	a.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.SetHealth(a.health())
}

func (a *Agent) health() *protobufs.ComponentHealth {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := &protobufs.ComponentHealth{Healthy: true, Status: "running", StartTimeUnixNano: uint64(a.started.UnixNano()),
		ComponentHealthMap: map[string]*protobufs.ComponentHealth{}}
	names := make([]string, 0, len(a.components))
	for n, c := range a.components {
		h.ComponentHealthMap[n] = c
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if c := a.components[n]; !c.Healthy {
			h.Healthy, h.Status = false, "degraded"
			h.LastError = n + ": " + c.LastError
			break
		}
	}
	return h
}

// effectiveConfig reports the configuration in force, without the token, the
// webhook's secrets or the redaction hash key, and the effective redaction policy
// (redactpolicy.ReportFile), from which the manager learns which vendor policy the
// agent holds.
func (a *Agent) effectiveConfig(context.Context) (*protobufs.EffectiveConfig, error) {
	cfg := a.cfg
	cfg.Token = "<redacted>"
	if cfg.Redaction.HashKey != "" {
		cfg.Redaction.HashKey = "<redacted>"
	}
	if cfg.Update.Webhook != "" {
		cfg.Update.Webhook = redactWebhook(cfg.Update.Webhook)
	}
	if len(cfg.Update.WebhookHeaders) > 0 {
		h := make(map[string]string, len(cfg.Update.WebhookHeaders))
		for k := range cfg.Update.WebhookHeaders {
			h[k] = "<redacted>"
		}
		cfg.Update.WebhookHeaders = h
	}
	body, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
		"agent.yaml":            {Body: body, ContentType: "application/yaml"},
		redactpolicy.ReportFile: {Body: redactpolicy.EncodeReport(a.redactionReport()), ContentType: redactpolicy.ReportContentType},
		command.RuleFile:        {Body: command.EncodeRule(a.cfg.Commands), ContentType: "application/json"},
		thresholds.ReportFile:   {Body: thresholds.EncodeReport(a.thresholdsReport()), ContentType: thresholds.ContentType},
	}}}, nil
}

// instanceUID reads the agent's identity from its data directory, creating a new
// UUIDv7 the first time, so a restarted agent is the same instance.
func (a *Agent) instanceUID() ([16]byte, error) {
	var zero [16]byte
	path := filepath.Join(a.cfg.DataDir, "instance-uid")
	if b, err := os.ReadFile(path); err == nil {
		u, err := uuid.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			return zero, fmt.Errorf("agent identity %s is corrupt (%v): delete it to start as a new instance", path, err)
		}
		return u, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return zero, fmt.Errorf("read agent identity: %w", err)
	}
	u, err := uuid.NewV7FromReader(rand.Reader)
	if err != nil {
		return zero, err
	}
	if err := statefile.Write(a.cfg.DataDir, "instance-uid", []byte(u.String()+"\n")); err != nil {
		return zero, fmt.Errorf("write agent identity: %w", err)
	}
	return u, nil
}

// Shutdown stops checking in. A running update hook is stopped (SIGTERM, then
// SIGKILL) and recorded as interrupted. It is idempotent and safe without Start.
func (a *Agent) Shutdown(ctx context.Context) error {
	var err error
	a.stopOnce.Do(func() {
		a.umu.Lock()
		a.stopping, a.pending = true, nil
		a.umu.Unlock()
		a.stopApplies()
		a.stopSession()
		done := make(chan struct{})
		go func() { a.applies.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("update hook still stopping: %w", ctx.Err())
		}
		a.mu.Lock()
		c := a.client
		a.mu.Unlock()
		if c != nil {
			err = errors.Join(err, c.Stop(ctx))
		}
	})
	return err
}
