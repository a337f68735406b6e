package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/store"
)

// cookieName is the session cookie; its value is the session id, which the
// store keeps only hashed.
const cookieName = "periscope_session"

// csrfField is the hidden form field every state-changing form carries.
const csrfField = "csrf"

// maxFormBytes bounds a dashboard form body: a reason and a few fields.
const maxFormBytes = 64 << 10

// Session is a signed-in browser: the token it signed in with (its id, name and
// role, never the secret) and the CSRF token its forms carry.
type Session struct {
	Token auth.APIToken
	// CSRF is the value every state-changing form of this session must send.
	CSRF    string
	created time.Time
	used    time.Time
}

// CanOperate reports whether the session may change deployments (pin, unpin,
// rollback); pages show action buttons only then, and the server checks again.
func (s *Session) CanOperate() bool { return s.Token.Role.Allows(auth.RoleOperator) }

// touchEvery is how stale a session's last use may be in the store before a
// request writes it again: a page view is not a database write each time, at
// the price of idle expiry being this much late at most.
const touchEvery = time.Minute

// sessions is the session table, kept in the fleet store (hashed) so that
// every replica knows every session: a browser signed in through one replica
// is signed in on all of them, and signing out on one ends it on all.
type sessions struct {
	st         store.Sessions
	clk        clock.Clock
	rand       io.Reader
	idle, life time.Duration
	limits     store.SessionLimits
	log        *slog.Logger
}

func newSessions(st store.Sessions, clk clock.Clock, s Settings) *sessions {
	ss := &sessions{st: st, clk: clk, rand: s.Rand, idle: s.SessionIdle, life: s.SessionMax, log: s.Logger,
		limits: store.SessionLimits{PerToken: s.MaxSessionsPerToken, Total: s.MaxSessions}}
	if ss.log == nil {
		ss.log = slog.New(slog.DiscardHandler)
	}
	if ss.rand == nil {
		ss.rand = rand.Reader
	}
	if ss.idle <= 0 {
		ss.idle = 12 * time.Hour
	}
	if ss.life <= 0 {
		ss.life = 7 * 24 * time.Hour
	}
	if ss.limits.PerToken <= 0 {
		ss.limits.PerToken = 20
	}
	if ss.limits.Total <= 0 {
		ss.limits.Total = 10000
	}
	return ss
}

