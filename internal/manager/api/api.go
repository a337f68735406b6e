// Package api serves the REST API under /api/v1 and its OpenAPI document. It
// declares the narrow interfaces it needs of the fleet and the keyring.
package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/suggest"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

// Fleet is what the API needs of the fleet registry.
type Fleet interface {
	Get(id string) (registry.View, error)
	List(f fleet.Filter, p registry.Page) ([]registry.View, int)
	// ListPage is List with the page's place in the list and cursors both ways.
	ListPage(f fleet.Filter, p registry.Page) (registry.Listing, error)
	// Overview is Summary, Adoption and ListPage in one pass over the fleet
	// (the dashboard's fleet page, whose twins here are those three routes).
	Overview(f fleet.Filter, p registry.Page) (registry.Summary, []registry.Adoption, registry.Listing, error)
	Summary(f fleet.Filter) registry.Summary
	CreateDeployments(ctx context.Context, nds []registry.NewDeployment) ([]registry.Created, error)
	CreateRelease(ctx context.Context, rel fleet.Release) (fleet.Release, error)
	Releases(stack string) []registry.ReleaseView
	Events(ctx context.Context, id string, limit int) ([]fleet.Event, error)
	// Pin pins, unpins or rolls back a selection of deployments, all or none.
	Pin(ctx context.Context, req registry.PinRequest) (registry.PinResult, error)
	PinChanges(ctx context.Context, id string, limit int) ([]fleet.PinChange, error)
	Adoption(stack string) []registry.Adoption
	// RotateToken, RevokeToken and DeleteDeployment change a deployment's
	// agent tokens or remove it, audited; DeploymentChanges reads that trail.
	RotateToken(ctx context.Context, req registry.RotateRequest) (registry.Rotated, error)
	RevokeToken(ctx context.Context, req registry.RevokeRequest) error
	DeleteDeployment(ctx context.Context, id, by, byRole, reason string) error
	DeploymentChanges(ctx context.Context, id string, limit int) ([]fleet.DeploymentChange, error)
	// Thresholds and SetThresholds read and replace a deployment's runtime
	// thresholds; a change is audited.
	Thresholds(id string) (registry.Thresholds, error)
	SetThresholds(ctx context.Context, req registry.ThresholdsRequest) (registry.Thresholds, error)
}

// Keyring is what the API needs of operator tokens.
type Keyring interface {
	Lookup(token string) (auth.APIToken, bool)
	// Create and Delete audit the change as made by the token passed.
	Create(ctx context.Context, by auth.APIToken, name string, role auth.Role) (string, auth.APIToken, error)
	List() []auth.APIToken
	Delete(ctx context.Context, by auth.APIToken, id string) error
}

// maxBody bounds request bodies; a batch of 10,000 deployments fits comfortably.
const maxBody = 8 << 20

// API is the REST handler set.
type API struct {
	fleet Fleet
	keys  Keyring
	log   *slog.Logger
	// tel is nil when the manager runs without a telemetry store (see WithTelemetry).
	tel   Telemetry
	clock clock.Clock
	// notes is nil when no notification webhook is configured (see WithNotifications).
	notes Notifications
	// audit is nil until WithAudit.
	audit store.Audit
	// cmds is nil when the manager runs no remote commands (see WithCommands).
	cmds Commands
	// rollouts is nil until WithRollouts.
	rollouts Rollouts
	// closing ends log tails at shutdown (see Close).
	closing  context.Context
	endTails context.CancelFunc
}

// New returns the API over f and k.
func New(f Fleet, k Keyring, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	closing, endTails := context.WithCancel(context.Background())
	return &API{fleet: f, keys: k, log: log, clock: clock.Real{}, closing: closing, endTails: endTails}
}

// Route is one documented endpoint.
type Route struct {
	Method, Path string
	Role         auth.Role // "" means no token needed
	handler      func(http.ResponseWriter, *http.Request, auth.APIToken)
}

