package opamp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/open-telemetry/opamp-go/server"
	"github.com/open-telemetry/opamp-go/server/types"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/desired"
	"github.com/periscope-dev/periscope/internal/opamplog"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

const (
	statusApplying = protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING
	statusApplied  = protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED
	statusFailed   = protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED
)

// event is one thing the manager heard, in arrival order: a description (and the
// release in it) or a remote-config status.
type event struct {
	desc    bool
	release string
	status  *protobufs.RemoteConfigStatus
}

func (e event) String() string {
	if e.desc {
		return "release=" + e.release
	}
	return fmt.Sprintf("%s(%x) %q", e.status.Status, e.status.LastRemoteConfigHash[:min(4, len(e.status.LastRemoteConfigHash))], e.status.ErrorMessage)
}

// fakeManager is a real opamp-go server that offers one release to whoever checks
// in, in every answer (as a manager does after its restart, and more), and pushes
// a new offer at once over open WebSockets.
type fakeManager struct {
	srv *httptest.Server

	mu       sync.Mutex
	offer    *protobufs.AgentRemoteConfig
	ws       map[types.Connection]bool
	events   []event
	messages int
	caps     uint64
	configs  []string
	changed  chan struct{}
	// custom is sent in every answer; reports are the redaction reports heard.
	custom  *protobufs.CustomMessage
	reports []redactpolicy.Report
	// thrReports are the thresholds reports heard.
	thrReports []thresholds.Report
	// customCaps and updates are the agent's custom capabilities and the
	// command updates it sent.
	customCaps []string
	updates    []command.Update
}

func newFakeManager(t *testing.T) *fakeManager {
	t.Helper()
	m := &fakeManager{ws: map[types.Connection]bool{}, changed: make(chan struct{})}
	srv := server.New(opamplog.Logger{L: slog.New(slog.DiscardHandler)})
	h, connCtx, err := srv.Attach(server.Settings{Callbacks: types.Callbacks{OnConnecting: m.onConnecting}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/opamp", h)
	m.srv = httptest.NewUnstartedServer(mux)
	m.srv.Config.ConnContext = connCtx
	m.srv.Start()
	t.Cleanup(m.srv.Close)
	return m
}

func (m *fakeManager) onConnecting(r *http.Request) types.ConnectionResponse {
	push := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	return types.ConnectionResponse{Accept: true, ConnectionCallbacks: types.ConnectionCallbacks{
		OnConnected: func(_ context.Context, c types.Connection) {
			if push {
				m.mu.Lock()
				m.ws[c] = true
				m.mu.Unlock()
			}
		},
		OnConnectionClose: func(c types.Connection) {
			m.mu.Lock()
			delete(m.ws, c)
			m.mu.Unlock()
		},
		OnMessage: m.onMessage,
	}}
}

func (m *fakeManager) onMessage(_ context.Context, _ types.Connection, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A description and a status in one message are taken in that order, as the
	// manager must.
	if d := msg.AgentDescription; d != nil {
		m.events = append(m.events, event{desc: true, release: attr(d, "periscope.release.version")})
	}
	if s := msg.RemoteConfigStatus; s != nil && s.Status != protobufs.RemoteConfigStatuses_RemoteConfigStatuses_UNSET {
		m.events = append(m.events, event{status: s})
	}
	if ec := msg.EffectiveConfig; ec != nil {
		for _, f := range ec.GetConfigMap().GetConfigMap() {
			m.configs = append(m.configs, string(f.Body))
		}
		if r, err := redactpolicy.ReportFromConfig(ec.GetConfigMap()); err == nil {
			m.reports = append(m.reports, r)
		}
		if r, err := thresholds.ReportFromConfig(ec.GetConfigMap()); err == nil {
			m.thrReports = append(m.thrReports, r)
		}
	}
	if msg.Capabilities != 0 {
		m.caps = msg.Capabilities
	}
	if cc := msg.CustomCapabilities; cc != nil {
		m.customCaps = cc.Capabilities
	}
	if cm := msg.CustomMessage; cm != nil && cm.Capability == command.Capability && cm.Type == command.MessageUpdate {
		if u, err := command.DecodeUpdates(cm.Data); err == nil {
			m.updates = append(m.updates, u.Updates...)
		}
	}
	m.messages++
	close(m.changed)
	m.changed = make(chan struct{})
	return &protobufs.ServerToAgent{InstanceUid: msg.InstanceUid, RemoteConfig: m.offer, CustomMessage: m.custom}
}

// setOffer makes o the offer and pushes it to connected WebSocket agents.
func (m *fakeManager) setOffer(t *testing.T, o desired.Offer) []byte {
	t.Helper()
	rc := desired.Encode(o)
	m.mu.Lock()
	m.offer = rc
	conns := make([]types.Connection, 0, len(m.ws))
	for c := range m.ws {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	for _, c := range conns {
		if err := c.Send(context.Background(), &protobufs.ServerToAgent{RemoteConfig: rc}); err != nil {
			t.Logf("push: %v", err)
		}
	}
	return rc.ConfigHash
}

// capabilities are the ones the agent last announced.
func (m *fakeManager) capabilities() protobufs.AgentCapabilities {
	m.mu.Lock()
	defer m.mu.Unlock()
	return protobufs.AgentCapabilities(m.caps)
}

// waitFor waits, with a deadline, until cond holds for what the manager heard.
func (m *fakeManager) waitFor(t *testing.T, what string, cond func(evs []event) bool) []event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		m.mu.Lock()
		evs, ch := slices.Clone(m.events), m.changed
		m.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; the manager heard %v", what, evs)
		}
	}
}

