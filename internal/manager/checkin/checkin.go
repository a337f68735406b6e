// Package checkin is the manager's side of OpAMP: it authenticates each agent by
// its deployment token, turns what the agent reports into a registry check-in, and
// keeps the open WebSocket connections of push deployments.
//
// Identity comes from the token alone. Whatever instance id or attributes an agent
// claims, its check-in is recorded on the deployment its token belongs to.
package checkin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/open-telemetry/opamp-go/server"
	"github.com/open-telemetry/opamp-go/server/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/desired"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/opamplog"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Attribute keys an agent uses in its OpAMP agent description.
const (
	AttrServiceName    = "service.name"
	AttrServiceVersion = "service.version"
	AttrRelease        = "periscope.release.version"
	AttrCloudProvider  = "cloud.provider"
	AttrCloudRegion    = "cloud.region"
	AttrCloudPlatform  = "cloud.platform"
)

// Fleet is what the check-in server needs of the fleet registry.
type Fleet interface {
	Authenticate(token string) (id string, ok bool)
	Checkin(id string, rep registry.Report) (knewAgent bool, err error)
	Disconnected(id string)
	// Offer returns the release offer for deployment id and whether it must be sent.
	Offer(id string) (desired.Offer, bool)
	// TokenValid reports whether the token with hash h still admits deployment
	// id and, when its agent should move to a rotated token, that token.
	TokenValid(id, h string) (valid bool, offer string)
	// RedactionState returns what the agent last reported of its redaction
	// policy, and whether it reported its state at all since the manager started.
	RedactionState(id string) (rep *redactpolicy.Report, heard bool, err error)
	// ThresholdsState returns the deployment's thresholds, what its agent last
	// reported holding (nil when it reports none), and whether it reported
	// its state at all since the manager started.
	ThresholdsState(id string) (set thresholds.Set, rep *thresholds.Report, heard bool, err error)
}

// Settings are the server's collaborators; zero values are safe.
type Settings struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// HeartbeatInterval is offered to agents that accept it (whole seconds only,
	// as OpAMP carries it; shorter intervals are not offered).
	HeartbeatInterval time.Duration
	// MaxMessageBytes bounds one OpAMP message after decompression: a larger
	// polling request gets 413, a larger WebSocket message closes the connection
	// with code 1009. Zero means DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// VendorRedaction is the vendor's redaction policy, sent to every Periscope
	// agent that holds another (the default policy when zero).
	VendorRedaction redactpolicy.Policy
	// Commands exchanges remote-command messages with agents; nil runs none.
	Commands Commands
}

// Commands is what the check-in server needs of the remote-command service.
type Commands interface {
	// Outgoing returns the message deployment id's agent should get now, if
	// any, and the function to call once it is on its way.
	Outgoing(ctx context.Context, id string) (msg *protobufs.CustomMessage, sent func())
	// Incoming handles a commands message from deployment id and returns the
	// reply, if any.
	Incoming(ctx context.Context, id string, msg *protobufs.CustomMessage) *protobufs.CustomMessage
}

// Server handles /v1/opamp. Create with New; mount Handler and set ConnContext on
// the http.Server.
type Server struct {
	fleet   Fleet
	log     *slog.Logger
	hb      time.Duration
	limit   int64
	handler http.Handler
	connCtx func(context.Context, net.Conn) context.Context

	// vendorMsg carries the vendor redaction policy, vendorHash names it.
	vendorMsg  *protobufs.CustomMessage
	vendorHash string
	commands   Commands
	// commandsTurn marks the deployments whose next reply gives the one custom
	// message slot to commands rather than the redaction policy; it holds only
	// deployments for which both wanted the slot.
	turnMu       sync.Mutex
	commandsTurn map[string]bool

	mu    sync.Mutex
	conns map[string]types.Connection // deployment id → its open WebSocket
	// connToken is the hash of the token each open WebSocket was admitted with.
	connToken map[string]string

	checkins *prometheus.CounterVec
	rejected *prometheus.CounterVec
	offers   prometheus.Counter
	policies prometheus.Counter
	latency  prometheus.Histogram
	open     prometheus.GaugeFunc
}