func (ss *sessions) random() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(ss.rand, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func sessionKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// csrfOf derives a session's CSRF token from its id, so that no replica needs
// to store it; the page shows it, and it does not reveal the id.
func csrfOf(id string) string {
	h := sha256.Sum256([]byte("periscope dashboard csrf\x00" + id))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// create signs tok in and returns the new session's id (the cookie value) and
// how many of tok's sessions it ended to stay within the per-token limit.
// store.ErrSessionLimit when the manager holds as many sessions as it keeps.
//
// Past the total limit a sign-in is refused rather than ending the session
// used least recently, as it once did: ending others' sessions let the holder
// of any token sign everybody else out, silently, at the moment they may need
// the dashboard most, while a refusal only turns away newcomers, with a
// message saying why, and frees up as sessions end. With the per-token limit
// it takes Total/PerToken (500 by default) tokens all at their limit to get
// there, so a refusal means many tokens, not one busy holder.
func (ss *sessions) create(ctx context.Context, tok auth.APIToken) (string, int, error) {
	id, err := ss.random()
	if err != nil {
		return "", 0, fmt.Errorf("session id: %w", err)
	}
	now := ss.clk.Now()
	// Sign-ins sweep the expired sessions, so the table holds only live ones
	// and the total limit counts only those.
	if _, err := ss.st.DeleteExpiredSessions(ctx, now.Add(-ss.idle), now.Add(-ss.life)); err != nil {
		return "", 0, err
	}
	ended, err := ss.st.CreateSession(ctx, store.SessionRecord{Hash: sessionKey(id), TokenID: sessionToken(tok), CreatedAt: now, UsedAt: now}, ss.limits)
	if err != nil {
		return "", 0, err
	}
	return id, ended, nil
}

// sessionToken is what a session records of its token: the id, and a
// fingerprint of the token's hash, so a token replaced under the same id
// ends the sessions signed in with the old one.
func sessionToken(tok auth.APIToken) string { return tok.ID + "/" + tokenPrint(tok) }

// tokenPrint fingerprints a token's stored hash (never the secret).
func tokenPrint(tok auth.APIToken) string {
	h := sha256.Sum256([]byte(tok.Hash))
	return hex.EncodeToString(h[:8])
}

func (ss *sessions) expired(r store.SessionRecord, now time.Time) bool {
	return now.Sub(r.UsedAt) >= ss.idle || now.Sub(r.CreatedAt) >= ss.life
}

// get returns the live session of id, marking it used; an expired one is
// ended. Only its token's id is set: the caller looks the token up.
func (ss *sessions) get(ctx context.Context, id string) (*Session, bool, error) {
	now := ss.clk.Now()
	k := sessionKey(id)
	r, err := ss.st.GetSession(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if ss.expired(r, now) {
		return nil, false, ss.st.DeleteSession(ctx, k)
	}
	if now.Sub(r.UsedAt) >= touchEvery {
		err := ss.st.TouchSession(ctx, k, now)
		if errors.Is(err, store.ErrNotFound) { // signed out meanwhile
			return nil, false, nil
		}
		if err != nil {
			// A store that cannot write (full disk, a read-only replica of
			// the database) must not lock every operator out exactly when
			// they need the dashboard: the session was read, so it is
			// served, and its idle time is only counted from the last touch.
			ss.log.Warn("marking a dashboard session used failed; serving it anyway", "err", err)
		} else {
			r.UsedAt = now
		}
	}
	return &Session{Token: auth.APIToken{ID: r.TokenID}, CSRF: csrfOf(id), created: r.CreatedAt, used: r.UsedAt}, true, nil
}

func (ss *sessions) end(ctx context.Context, id string) error {
	return ss.st.DeleteSession(ctx, sessionKey(id))
}

// session returns the request's live session. A session whose token has been
// revoked since sign-in ends here, and its role follows the token's. An error
// is the store's: the caller answers that, not the sign-in page.
func (s *Server) session(r *http.Request) (*Session, bool, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, false, nil
	}
	sess, ok, err := s.sessions.get(r.Context(), c.Value)
	if !ok || err != nil {
		return nil, false, err
	}
	id, fp, _ := strings.Cut(sess.Token.ID, "/")
	tok, ok := s.keys.Token(id)
	if !ok || fp != tokenPrint(tok) {
		// Revoked, or replaced under the same id (a rotated admin_token
		// keeps its id): the browser signed in with a secret that no
		// longer works, so its session ends too.
		return nil, false, s.sessions.end(r.Context(), c.Value)
	}
	tok.Hash = ""
	sess.Token = tok
	return sess, true, nil
}

// sessionFailed answers a request whose session the store could not read.
func (s *Server) sessionFailed(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("read dashboard session", "err", err)
	s.fail(w, r, nil, http.StatusServiceUnavailable, "Unavailable", "The manager could not read its sessions; its log has details. Try again shortly.")
}

func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: overTLS(r),
	})
}

// overTLS reports whether the browser reached us over TLS: on this connection,
// or at a proxy that ended TLS and says so in X-Forwarded-Proto, as production
// deployments do. Trusting the header is safe here: a client that forges it
// only gets a cookie its browser keeps off plain HTTP.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

// handler is a page or action behind sign-in.
type handler func(w http.ResponseWriter, r *http.Request, sess *Session)