// waitStatus waits for status st of the offer hash and returns it.
func (m *fakeManager) waitStatus(t *testing.T, hash []byte, st protobufs.RemoteConfigStatuses) *protobufs.RemoteConfigStatus {
	t.Helper()
	evs := m.waitFor(t, fmt.Sprintf("%s of %x", st, hash[:4]), func(evs []event) bool { return indexStatus(evs, hash, st) >= 0 })
	return evs[indexStatus(evs, hash, st)].status
}

// waitMessages waits until the manager has heard n more messages, which is how
// the tests let resent offers be processed without sleeping.
func (m *fakeManager) waitMessages(t *testing.T, n int) {
	t.Helper()
	m.mu.Lock()
	target := m.messages + n
	m.mu.Unlock()
	m.waitFor(t, fmt.Sprintf("%d more messages", n), func([]event) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.messages >= target
	})
}

func indexStatus(evs []event, hash []byte, st protobufs.RemoteConfigStatuses) int {
	return slices.IndexFunc(evs, func(e event) bool {
		return e.status != nil && e.status.Status == st && bytes.Equal(e.status.LastRemoteConfigHash, hash)
	})
}

// releaseBefore is the release the manager last heard of before event i.
func releaseBefore(evs []event, i int) string {
	r := ""
	for _, e := range evs[:i] {
		if e.desc {
			r = e.release
		}
	}
	return r
}

// lockedBuffer collects log output from several goroutines, and kicks wrote after
// each line so that a test can wait for one.
type lockedBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default: // a kick is pending already
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testAgent struct {
	*Agent
	dir  string
	logs *lockedBuffer
}

// startAgent runs an agent against m with a fast heartbeat. dir is its data
// directory ("" for a new one); configure adjusts the configuration.
func startAgent(t *testing.T, m *fakeManager, transport, dir string, configure func(*config.Agent)) *testAgent {
	t.Helper()
	return startAgentWith(t, m, transport, dir, configure, Settings{})
}