// New returns a check-in server for f.
func New(f Fleet, s Settings) (*Server, error) {
	cs := &Server{fleet: f, log: s.Logger, hb: s.HeartbeatInterval, limit: s.MaxMessageBytes, conns: map[string]types.Connection{}, connToken: map[string]string{},
		commands: s.Commands, commandsTurn: map[string]bool{}}
	cs.vendorMsg, cs.vendorHash = redactpolicy.PolicyMessage(s.VendorRedaction), redactpolicy.VendorHash(s.VendorRedaction)
	if cs.limit <= 0 {
		cs.limit = DefaultMaxMessageBytes
	}
	if cs.log == nil {
		cs.log = slog.New(slog.DiscardHandler)
	}
	cs.checkins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_checkins_total", Help: "OpAMP messages accepted, by transport."}, []string{"transport"})
	cs.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_checkins_rejected_total", Help: "OpAMP connections refused, by reason."}, []string{"reason"})
	cs.offers = prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_release_offers_total", Help: "Desired-release offers sent to agents (in replies and pushed)."})
	cs.policies = prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_redaction_policies_sent_total", Help: "Vendor redaction policies sent to agents that held another."})
	cs.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "periscope_checkin_duration_seconds", Help: "Time to process one OpAMP message.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	cs.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "periscope_opamp_push_connections", Help: "Open WebSocket (push) connections."}, func() float64 {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return float64(len(cs.conns))
	})
	if s.Registerer != nil {
		for _, c := range []prometheus.Collector{cs.checkins, cs.rejected, cs.offers, cs.policies, cs.latency, cs.open} {
			if err := s.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("checkin: register metrics: %w", err)
			}
		}
	}
	srv := server.New(opamplog.Logger{L: cs.log.With("component", "opamp")})
	// No permessage-deflate: the WebSocket read limit counts bytes on the wire,
	// which a compressed message could inflate a thousandfold past.
	h, connCtx, err := srv.Attach(server.Settings{Callbacks: types.Callbacks{OnConnecting: cs.onConnecting}})
	if err != nil {
		return nil, fmt.Errorf("checkin: attach OpAMP server: %w", err)
	}
	cs.handler, cs.connCtx = bounded(cs.limit, http.HandlerFunc(h)), connCtx
	return cs, nil
}

// Handler serves OpAMP over both HTTP polling and WebSocket.
func (s *Server) Handler() http.Handler { return s.handler }

// ConnContext must be set as the http.Server's ConnContext: OpAMP over plain HTTP
// needs the underlying connection.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return s.connCtx(ctx, c)
}

