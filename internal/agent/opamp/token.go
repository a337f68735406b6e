package opamp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/agent/statefile"
	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/retry"
)

// The agent's deployment token, and what happens when it changes or is refused.
//
// An operator who rotates a deployment's token has the manager offer the new one
// as an OpAMP connection settings offer (an Authorization header). The agent keeps
// it in its data directory (0600), so a restart uses it, and checks in with it at
// once: a polling agent at its next poll, a connected one by reconnecting. The
// manager retires the old token when the agent first uses the new one.
//
// A manager that refuses the token (401 or 403: revoked, rotated away, or never
// valid) is said once, plainly, and the agent stops knocking: it waits the slow
// refused-token interval before it tries again, instead of opamp-go's retry.

// TokenFile is the file in the data directory that keeps a token the manager
// handed over, so a restarted agent uses the rotated token rather than the
// configured one the manager has since retired.
const TokenFile = "deployment-token"

// DefaultRefusedRetry is how long an agent whose token the manager refused waits
// before it tries again. A refused token needs an operator, not a retry.
const DefaultRefusedRetry = 5 * time.Minute

// tokenShape is what the agent accepts as a deployment token from the manager
// or its token file: the prefix and letters, digits, '-' or '_' (what goes into
// an HTTP header unquoted), so a garbled offer is refused, not kept.
var tokenShape = regexp.MustCompile(`^` + auth.PrefixDeployment + `[A-Za-z0-9_-]{1,256}$`)

// savedToken is TokenFile's content.
type savedToken struct {
	Token string `json:"token"`
	// Configured is the hash of the configured token this one replaced: a
	// different token configured since (the operator set a new one) wins.
	Configured string `json:"configured_hash"`
}

// tokenState is the agent's token and its session supervision; it is part of
// Agent.
type tokenState struct {
	token atomic.Pointer[string]
	// refusedLogged keeps a refused token to one log line until the manager
	// accepts the agent again.
	refusedLogged atomic.Bool
	refusedRetry  time.Duration
	// events wakes the session loop: a refused token, or a new token that a
	// push connection must reconnect with.
	events       chan sessionEvent
	stopSessions context.CancelFunc
	sessions     sync.WaitGroup
	// startStatus is the update status read at Start, which a replacing client
	// reports while this run has reported none.
	startStatus *protobufs.RemoteConfigStatus
}

type sessionEvent int

const (
	eventRefused sessionEvent = iota + 1
	eventRotated
)

// Token returns the deployment token in force, which a rotation changes while
// the agent runs; the telemetry forwarder reads it for every request.
func (a *Agent) Token() string {
	if t := a.token.Load(); t != nil {
		return *t
	}
	return a.cfg.Token
}

// loadToken picks the token to start with: a rotated one kept on disk, unless
// the operator has configured a different token since.
func (a *Agent) loadToken() error {
	tok := a.cfg.Token
	path := filepath.Join(a.cfg.DataDir, TokenFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read rotated deployment token: %w", err)
	default:
		var st savedToken
		if err := json.Unmarshal(b, &st); err != nil || !tokenShape.MatchString(st.Token) {
			return fmt.Errorf("rotated deployment token %s is corrupt: delete it to use the configured token", path)
		}
		if st.Configured == auth.Hash(a.cfg.Token) {
			tok = st.Token
		} else {
			a.log.Info("a different deployment token is configured since the manager rotated the last one: using the configured token", "path", path)
		}
	}
	a.token.Store(&tok)
	return nil
}

// saveToken keeps a token the manager handed over, written whole (temporary
// file and rename) so a crash leaves the old file or the new one.
func (a *Agent) saveToken(tok string) error {
	b, err := json.Marshal(savedToken{Token: tok, Configured: auth.Hash(a.cfg.Token)})
	if err != nil {
		return err
	}
	if err := statefile.Write(a.cfg.DataDir, TokenFile, append(b, '\n')); err != nil {
		return fmt.Errorf("write rotated deployment token: %w", err)
	}
	return nil
}

// authHeader adds the token in force to each OpAMP request and handshake.
func (a *Agent) authHeader(h http.Header) http.Header {
	h.Set("Authorization", "Bearer "+a.Token())
	return h
}

// onConnectionSettings takes a token the manager offers in an Authorization
// header. Returning an error reports the offer as failed to the manager, which
// keeps the old token valid.
func (a *Agent) onConnectionSettings(_ context.Context, s *protobufs.OpAMPConnectionSettings) error {
	var offered string
	for _, h := range s.GetHeaders().GetHeaders() {
		if strings.EqualFold(h.Key, "Authorization") {
			offered, _ = auth.BearerToken(h.Value)
		}
	}
	if offered == "" || offered == a.Token() {
		return nil // a heartbeat offer, or one already taken
	}
	if !tokenShape.MatchString(offered) {
		return fmt.Errorf("offered token is not a deployment token (%s…)", auth.PrefixDeployment)
	}
	if err := a.saveToken(offered); err != nil {
		a.log.Error("cannot keep the rotated deployment token; staying on the current one", "err", err)
		return err
	}
	a.token.Store(&offered)
	a.log.Info("the manager rotated this agent's deployment token; checking in with the new one", "kept_in", filepath.Join(a.cfg.DataDir, TokenFile))
	if a.cfg.Transport == "websocket" {
		// The open connection was authorized with the old token; a polling agent
		// sends the new one with its next request anyway.
		a.notify(eventRotated)
	}
	return nil
}