// startAgentWith is startAgent with collaborators beyond the logger and the
// environment.
func startAgentWith(t *testing.T, m *fakeManager, transport, dir string, configure func(*config.Agent), s Settings) *testAgent {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := config.DefaultAgent()
	cfg.Manager, cfg.Token, cfg.Release, cfg.Transport, cfg.DataDir = m.srv.URL, "pdt_secret_token", "1.0.0", transport, dir
	cfg.HeartbeatInterval = config.Duration(50 * time.Millisecond)
	if configure != nil {
		configure(&cfg)
	}
	logs := &lockedBuffer{wrote: make(chan struct{}, 1)}
	env := []string{"PATH=" + os.Getenv("PATH"), "PERISCOPE_AGENT_TOKEN=pdt_secret_token", "HOOKDIR=" + dir}
	s.Logger, s.Env = slog.New(slog.NewTextHandler(logs, nil)), env
	a, err := New(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	a.killGrace = 200 * time.Millisecond
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	return &testAgent{Agent: a, dir: dir, logs: logs}
}

// waitLog waits until the agent has logged s, looking again after each line.
func (a *testAgent) waitLog(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !strings.Contains(a.logs.String(), s) {
		select {
		case <-a.logs.wrote:
		case <-timeout:
			t.Fatalf("the agent never logged %q; logs:\n%s", s, a.logs)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func needShell(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("update commands need /bin/sh")
	}
}

// gatedHook records each run in $HOOKDIR/runs, writes what it was given to
// $HOOKDIR/seen, says it has got that far on the named pipe $HOOKDIR/started if a
// test made one (see hookStarted), and waits for $HOOKDIR/go-<release> so a test
// can watch the APPLYING status before the outcome.
const gatedHook = `echo {{.Release}} >> "$HOOKDIR/runs"
printf '%s|%s|%s|%s|%s|%s|%s\n' "{{.Release}}" "{{.PreviousRelease}}" "$PERISCOPE_DESIRED_RELEASE" "$PERISCOPE_CURRENT_RELEASE" "$PERISCOPE_STACK" "$PERISCOPE_EXPECTED_CONFIG_HASH" "${PERISCOPE_AGENT_TOKEN:-no token}" > "$HOOKDIR/seen"
if [ -p "$HOOKDIR/started" ]; then echo {{.Release}} > "$HOOKDIR/started"; fi
while [ ! -e "$HOOKDIR/go-{{.Release}}" ]; do sleep 0.01; done`

func release(t *testing.T, dir, rel string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "go-"+rel), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCommandHookAppliesTheOffer(t *testing.T) {
	needShell(t)
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			m := newFakeManager(t)
			a := startAgent(t, m, transport, "", func(c *config.Agent) { c.Update.Command = gatedHook })
			m.waitFor(t, "the first description", func(evs []event) bool { return len(evs) > 0 && evs[0].release == "1.0.0" })
			if caps := m.capabilities(); caps&protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig == 0 ||
				caps&protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig == 0 {
				t.Fatalf("capabilities %b lack the remote-config ones although a hook is configured", caps)
			}

			hash := m.setOffer(t, desired.Offer{Stack: "app", Release: "2.0.0", ConfigHash: "0123456789abcdef"})
			m.waitStatus(t, hash, statusApplying)
			if got := a.Release(); got != "1.0.0" {
				t.Errorf("Release() = %q while applying, want the old 1.0.0", got)
			}
			release(t, a.dir, "2.0.0")
			m.waitStatus(t, hash, statusApplied)

			evs := m.waitFor(t, "the final state", func([]event) bool { return true })
			i := indexStatus(evs, hash, statusApplied)
			if r := releaseBefore(evs, i); r != "2.0.0" {
				t.Errorf("the manager heard APPLIED while the release was %q; events %v", r, evs)
			}
			if j := indexStatus(evs, hash, statusApplying); j > i {
				t.Errorf("APPLYING came after APPLIED: %v", evs)
			}
			if got := a.Release(); got != "2.0.0" {
				t.Errorf("Release() = %q, want 2.0.0", got)
			}
			seen := strings.TrimSpace(readFile(t, filepath.Join(a.dir, "seen")))
			if want := "2.0.0|1.0.0|2.0.0|1.0.0|app|0123456789abcdef|no token"; seen != want {
				t.Errorf("the hook saw %q, want %q", seen, want)
			}
		})
	}
}

func TestCommandHookFailure(t *testing.T) {
	needShell(t)
	m := newFakeManager(t)
	a := startAgent(t, m, "websocket", "", func(c *config.Agent) {
		c.Update.Command = `echo "deploying {{.Release}}"; echo "Error: UPGRADE FAILED: another operation is in progress" >&2; exit 3`
	})
	hash := m.setOffer(t, desired.Offer{Release: "2.0.0"})
	st := m.waitStatus(t, hash, statusFailed)
	for _, want := range []string{"exit status 3", "deploying 2.0.0", "UPGRADE FAILED: another operation is in progress"} {
		if !strings.Contains(st.ErrorMessage, want) {
			t.Errorf("error %q does not contain %q", st.ErrorMessage, want)
		}
	}
	if !strings.HasPrefix(st.ErrorMessage, "exit status 3: ") {
		t.Errorf("error %q does not start with the exit status", st.ErrorMessage)
	}
	if a.Release() != "1.0.0" {
		t.Errorf("Release() = %q after a failed update, want 1.0.0", a.Release())
	}
	for _, e := range m.waitFor(t, "anything", func([]event) bool { return true }) {
		if e.desc && e.release != "1.0.0" {
			t.Errorf("the manager heard release %q after a failed update", e.release)
		}
	}
}

