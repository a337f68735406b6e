// Package web serves the manager's dashboard: server-rendered HTML pages over
// the same registry and telemetry-store functions as the REST API, for an
// operator signed in with an API token.
//
// Templates are parsed once in New and each page is rendered into a buffer, so
// a template error answers a designed error page and never half a page. Assets
// are embedded and served under content-hashed names with a year's caching.
// Every route is in routes.go.
package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/store"
)

// Keyring is what the dashboard needs of operator tokens: signing in with one,
// and learning that a session's token has been revoked.
type Keyring interface {
	Lookup(token string) (auth.APIToken, bool)
	// Token returns the token record with this id while it is not revoked.
	Token(id string) (auth.APIToken, bool)
}

// Settings are the dashboard's collaborators and knobs; zero values are safe.
type Settings struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Rand is the randomness for session ids and CSRF tokens (crypto/rand when nil).
	Rand io.Reader
	// Telemetry is nil when the manager runs without a telemetry store: the
	// telemetry pages then say so instead of failing.
	Telemetry api.Telemetry
	// Notifications is nil when no webhook is configured.
	Notifications api.Notifications
	// Commands is the remote-command service; nil when the manager runs none,
	// and the commands panel then says so.
	Commands Commands
	// Rollouts is the progressive rollout engine; nil when the manager runs
	// none, and the releases page then lists no rollouts.
	Rollouts Rollouts
	// CheckinInterval is how often agents are expected to check in (default
	// 30 s): the commands form tells when a polling agent gets an invocation.
	CheckinInterval time.Duration
	// Audit is the audit log: the audit page reads it and every sign-in is
	// written to it. Required.
	Audit store.Audit
	// SessionIdle ends a session unused this long (default 12h); SessionMax ends
	// any session this long after sign-in (default 7 days).
	SessionIdle, SessionMax time.Duration
	// MaxSessionsPerToken bounds the sessions of one API token (default 20):
	// signing in past it ends that token's session used least recently, and
	// nobody else's.
	MaxSessionsPerToken int
	// MaxSessions bounds all sessions (default 10,000): a sign-in past it is
	// refused (503), and no session is ended to make room.
	MaxSessions int
	// Sessions keeps the dashboard sessions, shared by every replica on the
	// same store. When nil, Audit serves when it implements store.Sessions (the
	// fleet stores do); otherwise New fails.
	Sessions store.Sessions
}

// Server is the dashboard's handler set.
type Server struct {
	fleet api.Fleet
	keys  Keyring
	tel   api.Telemetry
	notes api.Notifications
	cmds  Commands
	// rollouts is nil when the manager runs none.
	rollouts Rollouts
	audit    store.Audit
	log      *slog.Logger
	clock    clock.Clock
	// checkinEvery is the expected check-in interval of a polling agent.
	checkinEvery time.Duration

	pages    *pages
	assets   *assets
	sessions *sessions
	// refused bounds the failed sign-ins written to the audit log.
	refused refusedSignIns

	// closing ends live streams (log tail, refresh) at shutdown.
	closing context.Context
	end     context.CancelFunc
	// tails holds a slot per live log tail (see maxTails).
	tails chan struct{}
}

// New parses the templates and hashes the assets; it starts nothing.
func New(f api.Fleet, k Keyring, s Settings) (*Server, error) {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	// A nil pointer in an interface is not a nil interface: treat it as none.
	if v := reflect.ValueOf(s.Telemetry); s.Telemetry != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		s.Telemetry = nil
	}
	if v := reflect.ValueOf(s.Notifications); s.Notifications != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		s.Notifications = nil
	}
	if v := reflect.ValueOf(s.Commands); s.Commands != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		s.Commands = nil
	}
	if v := reflect.ValueOf(s.Rollouts); s.Rollouts != nil && v.Kind() == reflect.Pointer && v.IsNil() {
		s.Rollouts = nil
	}
	if s.CheckinInterval <= 0 {
		s.CheckinInterval = 30 * time.Second
	}
	if s.Audit == nil {
		return nil, errors.New("dashboard: no audit log")
	}
	if s.Sessions == nil {
		ss, ok := s.Audit.(store.Sessions)
		if !ok {
			return nil, errors.New("dashboard: no session store")
		}
		s.Sessions = ss
	}
	as, err := loadAssets()
	if err != nil {
		return nil, fmt.Errorf("dashboard assets: %w", err)
	}
	ps, err := parsePages(as)
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	closing, end := context.WithCancel(context.Background())
	clk := clock.Or(s.Clock)
	return &Server{
		fleet: f, keys: k, tel: s.Telemetry, notes: s.Notifications, cmds: s.Commands, rollouts: s.Rollouts, audit: s.Audit, checkinEvery: s.CheckinInterval, log: s.Logger, clock: clk,
		pages: ps, assets: as, sessions: newSessions(s.Sessions, clk, s),
		closing: closing, end: end, tails: make(chan struct{}, maxTails),
	}, nil
}

// Close ends every live stream; register it with http.Server.RegisterOnShutdown,
// which otherwise waits for streams that end only when their browser leaves.
func (s *Server) Close() { s.end() }

// Handler returns the dashboard on a mux of its own (used by tests).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}