// signedIn wraps h: a request without a live session is sent to /login (and
// back here after), one whose role is short of need gets the 403 page, and a
// state-changing request must carry the session's CSRF token and, when the
// browser says where it comes from, come from this origin.
func (s *Server) signedIn(need auth.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secureHeaders(w)
		sess, ok, err := s.session(r)
		if err != nil {
			s.sessionFailed(w, r, err)
			return
		}
		if !ok {
			target := "/login"
			if r.Method == http.MethodGet && r.URL.Path != "/" {
				target += "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		if !sess.Token.Role.Allows(need) {
			s.fail(w, r, sess, http.StatusForbidden, "Not allowed",
				"This needs the "+string(need)+" role; you are signed in as "+sess.Token.Name+" ("+string(sess.Token.Role)+"). Ask an admin for an operator token.")
			return
		}
		// The stores keep text as UTF-8 (DuckDB answers anything else with an
		// internal error), so bytes that are not text are the request's mistake.
		if !utf8.ValidString(r.URL.Path) || !textValues(r.URL.Query()) {
			s.fail(w, r, sess, http.StatusBadRequest, "Unreadable address", "The address holds bytes that are not UTF-8 text.")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				s.fail(w, r, sess, http.StatusForbidden, "Refused", "This request came from another site, so it was not carried out.")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				s.fail(w, r, sess, http.StatusBadRequest, "Unreadable form", "The form could not be read: "+err.Error())
				return
			}
			if !textValues(r.PostForm) {
				s.fail(w, r, sess, http.StatusBadRequest, "Unreadable form", "The form holds bytes that are not UTF-8 text.")
				return
			}
			if !auth.Equal(r.PostForm.Get(csrfField), sess.CSRF) {
				s.fail(w, r, sess, http.StatusForbidden, "Refused",
					"This form has expired or did not come from this dashboard, so nothing was changed. Reload the page and try again.")
				return
			}
		}
		h(w, r, sess)
	})
}