func TestCommandHookOutputKeepsTheEnd(t *testing.T) {
	var b tailBuffer
	b.max = 16
	fmt.Fprint(&b, strings.Repeat("noise ", 100))
	fmt.Fprint(&b, "the real error\n")
	if got := b.String(); !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "the real error") || len(got) > len("…")+b.max {
		t.Errorf("tail = %q, want the last %d bytes, trimmed and marked as cut", got, b.max)
	}
	if len(b.b) > 2*b.max {
		t.Errorf("kept %d bytes, want at most %d", len(b.b), 2*b.max)
	}
}

func TestWebhookHook(t *testing.T) {
	type call struct {
		body    webhookRequest
		ctype   string
		auth    string
		unknown []string
	}
	var mu sync.Mutex
	var calls []call
	answer := http.StatusOK
	ci := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c call
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.body); err != nil {
			c.unknown = append(c.unknown, err.Error())
		}
		c.ctype, c.auth = r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		mu.Lock()
		calls = append(calls, c)
		code := answer
		mu.Unlock()
		w.WriteHeader(code)
		if code != http.StatusOK {
			io.WriteString(w, "pipeline busy: "+strings.Repeat("x", 2000))
		}
	}))
	defer ci.Close()

	m := newFakeManager(t)
	a := startAgent(t, m, "websocket", "", func(c *config.Agent) {
		c.Update.Webhook = ci.URL + "/hooks/deploy?token=url-secret"
		c.Update.WebhookHeaders = map[string]string{"Authorization": "Bearer header-secret"}
	})
	hash := m.setOffer(t, desired.Offer{Stack: "app", Release: "2.0.0", ConfigHash: "abc"})
	m.waitStatus(t, hash, statusApplied)
	if a.Release() != "2.0.0" {
		t.Errorf("Release() = %q, want 2.0.0", a.Release())
	}
	uid := strings.TrimSpace(readFile(t, filepath.Join(a.dir, "instance-uid")))
	mu.Lock()
	if len(calls) != 1 {
		t.Fatalf("webhook called %d times, want once", len(calls))
	}
	want := call{body: webhookRequest{Release: "2.0.0", PreviousRelease: "1.0.0", Stack: "app", ConfigHash: "abc", InstanceUID: uid},
		ctype: "application/json", auth: "Bearer header-secret"}
	if got := calls[0]; !slices.Equal(got.unknown, nil) || got.body != want.body || got.ctype != want.ctype || got.auth != want.auth {
		t.Errorf("webhook got %+v, want %+v", got, want)
	}
	answer = http.StatusServiceUnavailable
	mu.Unlock()

	hash = m.setOffer(t, desired.Offer{Stack: "app", Release: "3.0.0"})
	st := m.waitStatus(t, hash, statusFailed)
	if !strings.HasPrefix(st.ErrorMessage, "webhook answered 503: pipeline busy: xxx") || len(st.ErrorMessage) > 600 {
		t.Errorf("error = %q (%d bytes), want the status and the first 512 bytes of the answer", st.ErrorMessage, len(st.ErrorMessage))
	}
	if a.Release() != "2.0.0" {
		t.Errorf("Release() = %q after a failed webhook, want 2.0.0", a.Release())
	}

	ci.Close()
	hash = m.setOffer(t, desired.Offer{Stack: "app", Release: "4.0.0"})
	st = m.waitStatus(t, hash, statusFailed)
	if !strings.HasPrefix(st.ErrorMessage, "webhook request failed: ") || strings.Contains(st.ErrorMessage, "url-secret") {
		t.Errorf("error = %q, want the transport error without the URL", st.ErrorMessage)
	}

	m.mu.Lock()
	configs := strings.Join(m.configs, "\n")
	m.mu.Unlock()
	for _, secret := range []string{"header-secret", "url-secret", "pdt_secret_token"} {
		if strings.Contains(configs, secret) {
			t.Errorf("the effective configuration reported to the manager holds %q:\n%s", secret, configs)
		}
		if strings.Contains(a.logs.String(), secret) {
			t.Errorf("the agent logged %q:\n%s", secret, a.logs)
		}
	}
	if !strings.Contains(configs, "Authorization: <redacted>") {
		t.Errorf("effective configuration does not show the redacted header:\n%s", configs)
	}
}

func TestResentOfferRunsTheHookOnce(t *testing.T) {
	needShell(t)
	m := newFakeManager(t)
	a := startAgent(t, m, "websocket", "", func(c *config.Agent) { c.Update.Command = gatedHook })
	offer := desired.Offer{Release: "2.0.0"}
	hash := m.setOffer(t, offer)
	m.waitStatus(t, hash, statusApplying)
	m.setOffer(t, offer) // resent while applying
	release(t, a.dir, "2.0.0")
	m.waitStatus(t, hash, statusApplied)
	for range 3 {
		m.setOffer(t, offer) // pushed again; every heartbeat's answer carries it too
	}
	m.waitMessages(t, 5)
	if runs := readFile(t, filepath.Join(a.dir, "runs")); runs != "2.0.0\n" {
		t.Errorf("hook runs = %q, want one", runs)
	}
}