// Shutdown closes every open WebSocket so agents reconnect elsewhere.
func (s *Server) Shutdown(context.Context) error {
	s.mu.Lock()
	conns := s.conns
	s.conns = map[string]types.Connection{}
	s.mu.Unlock()
	var errs []error
	for _, c := range conns {
		if err := c.Disconnect(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Push sends each listed deployment that holds an open push connection its
// release offer now, if it needs one, a few at a time. It returns how many
// offers were sent; deployments that poll get theirs at their next check-in.
func (s *Server) Push(ctx context.Context, ids []string) int {
	type job struct {
		id string
		c  types.Connection
	}
	s.mu.Lock()
	jobs := make([]job, 0, len(ids))
	for _, id := range ids {
		if c, ok := s.conns[id]; ok {
			jobs = append(jobs, job{id, c})
		}
	}
	s.mu.Unlock()
	var (
		sent atomic.Int64
		wg   sync.WaitGroup
		next = make(chan job)
	)
	for range min(len(jobs), pushWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				o, need := s.fleet.Offer(j.id)
				if !need {
					continue
				}
				sctx, cancel := context.WithTimeout(ctx, pushTimeout)
				err := j.c.Send(sctx, &protobufs.ServerToAgent{RemoteConfig: desired.Encode(o)})
				cancel()
				if err != nil {
					// The agent gets the offer at its next message instead.
					s.log.Debug("push of release offer failed", "deployment", j.id, "err", err)
					continue
				}
				s.offers.Inc()
				sent.Add(1)
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	return int(sent.Load())
}

// pushWorkers bounds concurrent sends so a fleet-wide pin does not start 100,000
// goroutines, while one slow connection does not hold up the rest.
const pushWorkers = 64

// pushTimeout bounds one send; a connection that cannot take a small message in
// this time is as good as gone.
const pushTimeout = 10 * time.Second

// Connected reports whether deployment id holds an open push connection.
func (s *Server) Connected(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.conns[id]
	return ok
}

func (s *Server) onConnecting(req *http.Request) types.ConnectionResponse {
	tok, ok := auth.BearerToken(req.Header.Get("Authorization"))
	if !ok {
		s.rejected.WithLabelValues("missing_token").Inc()
		return types.ConnectionResponse{HTTPStatusCode: http.StatusUnauthorized, HTTPResponseHeader: map[string]string{"WWW-Authenticate": `Bearer realm="periscope"`}}
	}
	id, ok := s.fleet.Authenticate(tok)
	if !ok {
		s.rejected.WithLabelValues("bad_token").Inc()
		s.log.Debug("OpAMP connection with unknown token refused", "remote", req.RemoteAddr)
		return types.ConnectionResponse{HTTPStatusCode: http.StatusUnauthorized, HTTPResponseHeader: map[string]string{"WWW-Authenticate": `Bearer realm="periscope", error="invalid_token"`}}
	}
	mode, transport := fleet.ModePull, "http"
	if strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		mode, transport = fleet.ModePush, "websocket"
	}
	c := &conn{s: s, id: id, tokenHash: auth.Hash(tok), mode: mode, checkins: s.checkins.WithLabelValues(transport)}
	return types.ConnectionResponse{Accept: true, ConnectionCallbacks: types.ConnectionCallbacks{
		OnConnected:       c.onConnected,
		OnMessage:         c.onMessage,
		OnConnectionClose: c.onClose,
	}}
}

// conn is one authenticated OpAMP connection (one request, for HTTP polling).
type conn struct {
	s         *Server
	id        string
	tokenHash string
	mode      fleet.Mode
	checkins  prometheus.Counter
	sentHB    bool
}

func (c *conn) onConnected(_ context.Context, tc types.Connection) {
	if c.mode != fleet.ModePush {
		return
	}
	if !limitWebSocket(tc, c.s.limit) {
		// Unbounded messages could take the manager's memory: refuse the
		// connection rather than serve it.
		c.s.log.Error("cannot bound OpAMP WebSocket messages; connection refused", "deployment", c.id)
		_ = tc.Disconnect()
		return
	}
	c.s.mu.Lock()
	old := c.s.conns[c.id]
	c.s.conns[c.id] = tc
	c.s.connToken[c.id] = c.tokenHash
	c.s.mu.Unlock()
	if old != nil && old != tc {
		// A deployment has one agent; a second connection with its token replaces the first.
		_ = old.Disconnect()
	}
	c.s.log.Debug("push connection opened", "deployment", c.id)
}

func (c *conn) onClose(tc types.Connection) {
	if c.mode != fleet.ModePush {
		return
	}
	c.s.mu.Lock()
	current := c.s.conns[c.id] == tc
	if current {
		delete(c.s.conns, c.id)
		delete(c.s.connToken, c.id)
	}
	c.s.mu.Unlock()
	if current {
		c.s.fleet.Disconnected(c.id)
		c.s.log.Debug("push connection closed", "deployment", c.id)
	}
}

func (c *conn) onMessage(ctx context.Context, _ types.Connection, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	start := time.Now()
	defer func() { c.s.latency.Observe(time.Since(start).Seconds()) }()
	c.checkins.Inc()
	rep := Report(msg)
	rep.Mode = c.mode
	resp := &protobufs.ServerToAgent{
		InstanceUid: msg.InstanceUid,
		Capabilities: uint64(protobufs.ServerCapabilities_ServerCapabilities_AcceptsStatus | protobufs.ServerCapabilities_ServerCapabilities_AcceptsEffectiveConfig |
			protobufs.ServerCapabilities_ServerCapabilities_OffersConnectionSettings | protobufs.ServerCapabilities_ServerCapabilities_OffersRemoteConfig),
	}
	known, err := c.s.fleet.Checkin(c.id, rep)
	if err != nil {
		// The deployment was authenticated moments ago; it can only be gone if
		// deleted meanwhile. Tell the agent rather than pretend.
		resp.ErrorResponse = &protobufs.ServerErrorResponse{Type: protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest, ErrorMessage: "deployment no longer exists"}
		return resp
	}
	if msg.AgentDescription == nil && !known {
		// The manager has not heard this agent's full state (new, or the manager
		// restarted): ask for it instead of waiting for the next change.
		resp.Flags = uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)
	}
	c.s.reconcileRedaction(c.id, msg, resp)
	c.s.exchangeCommands(ctx, c.id, msg, resp)
	c.s.reconcileThresholds(c.id, resp)
	if resp.CustomMessage != nil && resp.CustomMessage == c.s.vendorMsg {
		c.s.policies.Inc()
	}
	if o, send := c.s.fleet.Offer(c.id); send {
		resp.RemoteConfig = desired.Encode(o)
		c.s.offers.Inc()
	}
	if offer := c.tokenOffer(); offer != nil {
		resp.ConnectionSettings = offer
		c.sentHB = true
	} else if !c.sentHB && c.s.hb >= time.Second && c.s.hb%time.Second == 0 {
		resp.ConnectionSettings = &protobufs.ConnectionSettingsOffers{Opamp: &protobufs.OpAMPConnectionSettings{HeartbeatIntervalSeconds: uint64(c.s.hb / time.Second)}}
		c.sentHB = true
	}
	return resp
}

// Report converts an OpAMP message into a registry check-in. Parts the agent did
// not send this time stay nil.
func Report(msg *protobufs.AgentToServer) registry.Report {
	var rep registry.Report
	if u, err := uuid.FromBytes(msg.InstanceUid); err == nil {
		rep.InstanceUID = u.String()
	}
	if d := msg.AgentDescription; d != nil {
		attrs := map[string]string{}
		for _, kv := range append(append([]*protobufs.KeyValue{}, d.IdentifyingAttributes...), d.NonIdentifyingAttributes...) {
			if s := kv.GetValue().GetStringValue(); s != "" {
				attrs[kv.Key] = s
			}
		}
		agentVersion := attrs[AttrServiceVersion]
		if agentVersion == "" {
			agentVersion = "unknown"
		}
		if n := attrs[AttrServiceName]; n != "" {
			agentVersion = n + "/" + agentVersion
		}
		rep.Description = &registry.Description{
			Release: attrs[AttrRelease], AgentVersion: agentVersion,
			Cloud: attrs[AttrCloudProvider], Region: attrs[AttrCloudRegion], Platform: attrs[AttrCloudPlatform],
		}
	}
	if h := msg.Health; h != nil {
		fh := fleet.Health{Reported: true, Healthy: h.Healthy, Status: h.Status, LastError: h.LastError}
		flattenHealth("", h.ComponentHealthMap, &fh)
		if !fh.Healthy && (isStarting(fh.Status) || startingOnly(fh)) {
			// Components still starting (the Collector reports them not healthy
			// for a moment) are not an outage: do not flap to unhealthy on boot.
			fh.Healthy = true
		}
		rep.Health = &fh
		rep.Loss = lossReport(h)
	}
	if msg.Capabilities != 0 {
		accepts := msg.Capabilities&uint64(protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig) != 0
		rep.AcceptsReleases = &accepts
	}
	if st := msg.RemoteConfigStatus; st != nil && len(st.LastRemoteConfigHash) > 0 {
		phase := map[protobufs.RemoteConfigStatuses]fleet.UpdatePhase{
			protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING: fleet.UpdateApplying,
			protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED:  fleet.UpdateApplied,
			protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED:   fleet.UpdateFailed,
		}[st.Status]
		if phase != fleet.UpdateNone {
			rep.Offer = &registry.OfferStatus{Hash: hex.EncodeToString(st.LastRemoteConfigHash), Phase: phase, Error: st.ErrorMessage}
		}
	}
	if ec := msg.EffectiveConfig; ec != nil && ec.ConfigMap != nil {
		hash := ConfigHash(ec.ConfigMap)
		rep.ConfigHash = &hash
		rep.Commands = commandRule(ec.ConfigMap)
		rep.Redaction = &registry.RedactionReport{}
		if r, err := redactpolicy.ReportFromConfig(ec.ConfigMap); err == nil {
			rep.Redaction.Report = &r
		}
		rep.Thresholds = &registry.ThresholdsReport{}
		if r, err := thresholds.ReportFromConfig(ec.ConfigMap); err == nil {
			rep.Thresholds.Report = &r
		}
	}
	return rep
}

// lossReport reads the telemetry loss a Periscope agent reports as a component of
// its health (fleet.LossComponent); nil when there is none or it is malformed.
func lossReport(h *protobufs.ComponentHealth) *registry.LossReport {
	ch := h.ComponentHealthMap[fleet.LossComponent]
	if ch == nil {
		return nil
	}
	counts, err := fleet.ParseLossStatus(ch.Status)
	if err != nil {
		return nil
	}
	rep := &registry.LossReport{RunStart: unixNano(h.StartTimeUnixNano), Counts: counts}
	if len(counts) > 0 {
		rep.Last = unixNano(ch.StatusTimeUnixNano)
	}
	return rep
}

// unixNano converts an OpAMP timestamp; zero stays the zero time.
func unixNano(ns uint64) time.Time {
	if ns == 0 || ns > math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).UTC()
}

// flattenHealth records the leaves of a nested component health map as
// "parent/child" names, which is how people refer to collector pipelines.
func flattenHealth(prefix string, m map[string]*protobufs.ComponentHealth, out *fleet.Health) {
	for name, ch := range m {
		full := name
		if prefix != "" {
			full = prefix + "/" + name
		}
		if len(ch.ComponentHealthMap) > 0 {
			flattenHealth(full, ch.ComponentHealthMap, out)
			continue
		}
		if out.Components == nil {
			out.Components = map[string]fleet.ComponentHealth{}
		}
		c := fleet.ComponentHealth{Healthy: ch.Healthy, Status: ch.Status, LastError: ch.LastError}
		if status, restarts, lastError, ok := fleet.ParseComponentError(ch.LastError); ok {
			// A watched component (a supervised replica, a container): its own
			// status and restart count travel in last_error.
			c.Status, c.Restarts, c.LastError, c.Watched = status, restarts, lastError, true
		}
		// A watched component names its own statuses: only "starting" is one
		// coming up ("restarting" after a crash is not).
		c.Healthy = c.Healthy || c.Watched && c.Status == "starting" || !c.Watched && isStarting(c.Status)
		out.Components[full] = c
	}
}

func isStarting(status string) bool { return strings.Contains(strings.ToLower(status), "starting") }

// startingOnly reports an unhealthy report whose only unhealthy parts are starting.
// A Periscope agent's own last error names the first unhealthy component
// ("worker/0: starting; restarts 0"), which does not make it an outage when
// that component is one still starting.
func startingOnly(h fleet.Health) bool {
	if h.Healthy || len(h.Components) == 0 {
		return false
	}
	explained := h.LastError == ""
	for name, c := range h.Components {
		if !c.Healthy {
			return false
		}
		if !explained && isStarting(c.Status) && strings.HasPrefix(h.LastError, name+": ") {
			explained = true
		}
	}
	return explained
}

// ConfigHash is the stable digest of an effective configuration: files in name
// order, each with its content type and body.
func ConfigHash(cm *protobufs.AgentConfigMap) string {
	names := make([]string, 0, len(cm.ConfigMap))
	for n := range cm.ConfigMap {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		f := cm.ConfigMap[n]
		fmt.Fprintf(h, "%d:%s%d:%s%d:", len(n), n, len(f.ContentType), f.ContentType, len(f.Body))
		h.Write(f.Body)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