// sameOrigin reports whether a state-changing request came from this host, when
// the browser says (Origin, else Referer); SameSite=Lax and the CSRF token
// already stop cross-site forms, this refuses them before reading the body.
func sameOrigin(r *http.Request) bool {
	from := r.Header.Get("Origin")
	if from == "" || from == "null" {
		from = r.Header.Get("Referer")
	}
	if from == "" {
		return true
	}
	u, err := url.Parse(from)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// localPath returns next when it is a path on this site, else "/": the sign-in
// page must not redirect anywhere else.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, `/\`) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

// loginData is the sign-in page's content.
type loginData struct {
	Next  string
	Error string
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w)
	if _, ok, err := s.session(r); err != nil {
		s.sessionFailed(w, r, err)
		return
	} else if ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.render(w, r, nil, http.StatusOK, "login", "Sign in", loginData{Next: localPath(r.URL.Query().Get("next"))})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	secureHeaders(w)
	if !sameOrigin(r) {
		s.fail(w, r, nil, http.StatusForbidden, "Refused", "This sign-in came from another site, so it was not carried out.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.render(w, r, nil, http.StatusBadRequest, "login", "Sign in", loginData{Error: "The form could not be read."})
		return
	}
	next := localPath(r.PostForm.Get("next"))
	tok, ok := s.keys.Lookup(strings.TrimSpace(r.PostForm.Get("token")))
	if !ok {
		s.log.Info("dashboard sign-in refused", "remote", r.RemoteAddr)
		// Only that a sign-in failed and from where: what was typed may be a
		// secret mistyped, and it is not for the log.
		if record, left := s.refused.take(s.clock.Now()); record {
			if err := s.auditSignIn(r, auth.APIToken{}, store.OutcomeFailed, signInDetail{Left: left}); err != nil {
				s.log.Error("audit a refused dashboard sign-in", "err", err)
			}
		}
		s.render(w, r, nil, http.StatusUnauthorized, "login", "Sign in", loginData{Next: next,
			Error: "That token is not valid, or it has been revoked. Use an API token an admin created (POST /api/v1/tokens), or the admin token the manager printed at its first start."})
		return
	}
	id, ended, err := s.sessions.create(r.Context(), tok)
	if errors.Is(err, store.ErrSessionLimit) {
		s.log.Warn("dashboard sign-in refused: the session limit is reached", "token", tok.Name, "limit", s.sessions.limits.Total)
		if err := s.auditSignIn(r, tok, store.OutcomeFailed, signInDetail{Refused: "the manager holds as many dashboard sessions as it keeps"}); err != nil {
			s.log.Error("audit a refused dashboard sign-in", "err", err)
		}
		s.fail(w, r, nil, http.StatusServiceUnavailable, "Could not sign in",
			"The manager already holds as many dashboard sessions as it keeps ("+strconv.Itoa(s.sessions.limits.Total)+"), so no new one was started and nobody was signed out. "+
				"Sessions end on sign-out and after "+spanText(s.sessions.idle)+" unused; try again later, or ask an admin to revoke tokens that are not needed.")
		return
	}
	if err != nil {
		s.fail(w, r, nil, http.StatusInternalServerError, "Could not sign in", "The manager could not start a session; its log has details.")
		s.log.Error("create dashboard session", "err", err)
		return
	}
	// A sign-in the audit log cannot record does not happen: its session
	// ends again. (The sessions it ended to stay within the token's limit
	// stay ended; they were the same token's.)
	if err := s.auditSignIn(r, tok, store.OutcomeSucceeded, signInDetail{Ended: ended}); err != nil {
		s.log.Error("audit a dashboard sign-in", "err", err)
		if err := s.sessions.end(r.Context(), id); err != nil {
			s.log.Error("end an unaudited dashboard session", "err", err)
		}
		s.fail(w, r, nil, http.StatusServiceUnavailable, "Could not sign in", "The manager could not record the sign-in in its audit log; its log has details.")
		return
	}
	s.log.Info("dashboard sign-in", "token", tok.Name, "role", tok.Role)
	s.setCookie(w, r, id, 0)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ *Session) {
	if c, err := r.Cookie(cookieName); err == nil {
		// Ended in the store, so on every replica; a sign-out that could not
		// be recorded says so rather than pretend.
		if err := s.sessions.end(r.Context(), c.Value); err != nil {
			s.log.Error("end dashboard session", "err", err)
			s.fail(w, r, nil, http.StatusServiceUnavailable, "Could not sign out", "The manager could not end the session; its log has details. Try again.")
			return
		}
	}
	s.setCookie(w, r, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// secureHeaders keeps every dashboard page out of frames and off other sites'
// scripts: no inline script or style runs, which turns an escaping mistake into
// inert text instead of a script.
func secureHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// textValues reports whether every name and value in v is valid UTF-8.
func textValues(v url.Values) bool {
	for name, vs := range v {
		if !utf8.ValidString(name) {
			return false
		}
		for _, s := range vs {
			if !utf8.ValidString(s) {
				return false
			}
		}
	}
	return true
}

// signInDetail is a sign-in audit entry's Detail beyond the address.
type signInDetail struct {
	// Left counts the failed sign-ins before this one not recorded.
	Left int64 `json:"failures_not_recorded_before,omitempty"`
	// Ended counts the token's own sessions this sign-in ended, used least
	// recently, to stay within the per-token limit.
	Ended int `json:"sessions_ended,omitempty"`
	// Refused says why a valid token's sign-in was turned away.
	Refused string `json:"refused,omitempty"`
}

// auditSignIn records a dashboard sign-in by tok (the zero token when the
// token was not valid), the address it came from, and d.
func (s *Server) auditSignIn(r *http.Request, tok auth.APIToken, outcome string, d signInDetail) error {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	detail, _ := json.Marshal(struct {
		Remote string `json:"remote"`
		signInDetail
	}{host, d})
	return s.audit.AppendAudit(r.Context(), []store.AuditEntry{{At: s.clock.Now().UTC(), Actor: tok.Name, ActorRole: string(tok.Role),
		Action: store.ActionSignIn, Outcome: outcome, Detail: string(detail)}})
}

// Failed sign-ins reach the audit log in a burst of refusedBurst, then one
// every refusedEvery: anyone can post wrong tokens to /login, and each entry
// is a write to the manager's disk. The ones left out are counted, and the
// next entry written says how many.
const (
	refusedBurst = 20
	refusedEvery = 6 * time.Second
)

// refusedSignIns is a token bucket over failed sign-ins.
type refusedSignIns struct {
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	skipped int64
}

// take says whether a failure at now is written, and how many were left out
// since the last one that was.
func (b *refusedSignIns) take(now time.Time) (record bool, left int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = refusedBurst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(refusedBurst, b.tokens+float64(d)/float64(refusedEvery))
	}
	if !now.Before(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		b.skipped++
		return false, 0
	}
	b.tokens--
	left, b.skipped = b.skipped, 0
	return true, left
}