func TestOfferQueuedDuringAnApplyKeepsOnlyTheNewest(t *testing.T) {
	needShell(t)
	m := newFakeManager(t)
	a := startAgent(t, m, "websocket", "", func(c *config.Agent) { c.Update.Command = gatedHook })
	first := m.setOffer(t, desired.Offer{Release: "2.0.0"})
	m.waitStatus(t, first, statusApplying)
	m.setOffer(t, desired.Offer{Release: "2.1.0"})
	a.waitLog(t, "release=2.1.0 applying=2.0.0")
	newest := m.setOffer(t, desired.Offer{Release: "2.2.0"})
	a.waitLog(t, "release=2.2.0 applying=2.0.0")
	release(t, a.dir, "2.0.0")
	// OpAMP carries the agent's current state, not a log of events: APPLIED of
	// the first offer and APPLYING of the newest can go out as one message, so
	// the first's outcome shows as the release the agent now runs.
	m.waitFor(t, "release 2.0.0 running", func(evs []event) bool {
		return slices.ContainsFunc(evs, func(e event) bool { return e.desc && e.release == "2.0.0" })
	})
	m.waitStatus(t, newest, statusApplying)
	release(t, a.dir, "2.2.0")
	m.waitStatus(t, newest, statusApplied)
	if runs := readFile(t, filepath.Join(a.dir, "runs")); runs != "2.0.0\n2.2.0\n" {
		t.Errorf("hook runs = %q, want 2.0.0 then 2.2.0 only", runs)
	}
	if a.Release() != "2.2.0" {
		t.Errorf("Release() = %q, want 2.2.0", a.Release())
	}
}

func TestOfferOfTheRunningReleaseSkipsTheHook(t *testing.T) {
	needShell(t)
	m := newFakeManager(t)
	a := startAgent(t, m, "http", "", func(c *config.Agent) { c.Update.Command = gatedHook })
	hash := m.setOffer(t, desired.Offer{Release: "1.0.0"})
	evs := m.waitFor(t, "APPLIED", func(evs []event) bool { return indexStatus(evs, hash, statusApplied) >= 0 })
	if indexStatus(evs, hash, statusApplying) >= 0 {
		t.Errorf("the agent reported APPLYING for the release it runs: %v", evs)
	}
	if runs := readFile(t, filepath.Join(a.dir, "runs")); runs != "" {
		t.Errorf("the hook ran (%q) for the release already running", runs)
	}
}

func TestUnsafeOffersAreRefused(t *testing.T) {
	needShell(t)
	m := newFakeManager(t)
	a := startAgent(t, m, "websocket", "", func(c *config.Agent) {
		c.Update.Command = `touch "$HOOKDIR/ran"; deploy --stack {{.Stack}} --release {{.Release}}`
	})
	pwned := filepath.Join(a.dir, "pwned")
	hash := m.setOffer(t, desired.Offer{Release: "1.2.3; touch " + pwned})
	st := m.waitStatus(t, hash, statusFailed)
	if !strings.Contains(st.ErrorMessage, "refused release") {
		t.Errorf("error = %q, want a refusal", st.ErrorMessage)
	}

	hash = m.setOffer(t, desired.Offer{Stack: "$(touch " + pwned + ")", Release: "1.2.3"})
	st = m.waitStatus(t, hash, statusFailed)
	if !strings.Contains(st.ErrorMessage, "$PERISCOPE_STACK") {
		t.Errorf("error = %q, want it to point at $PERISCOPE_STACK", st.ErrorMessage)
	}

	notAnOffer := &protobufs.AgentRemoteConfig{ConfigHash: []byte("other"),
		Config: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{"collector.yaml": {Body: []byte("receivers: {}")}}}}
	m.mu.Lock()
	m.offer = notAnOffer
	m.mu.Unlock()
	st = m.waitStatus(t, []byte("other"), statusFailed)
	if !strings.Contains(st.ErrorMessage, "no release offer") {
		t.Errorf("error = %q, want it to say this is not a release offer", st.ErrorMessage)
	}
	for _, f := range []string{pwned, filepath.Join(a.dir, "ran")} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s exists: a refused offer reached the shell", f)
		}
	}
}