// Routes lists every endpoint; the OpenAPI test checks the document against it.
func (a *API) Routes() []Route {
	return append([]Route{
		{"GET", "/api/v1/openapi.json", "", a.openAPI},
		{"GET", "/api/v1/deployments", auth.RoleViewer, a.listDeployments},
		{"POST", "/api/v1/deployments", auth.RoleOperator, a.createDeployment},
		{"POST", "/api/v1/deployments/batch", auth.RoleOperator, a.createDeployments},
		// A literal segment wins over {id}: a deployment named "behind" is not
		// reachable as /deployments/behind.
		{"GET", "/api/v1/deployments/behind", auth.RoleViewer, a.behindDeployments},
		{"GET", "/api/v1/deployments/{id}", auth.RoleViewer, a.getDeployment},
		{"GET", "/api/v1/deployments/{id}/events", auth.RoleViewer, a.deploymentEvents},
		{"PUT", "/api/v1/deployments/{id}/pin", auth.RoleOperator, a.pinDeployment},
		{"DELETE", "/api/v1/deployments/{id}/pin", auth.RoleOperator, a.unpinDeployment},
		{"POST", "/api/v1/deployments/{id}/rollback", auth.RoleOperator, a.rollbackDeployment},
		{"POST", "/api/v1/pins", auth.RoleOperator, a.changePins},
		{"GET", "/api/v1/pins/history", auth.RoleViewer, a.pinHistory},
		{"GET", "/api/v1/events", auth.RoleViewer, a.fleetEvents},
		{"GET", "/api/v1/summary", auth.RoleViewer, a.summary},
		{"GET", "/api/v1/releases", auth.RoleViewer, a.listReleases},
		{"POST", "/api/v1/releases", auth.RoleOperator, a.createRelease},
		{"GET", "/api/v1/releases/adoption", auth.RoleViewer, a.releaseAdoption},
		{"GET", "/api/v1/tokens", auth.RoleAdmin, a.listTokens},
		{"POST", "/api/v1/tokens", auth.RoleAdmin, a.createToken},
		{"DELETE", "/api/v1/tokens/{id}", auth.RoleAdmin, a.deleteToken},
	}, slices.Concat(a.telemetryRoutes(), a.notificationRoutes(), a.tokenRoutes(), a.auditRoutes(), a.commandRoutes(), a.thresholdsRoutes(), a.rolloutRoutes())...)
}