// refusedStatus finds the HTTP status of a refused connection in opamp-go's log
// lines, the only place it reports it: "Server responded with status=401
// Unauthorized" (WebSocket handshake) and "invalid response from server: 401"
// (HTTP polling). The agent's tests run the real opamp-go against a refusing
// manager, so a change of wording there fails them.
var refusedStatus = regexp.MustCompile(`(?:status=|invalid response from server: )(401|403)\b`)

// refusalWatcher passes opamp-go's log lines on and tells the agent when one
// says the manager refused its token.
type refusalWatcher struct {
	types.Logger
	refused   func(status int)
	isRefused func() bool
	// quiet demotes opamp-go's per-attempt "Connection failed" line to
	// debug: a reach.Tracker reports the manager down, once.
	quiet bool
	// stopping reports whether the agent is stopping this client, whose
	// request under way then ends with "context canceled": opamp-go logs
	// that as an error, but it is the stop the agent asked for.
	stopping func() bool
}

// Errorf implements types.Logger.
func (w refusalWatcher) Errorf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if m := refusedStatus.FindStringSubmatch(msg); m != nil {
		code, _ := strconv.Atoi(m[1])
		w.refused(code)
		return // said plainly by refused, once
	}
	if w.isRefused() && strings.Contains(msg, websocket.ErrBadHandshake.Error()) {
		return // the same refusal, as opamp-go's retry line
	}
	if w.quiet && strings.HasPrefix(msg, "Connection failed") {
		w.Logger.Debugf(ctx, "%s", msg)
		return
	}
	if w.stopping != nil && w.stopping() && strings.Contains(msg, context.Canceled.Error()) {
		w.Logger.Debugf(ctx, "%s", msg)
		return
	}
	w.Logger.Errorf(ctx, "%s", msg)
}

// ownedClient is an OpAMP client that tells its refusalWatcher when the
// agent stops it.
type ownedClient struct {
	client.OpAMPClient
	stopping *atomic.Bool
}

// Stop stops the client, its cancelled requests no longer warnings.
func (c ownedClient) Stop(ctx context.Context) error {
	c.stopping.Store(true)
	return c.OpAMPClient.Stop(ctx)
}

// refused is told by the client that the manager refused the token.
func (a *Agent) refused(status int) {
	// A refused poll is no connection either, though opamp-go reports it to
	// no callback.
	a.mu.Lock()
	a.connected = false
	a.mu.Unlock()
	if !a.refusedLogged.Swap(true) {
		a.log.Error(fmt.Sprintf("manager refused this agent's token (%d): check PERISCOPE_AGENT_TOKEN / token file; it may have been revoked or rotated", status),
			"token_file", filepath.Join(a.cfg.DataDir, TokenFile), "next_try_in", a.refusedRetry)
	}
	a.notify(eventRefused)
}

func (a *Agent) notify(ev sessionEvent) {
	select {
	case a.events <- ev:
	default: // one is pending; the session loop handles it with the newest state
	}
}

// startSession runs the loop that replaces the OpAMP client when the token is
// refused (after the slow interval) or rotated (at once).
func (a *Agent) startSession(ctx context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopSessions = cancel
	a.sessions.Add(1)
	go func() {
		defer a.sessions.Done()
		a.runSessions(ctx)
	}()
}

// stopSession ends the session loop; the client it left stays a.client.
func (a *Agent) stopSession() {
	if a.stopSessions != nil {
		a.stopSessions()
	}
	a.sessions.Wait()
}

func (a *Agent) runSessions(ctx context.Context) {
	// Every wait is the slowest: a refused token needs an operator, and a
	// client that knocks every minute only fills the manager's log.
	wait := retry.Backoff{Initial: a.refusedRetry, Max: a.refusedRetry, Jitter: 0.2}
	for {
		var ev sessionEvent
		select {
		case <-ctx.Done():
			return
		case ev = <-a.events:
		}
		a.mu.Lock()
		c := a.client
		a.client = nil
		a.mu.Unlock()
		if c != nil {
			// Not cut short by ctx: a client left half stopped would outlive the agent.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := c.Stop(sctx); err != nil {
				a.log.Debug("stopping the OpAMP client", "err", err)
			}
			cancel()
		}
		if ev == eventRefused {
			t := time.NewTimer(wait.Delay(1, nil))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		// What the stopped client said meanwhile is stale.
		select {
		case <-a.events:
		default:
		}
		if _, err := a.connect(ctx, a.lastStatus()); err != nil {
			a.log.Error("cannot restart the OpAMP client", "err", err)
			a.notify(eventRefused) // try again after the slow interval
		}
	}
}

// lastStatus is the update status a replacing client reports first.
func (a *Agent) lastStatus() *protobufs.RemoteConfigStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reported == nil {
		return a.startStatus
	}
	return a.reported.report()
}