func TestAgentWithoutHookTakesNoOffers(t *testing.T) {
	m := newFakeManager(t)
	m.setOffer(t, desired.Offer{Release: "2.0.0"})
	a := startAgent(t, m, "websocket", "", nil)
	m.waitMessages(t, 5)
	if caps := m.capabilities(); caps&(protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig|protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig) != 0 {
		t.Errorf("capabilities %b offer remote config without a hook", caps)
	}
	if evs := m.waitFor(t, "anything", func([]event) bool { return true }); slices.ContainsFunc(evs, func(e event) bool { return e.status != nil }) {
		t.Errorf("an agent without a hook answered an offer: %v", evs)
	}
	if a.Release() != "1.0.0" {
		t.Errorf("Release() = %q", a.Release())
	}
}

func TestRestartKeepsTheAppliedReleaseUntilTheFlagChanges(t *testing.T) {
	needShell(t)
	dir := t.TempDir()
	hook := func(c *config.Agent) { c.Update.Command = gatedHook }
	offer := desired.Offer{Release: "2.0.0"}
	release(t, dir, "2.0.0")

	m := newFakeManager(t)
	a := startAgent(t, m, "websocket", dir, hook)
	hash := m.setOffer(t, offer)
	m.waitStatus(t, hash, statusApplied)
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Same --release: the hook redeployed in place, so the agent runs 2.0.0 and
	// says so at once, without running the hook for the resent offer.
	m2 := newFakeManager(t)
	m2.setOffer(t, offer)
	a2 := startAgent(t, m2, "http", dir, hook)
	if a2.Release() != "2.0.0" {
		t.Errorf("after a restart with the same flag, Release() = %q, want the applied 2.0.0", a2.Release())
	}
	evs := m2.waitFor(t, "the stored status", func(evs []event) bool { return indexStatus(evs, hash, statusApplied) >= 0 })
	if evs[0].release != "2.0.0" {
		t.Errorf("first description after restart has release %q, want 2.0.0", evs[0].release)
	}
	m2.waitMessages(t, 3)
	if runs := readFile(t, filepath.Join(dir, "runs")); runs != "2.0.0\n" {
		t.Errorf("hook runs = %q, want one across the restart", runs)
	}
	if err := a2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A new --release: the operator redeployed, and the flag wins.
	m3 := newFakeManager(t)
	a3 := startAgent(t, m3, "websocket", dir, func(c *config.Agent) { hook(c); c.Release = "3.0.0" })
	if a3.Release() != "3.0.0" {
		t.Errorf("after a redeploy with --release 3.0.0, Release() = %q", a3.Release())
	}
	evs = m3.waitFor(t, "a description", func(evs []event) bool { return len(evs) > 0 })
	if evs[0].release != "3.0.0" {
		t.Errorf("description release = %q, want 3.0.0", evs[0].release)
	}
	if err := a3.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Back to the first flag value: not mistaken for the state of the first run.
	a4 := startAgent(t, newFakeManager(t), "websocket", dir, hook)
	if a4.Release() != "1.0.0" {
		t.Errorf("after a redeploy back to --release 1.0.0, Release() = %q", a4.Release())
	}
}

func TestInterruptedApplyIsReportedFailedAfterRestart(t *testing.T) {
	needShell(t)
	dir := t.TempDir()
	hook := func(c *config.Agent) { c.Update.Command = gatedHook }
	m := newFakeManager(t)
	a := startAgent(t, m, "websocket", dir, hook)
	started := hookStarted(t, dir)
	hash := m.setOffer(t, desired.Offer{Release: "2.0.0"})
	started(t, "2.0.0") // the hook has recorded its run and waits: the agent stops mid-apply
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	m2 := newFakeManager(t)
	m2.setOffer(t, desired.Offer{Release: "2.0.0"})
	a2 := startAgent(t, m2, "websocket", dir, hook)
	st := m2.waitStatus(t, hash, statusFailed)
	if !strings.Contains(st.ErrorMessage, "agent stopped while the update hook was running") {
		t.Errorf("error = %q, want it to say the apply was interrupted", st.ErrorMessage)
	}
	m2.waitMessages(t, 3)
	if runs := readFile(t, filepath.Join(dir, "runs")); runs != "2.0.0\n" {
		t.Errorf("hook runs = %q, want the interrupted one only", runs)
	}
	if a2.Release() != "1.0.0" {
		t.Errorf("Release() = %q, want 1.0.0", a2.Release())
	}
}