// Register mounts every route on mux, plus JSON answers for the rest of /api/:
// 405 with Allow for a known path asked with another method, 404 otherwise.
func (a *API) Register(mux *http.ServeMux) {
	// paths matches a request's path whatever its method, so the fallback can
	// tell a wrong method from a wrong path; allow lists each path's methods.
	paths, allow := http.NewServeMux(), map[string][]string{}
	for _, r := range a.Routes() {
		mux.Handle(r.Method+" "+r.Path, a.authorize(r))
		if allow[r.Path] == nil {
			paths.Handle(r.Path, http.NotFoundHandler())
		}
		allow[r.Path] = append(allow[r.Path], r.Method)
		if r.Method == http.MethodGet {
			allow[r.Path] = append(allow[r.Path], http.MethodHead)
		}
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); allow[pattern] != nil {
			methods := slices.Sorted(slices.Values(allow[pattern]))
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("%s does not take %s; it takes %s", r.URL.Path, r.Method, strings.Join(methods, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

func (a *API) authorize(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Go's URL.Query drops what it cannot parse (a raw ';', a bad escape):
		// answering on defaults would hide the client's mistake.
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "malformed query string: "+err.Error())
			return
		}
		if !utf8.ValidString(r.URL.Path) {
			writeError(w, http.StatusBadRequest, "invalid", "the path is not valid UTF-8")
			return
		}
		for name, vs := range q {
			// Every store keeps text as UTF-8 (DuckDB refuses anything else with
			// an internal error), so a parameter that is not text is the
			// client's mistake and gets a 400 here rather than a 500 later.
			if !utf8.ValidString(name) {
				writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("query parameter name %q is not valid UTF-8", name))
				return
			}
			for _, v := range vs {
				if !utf8.ValidString(v) {
					writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%.64s: the value is not valid UTF-8", name))
					return
				}
				if len(v) > apitypes.MaxQueryValueBytes {
					writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%.64s: %d bytes, over the limit of %d bytes", name, len(v), apitypes.MaxQueryValueBytes))
					return
				}
			}
		}
		var tok auth.APIToken
		if rt.Role != "" {
			secret, ok := auth.BearerToken(r.Header.Get("Authorization"))
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="periscope"`)
				writeError(w, http.StatusUnauthorized, "unauthenticated", "missing bearer token: send Authorization: Bearer <API token>")
				return
			}
			if tok, ok = a.keys.Lookup(secret); !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="periscope", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "unauthenticated", "unknown or revoked API token")
				return
			}
			if !tok.Role.Allows(rt.Role) {
				writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("this needs the %s role; token %q has %s", rt.Role, tok.Name, tok.Role))
				return
			}
		}
		rt.handler(w, r, tok)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", "could not encode the response")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	b, _ := json.Marshal(apitypes.Error{Error: apitypes.ErrorBody{Code: code, Message: msg}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// orNil returns v, or the zero T (a nil interface) when v holds a nil
// pointer: a nil pointer in an interface is not a nil interface, and the
// routes test for nil to answer 503 instead of panicking.
func orNil[T any](v T) T {
	if rv := reflect.ValueOf(any(v)); rv.Kind() == reflect.Pointer && rv.IsNil() {
		var zero T
		return zero
	}
	return v
}

// unavailable answers 503 with msg when off, and reports whether it did.
func unavailable(w http.ResponseWriter, off bool, msg string) bool {
	if off {
		writeError(w, http.StatusServiceUnavailable, "unavailable", msg)
	}
	return off
}

// unavailableRetry is the Retry-After of a 503 for a store that cannot write:
// long enough for an operator to make room, short enough for a script to wait.
const unavailableRetry = 30 * time.Second

// fail maps an error to its status; only user-safe text reaches the client.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, rollouts.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, rollouts.ErrNoPlan):
		// Its own code, so a client can say what to do: set a plan first.
		writeError(w, http.StatusConflict, "no_plan", err.Error())
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, telquery.ErrInvalid), errors.Is(err, commands.ErrInvalid), errors.Is(err, rollouts.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, store.ErrUnavailable):
		// A full disk: nothing was written, and the same request can succeed once
		// the operator has made room. The store's error names files; the log has it.
		a.log.Warn("API request could not be stored", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(unavailableRetry/time.Second)))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the manager cannot store this now (its disk is full or failing); nothing was changed, try again later")
	default:
		a.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error; the manager log has details")
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := readBody(w, r)
	return ok && decodeBody(w, body, v)
}

// decodeOptional is decode for a body the client may leave out: an empty body
// leaves v as it is.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	body, ok := readBody(w, r)
	if !ok {
		return false
	}
	if strings.TrimSpace(string(body)) == "" {
		return true
	}
	return decodeBody(w, body, v)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", maxBody))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "invalid", "could not read the request body")
		return nil, false
	}
	return body, true
}

// decodeBody decodes body, one JSON value and nothing after it, into v and
// checks v's fields against their limits (see apitypes.Checker).
func decodeBody(w http.ResponseWriter, body []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "malformed JSON body: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		// Two bodies in one, or a body with junk after it: which did the client mean?
		writeError(w, http.StatusBadRequest, "invalid", "malformed JSON body: data after the JSON value")
		return false
	}
	if c, ok := v.(apitypes.Checker); ok {
		if err := c.Check(); err != nil {
			writeError(w, http.StatusBadRequest, "invalid", err.Error())
			return false
		}
	}
	return true
}

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request, _ auth.APIToken) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// DeploymentJSON converts a registry view to its API shape.
func DeploymentJSON(v registry.View) apitypes.Deployment {
	d, e := v.Deployment, v.Evaluation
	labels := d.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return apitypes.Deployment{
		ID: d.ID, Name: d.Name, Customer: d.Customer, Platform: d.Platform, Cloud: d.Cloud, Region: d.Region, Stack: d.Stack, Labels: labels,
		Release: d.RunningRelease, DesiredRelease: e.Desired, LatestRelease: e.Latest,
		Status: e.Status, StatusReason: e.Reason, StatusReasonCode: e.ReasonCode, StatusSince: timePtr(v.StatusSince),
		Pinned: e.Pinned, Pin: d.Pin, Behind: e.Behind, BehindSince: timePtr(d.BehindSince), NextPollExpected: timePtr(e.NextPollExpected),
		Wave: e.Wave, Expected: timePtr(e.Expected),
		VersionsBehind: e.VersionsBehind, SupersededAt: timePtr(e.SupersededAt),
		PreviousRelease: d.PreviousRelease, ReleaseSince: timePtr(d.ReleaseSince), AcceptsReleases: d.AcceptsReleases, Regression: d.Regression,
		Mode: d.Mode, Connected: d.Connected, AgentVersion: d.AgentVersion, AgentInstanceUID: d.InstanceUID,
		LastCheckin: timePtr(d.LastCheckin), Health: d.Health, ConfigHash: d.ConfigHash, ExpectedConfigHash: d.ExpectedConfigHash,
		Update: d.Update, CreatedAt: d.CreatedAt.UTC(),
		Loss: e.Loss, LossReason: e.LossReason, TelemetryLoss: lossJSON(d.TelemetryLoss),
		TokenState: tokenStateJSON(v.Token), PreviousTokenValidUntil: timePtr(v.Token.PreviousUntil),
		Redaction: redactionJSON(v.Redaction), CommandRule: d.CommandRule,
	}
}

// redactionJSON shows an agent's redaction report; nil when it made none.
func redactionJSON(r *registry.Redaction) *apitypes.Redaction {
	if r == nil {
		return nil
	}
	return &apitypes.Redaction{Effective: r.Effective, EffectiveHash: r.EffectiveHash, VendorHash: r.VendorHash, InSync: r.InSync,
		Error: r.Error, ReportedAt: r.ReportedAt.UTC()}
}

// lossJSON shows what the manager added up of an agent's loss reports, without
// the bookkeeping of the agent's current run.
func lossJSON(l *fleet.TelemetryLoss) *apitypes.TelemetryLoss {
	if l == nil || l.Records == 0 {
		return nil
	}
	return &apitypes.TelemetryLoss{Records: l.Records, Counts: maps.Clone(l.Counts), LastAt: l.Last.UTC()}
}

func filterFrom(r *http.Request) (fleet.Filter, error) {
	q := r.URL.Query()
	f := fleet.Filter{Customer: q.Get("customer"), Cloud: q.Get("cloud"), Region: q.Get("region"),
		Release: q.Get("release"), Stack: q.Get("stack"), Text: q.Get("q")}
	if s := q.Get("status"); s != "" {
		st, err := fleet.ParseStatus(s)
		if err != nil {
			return f, err
		}
		f.Status = st
	}
	f.Behind = q.Get("behind")
	if err := checkBehind(f.Behind); err != nil {
		return f, err
	}
	if s := q.Get("pinned"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return f, fmt.Errorf("pinned: %q: want true or false", s)
		}
		f.Pinned = strconv.FormatBool(b)
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return f, fmt.Errorf("label: %q: want key=value", l)
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	return f, nil
}

func intParam(r *http.Request, name string, def, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("%s: %q must be a whole number from 1 to %d", name, s, max)
	}
	return n, nil
}

func (a *API) listDeployments(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	f, err := filterFrom(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	limit, err := intParam(r, "limit", 100, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	order, err := registry.ParseOrder(r.URL.Query().Get("order"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	l, err := a.fleet.ListPage(f, registry.Page{Limit: limit, After: r.URL.Query().Get("after"), Before: r.URL.Query().Get("before"), Order: order})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := apitypes.DeploymentList{Items: make([]apitypes.Deployment, len(l.Items)), Total: l.Total, Offset: l.Offset, Next: l.Next, Prev: l.Prev}
	for i, v := range l.Items {
		out.Items[i] = DeploymentJSON(v)
	}
	writeJSON(w, http.StatusOK, out)
}

func toNew(nd apitypes.NewDeployment) registry.NewDeployment {
	return registry.NewDeployment{ID: nd.ID, Name: nd.Name, Customer: nd.Customer, Platform: nd.Platform,
		Cloud: nd.Cloud, Region: nd.Region, Stack: nd.Stack, Labels: nd.Labels}
}

func (a *API) createDeployment(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var nd apitypes.NewDeployment
	if !decode(w, r, &nd) {
		return
	}
	created, err := a.fleet.CreateDeployments(r.Context(), []registry.NewDeployment{toNew(nd)})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := DeploymentJSON(created[0].View)
	out.Token = created[0].Token
	out.Warnings = a.stackWarnings(out.Stack)
	a.log.Info("deployment created", "deployment", out.ID, "customer", out.Customer, "by", tok.Name)
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) createDeployments(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.NewDeployments
	if !decode(w, r, &body) {
		return
	}
	if len(body.Deployments) == 0 || len(body.Deployments) > 10000 {
		writeError(w, http.StatusBadRequest, "invalid", "deployments: send 1 to 10000 deployments per batch")
		return
	}
	nds := make([]registry.NewDeployment, len(body.Deployments))
	for i, nd := range body.Deployments {
		nds[i] = toNew(nd)
	}
	created, err := a.fleet.CreateDeployments(r.Context(), nds)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := apitypes.DeploymentList{Items: make([]apitypes.Deployment, len(created)), Total: len(created)}
	// Listing the releases walks the fleet (adoption counts): once per
	// stack in the batch, not once per deployment.
	warnings := map[string][]string{}
	for i, c := range created {
		out.Items[i] = DeploymentJSON(c.View)
		out.Items[i].Token = c.Token
		stack := out.Items[i].Stack
		ws, ok := warnings[stack]
		if !ok {
			ws = a.stackWarnings(stack)
			warnings[stack] = ws
		}
		out.Items[i].Warnings = ws
	}
	a.log.Info("deployments created", "count", len(created), "by", tok.Name)
	writeJSON(w, http.StatusCreated, out)
}

// stackWarnings says when stack has no published release yet. Stacks exist by
// publishing a release, and registering deployments before the first release is
// a normal order, so the registration is accepted; but a mistyped stack would
// leave the deployment without a desired release forever, unnoticed. As
// kubectl prints an admission warning, the answer carries one, naming the
// nearest known stack.
func (a *API) stackWarnings(stack string) []string {
	if stack == "" {
		return []string{"no stack: the deployment will not be offered any release until it has one"}
	}
	var known []string
	for _, rv := range a.fleet.Releases("") {
		if rv.Release.Stack == stack {
			return nil
		}
		if !slices.Contains(known, rv.Release.Stack) {
			known = append(known, rv.Release.Stack)
		}
	}
	w := fmt.Sprintf("stack %q has no release yet: the deployment is offered none until one is published (periscope releases create VERSION --stack %s)", stack, stack)
	if near, ok := suggest.Nearest(stack, known); ok {
		w += fmt.Sprintf("; did you mean %q?", near)
	} else if len(known) > 0 {
		slices.Sort(known)
		if len(known) > 10 {
			known = append(known[:10], "…")
		}
		w += "; known stacks: " + strings.Join(known, ", ")
	}
	return []string{w}
}

func (a *API) getDeployment(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	v, err := a.fleet.Get(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, DeploymentJSON(v))
}

func (a *API) events(w http.ResponseWriter, r *http.Request, id string) {
	limit, err := intParam(r, "limit", 100, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	evs, err := a.fleet.Events(r.Context(), id, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if evs == nil {
		evs = []fleet.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": evs})
}

func (a *API) deploymentEvents(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	a.events(w, r, r.PathValue("id"))
}

func (a *API) fleetEvents(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	a.events(w, r, "")
}

func (a *API) summary(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	f, err := filterFrom(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	s := a.fleet.Summary(f)
	writeJSON(w, http.StatusOK, apitypes.Summary{Total: s.Total, ByStatus: s.ByStatus, ByRelease: s.ByRelease, Behind: s.Behind, Pinned: s.Pinned})
}

func releaseJSON(rv registry.ReleaseView) apitypes.Release {
	return apitypes.Release{Stack: rv.Release.Stack, Version: rv.Release.Version, CreatedAt: rv.Release.CreatedAt.UTC(),
		Notes: rv.Release.Notes, Latest: rv.Latest, Deployments: rv.Deployments, Commands: rv.Release.Commands}
}

func (a *API) listReleases(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	rvs := a.fleet.Releases(r.URL.Query().Get("stack"))
	out := make([]apitypes.Release, len(rvs))
	for i, rv := range rvs {
		out[i] = releaseJSON(rv)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (a *API) createRelease(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var nr apitypes.NewRelease
	if !decode(w, r, &nr) {
		return
	}
	if nr.Urgent {
		// Refused before anything is published: an urgent release is one
		// the windows must not hold, and the audit log must say why.
		if a.rolloutsOff(w) {
			return
		}
		if strings.TrimSpace(nr.Reason) == "" {
			writeError(w, http.StatusBadRequest, "invalid", "reason: say why the release is urgent (it ignores customers' update windows; the reason goes into the audit log)")
			return
		}
	}
	rel, err := a.fleet.CreateRelease(r.Context(), fleet.Release{Stack: nr.Stack, Version: nr.Version, Notes: nr.Notes, Commands: nr.Commands})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("release published", "stack", rel.Stack, "version", rel.Version, "by", tok.Name, "urgent", nr.Urgent)
	if nr.Urgent {
		// With a plan, publishing started a rollout that respects windows:
		// the urgent one supersedes it. Without one, it is a single wave.
		baseline := previousRelease(a.fleet.Releases(rel.Stack), rel.Version)
		if _, err := a.rollouts.StartRollout(r.Context(), rollouts.StartRequest{Stack: rel.Stack, Release: rel.Version, Baseline: baseline,
			Urgent: true, Actor: actor(tok, nr.Reason)}); err != nil {
			a.fail(w, r, fmt.Errorf("release %s of %s is published, but its urgent rollout did not start (retry with POST /api/v1/rollouts): %w", rel.Version, rel.Stack, err))
			return
		}
	}
	for _, rv := range a.fleet.Releases(rel.Stack) {
		if rv.Release.Version == rel.Version {
			writeJSON(w, http.StatusCreated, releaseJSON(rv))
			return
		}
	}
	writeJSON(w, http.StatusCreated, releaseJSON(registry.ReleaseView{Release: rel}))
}

func (a *API) listTokens(w http.ResponseWriter, _ *http.Request, _ auth.APIToken) {
	ts := a.keys.List()
	out := make([]apitypes.Token, len(ts))
	for i, t := range ts {
		out[i] = apitypes.Token{ID: t.ID, Name: t.Name, Role: string(t.Role)}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, by auth.APIToken) {
	var nt apitypes.NewToken
	if !decode(w, r, &nt) {
		return
	}
	role, err := auth.ParseRole(nt.Role)
	if err != nil || nt.Name == "" {
		writeError(w, http.StatusBadRequest, "invalid", "a token needs a name and a role of viewer, operator or admin")
		return
	}
	secret, t, err := a.keys.Create(r.Context(), by, nt.Name, role)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("API token created", "token", t.ID, "name", t.Name, "role", t.Role, "by", by.Name)
	writeJSON(w, http.StatusCreated, apitypes.Token{ID: t.ID, Name: t.Name, Role: string(t.Role), Secret: secret})
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request, by auth.APIToken) {
	if err := a.keys.Delete(r.Context(), by, r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("API token revoked", "token", r.PathValue("id"), "by", by.Name)
	w.WriteHeader(http.StatusNoContent)
}
