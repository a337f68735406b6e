package commands

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// sink collects the updates the runner sends; it refuses them while failing.
type sink struct {
	ch chan command.Update
	mu sync.Mutex
	// fail makes Send refuse, as with no connection to the manager.
	fail bool
}

func newSink() *sink { return &sink{ch: make(chan command.Update, 4096)} }

func (s *sink) Send(_ context.Context, ups []command.Update) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("not connected")
	}
	for _, u := range ups {
		s.ch <- u
	}
	return nil
}

func (s *sink) setFail(v bool) {
	s.mu.Lock()
	s.fail = v
	s.mu.Unlock()
}

// await reads updates until id reaches state, and returns it.
func (s *sink) await(t *testing.T, id string, state command.State) command.Update {
	t.Helper()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case u := <-s.ch:
			if u.ID == id && u.State == state {
				return u
			}
			if u.ID == id && u.State.Final() {
				t.Fatalf("invocation %s ended %s (%s), want %s", id, u.State, u.Reason, state)
			}
		case <-timeout.C:
			t.Fatalf("invocation %s did not reach %s within a minute", id, state)
		}
	}
}

// drain returns what has been sent so far without waiting.
func (s *sink) drain() []command.Update {
	var out []command.Update
	for {
		select {
		case u := <-s.ch:
			out = append(out, u)
		default:
			return out
		}
	}
}

// redactor is the agent's own redaction under the default policy.
func redactor(t testing.TB) Redactor {
	p, err := redact.Compile(redactpolicy.Merge(redactpolicy.Policy{}, redactpolicy.Policy{}), []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return func(s string) (string, map[string]int) {
		var st redact.Stats
		out := p.Text(s, "command.output", &st)
		m := map[string]int{}
		for r, n := range st.Reasons {
			if n > 0 {
				m[redact.Reason(r).String()] = n
			}
		}
		return out, m
	}
}

type env struct {
	dir  string
	runs string
	sink *sink
	rec  *recorder
	r    *Runner
}

// recorder keeps the events the runner records for the customer.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Command(ev Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) all() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// helperSpec declares the test binary as an executable in mode.
func helperSpec(t testing.TB, name, mode string) command.Spec {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return command.Spec{Name: name, Exec: &command.ExecHandler{Path: exe, Args: []string{mode}}}
}

func start(t *testing.T, dir string, rule command.Rule, specs ...command.Spec) *env {
	t.Helper()
	return startWith(t, dir, rule, nil, specs...)
}

// startWith starts a runner whose executables also get extraEnv.
func startWith(t *testing.T, dir string, rule command.Rule, extraEnv []string, specs ...command.Spec) *env {
	t.Helper()
	e := &env{dir: dir, runs: filepath.Join(dir, "runs"), sink: newSink(), rec: &recorder{}}
	r, err := New(Settings{Dir: filepath.Join(dir, "commands"), Rule: rule, Redact: redactor(t), Sink: e.sink, Record: e.rec,
		Env: append([]string{helperEnv + "=1", runsEnv + "=" + e.runs, "PERISCOPE_AGENT_TOKEN=pdt_secret", "PERISCOPE_PARAM_TABLE=from-the-agent", "PATH=/usr/bin:/bin"}, extraEnv...)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	if specs != nil {
		if err := r.SetSpecs(specs); err != nil {
			t.Fatal(err)
		}
	}
	e.r = r
	return e
}

// runs counts the helper's runs.
func (e *env) runCount(t *testing.T) int {
	b, err := os.ReadFile(e.runs)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

func inv(id, name string, params map[string]any) command.Invocation {
	return command.Invocation{ID: id, Command: name, Params: params, Deadline: time.Now().Add(time.Minute), By: "alice", Reason: "ticket 42"}
}

func TestExecPassesParametersInTheEnvironment(t *testing.T) {
	spec := helperSpec(t, "env", "env")
	spec.Params = []command.Param{{Name: "table", Type: command.TypeString}, {Name: "max-rows", Type: command.TypeInteger}}
	e := start(t, t.TempDir(), command.Rule{}, spec)
	e.r.Invoke([]command.Invocation{inv("i1", "env", map[string]any{"table": "orders", "max-rows": json.Number("10")})})
	e.sink.await(t, "i1", command.StateDelivered)
	e.sink.await(t, "i1", command.StateRunning)
	u := e.sink.await(t, "i1", command.StateSucceeded)
	out := u.Result.Output
	for _, want := range []string{"PERISCOPE_PARAM_TABLE=orders", "PERISCOPE_PARAM_MAX_ROWS=10", "PERISCOPE_COMMAND=env", "PERISCOPE_INVOCATION_ID=i1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %s", out, want)
		}
	}
	if strings.Contains(out, "pdt_secret") || strings.Contains(out, "from-the-agent") {
		t.Errorf("the agent's own PERISCOPE_ settings reached the command: %q", out)
	}
	if u.Result.ExitCode == nil || *u.Result.ExitCode != 0 || u.Result.OutputBytes != int64(len(out)) || u.Result.Truncated {
		t.Errorf("result = %+v, want exit 0 and all output", u.Result)
	}
}

func TestExecPassesParametersAsJSONOnStdin(t *testing.T) {
	spec := helperSpec(t, "stdin", "stdin")
	spec.Exec.Params = command.ParamsStdin
	spec.Params = []command.Param{{Name: "table", Type: command.TypeString}, {Name: "dry", Type: command.TypeBoolean, Default: true}}
	e := start(t, t.TempDir(), command.Rule{}, spec)
	e.r.Invoke([]command.Invocation{inv("i1", "stdin", map[string]any{"table": "orders"})})
	u := e.sink.await(t, "i1", command.StateSucceeded)
	if got, want := u.Result.Output, `{"dry":true,"table":"orders"}`; got != want {
		t.Errorf("stdin reached the executable as %q, want %q", got, want)
	}
}

func TestExecNonZeroExitFails(t *testing.T) {
	e := start(t, t.TempDir(), command.Rule{}, helperSpec(t, "broken", "exit3"))
	e.r.Invoke([]command.Invocation{inv("i1", "broken", nil)})
	u := e.sink.await(t, "i1", command.StateFailed)
	if u.Result.ExitCode == nil || *u.Result.ExitCode != 3 || !strings.Contains(u.Reason, "status 3") {
		t.Errorf("update = %+v (%+v), want exit 3 named in the reason", u, u.Result)
	}
	if !strings.Contains(u.Result.Output, "no such table") {
		t.Errorf("output %q lacks what the executable wrote to stderr", u.Result.Output)
	}
}

func TestHTTPHandlers(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RawQuery+" "+string(body)+" "+r.Header.Get("X-Key"))
		mu.Unlock()
		if r.URL.Path == "/fail" {
			http.Error(w, "cache is down", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "flushed 12 keys")
	}))
	defer srv.Close()
	params := []command.Param{{Name: "prefix", Type: command.TypeString}}
	specs := []command.Spec{
		{Name: "flush", Params: params, HTTP: &command.HTTPHandler{URL: srv.URL + "/flush", Headers: map[string]string{"X-Key": "k1"}}},
		{Name: "probe", Params: params, HTTP: &command.HTTPHandler{URL: srv.URL + "/probe?v=1", Method: "GET"}},
		{Name: "down", HTTP: &command.HTTPHandler{URL: srv.URL + "/fail"}},
	}
	e := start(t, t.TempDir(), command.Rule{}, specs...)
	e.r.Invoke([]command.Invocation{inv("post", "flush", map[string]any{"prefix": "user:"})})
	u := e.sink.await(t, "post", command.StateSucceeded)
	if u.Result.HTTPStatus != 200 || u.Result.Output != "flushed 12 keys" {
		t.Errorf("POST result = %+v", u.Result)
	}
	e.r.Invoke([]command.Invocation{inv("get", "probe", map[string]any{"prefix": "a b"})})
	e.sink.await(t, "get", command.StateSucceeded)
	e.r.Invoke([]command.Invocation{inv("fail", "down", nil)})
	u = e.sink.await(t, "fail", command.StateFailed)
	if u.Result.HTTPStatus != 503 || !strings.Contains(u.Reason, "503") || !strings.Contains(u.Result.Output, "cache is down") {
		t.Errorf("failing endpoint: %+v %+v", u, u.Result)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{`POST  {"prefix":"user:"} k1`, `GET prefix=a+b&v=1  `, `POST  {} `}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the endpoint got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestChecksRefuseBeforeAnythingRuns(t *testing.T) {
	spec := helperSpec(t, "rows", "env")
	spec.Params = []command.Param{{Name: "limit", Type: command.TypeInteger, Max: ptr(100.0)}}
	past := inv("late", "rows", nil)
	past.Deadline = time.Now().Add(-time.Second)
	for _, tc := range []struct {
		name   string
		rule   command.Rule
		inv    command.Invocation
		state  command.State
		reason string
	}{
		{"undeclared", command.Rule{}, inv("u", "drop-tables", nil), command.StateRefused, "not declared"},
		{"disabled by the customer", command.Rule{Disabled: true}, inv("d", "rows", nil), command.StateRefused, "disabled"},
		{"not on the allow-list", command.Rule{Allow: []string{"other"}}, inv("a", "rows", nil), command.StateRefused, "allows only"},
		{"parameter out of bounds", command.Rule{}, inv("p", "rows", map[string]any{"limit": json.Number("1000")}), command.StateRefused, "invalid parameters"},
		{"unknown parameter", command.Rule{}, inv("x", "rows", map[string]any{"sql": "drop table"}), command.StateRefused, "no parameter"},
		{"past its deadline", command.Rule{}, past, command.StateExpired, "deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, t.TempDir(), tc.rule, spec)
			e.r.Invoke([]command.Invocation{tc.inv})
			e.sink.await(t, tc.inv.ID, command.StateDelivered)
			u := e.sink.await(t, tc.inv.ID, tc.state)
			if !strings.Contains(u.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", u.Reason, tc.reason)
			}
			if n := e.runCount(t); n != 0 {
				t.Errorf("the executable ran %d times, want never", n)
			}
			evs := e.rec.all()
			if len(evs) != 2 || evs[0].Kind != "received" || evs[1].State != tc.state || evs[1].Reason != u.Reason ||
				evs[1].Invocation.By != "alice" || evs[1].Invocation.Reason != "ticket 42" {
				t.Errorf("the customer's record holds %+v", evs)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestDeadlineKillsTheRunAndEndsExpired(t *testing.T) {
	e := start(t, t.TempDir(), command.Rule{}, helperSpec(t, "hang", "sleep"))
	i := inv("i1", "hang", nil)
	i.Deadline = time.Now().Add(time.Second)
	e.r.Invoke([]command.Invocation{i})
	u := e.sink.await(t, "i1", command.StateExpired)
	if !strings.Contains(u.Reason, "deadline") || u.Result == nil || u.Result.Signal == "" {
		t.Errorf("update = %+v (%+v), want expired at the deadline, killed by a signal", u, u.Result)
	}
	if !strings.Contains(u.Result.Output, "sleeping") {
		t.Errorf("output before the kill is lost: %q", u.Result.Output)
	}
}

func TestTimeoutKillsTheRunAndEndsFailed(t *testing.T) {
	spec := helperSpec(t, "hang", "sleep")
	spec.Timeout = command.Duration(500 * time.Millisecond)
	e := start(t, t.TempDir(), command.Rule{}, spec)
	e.r.Invoke([]command.Invocation{inv("i1", "hang", nil)})
	u := e.sink.await(t, "i1", command.StateFailed)
	if !strings.Contains(u.Reason, "timed out after 500ms") {
		t.Errorf("reason %q does not name the command's timeout", u.Reason)
	}
}

func TestOutputOverTheLimitIsCutAndMarked(t *testing.T) {
	spec := helperSpec(t, "big", "big")
	spec.OutputLimit = 1000
	e := start(t, t.TempDir(), command.Rule{}, spec)
	e.r.Invoke([]command.Invocation{inv("i1", "big", nil)})
	u := e.sink.await(t, "i1", command.StateSucceeded)
	r := u.Result
	if len(r.Output) != 1000 || r.OutputBytes != 100000 || !r.Truncated {
		t.Errorf("output of %d bytes, output_bytes %d, truncated %v; want 1000, 100000, true", len(r.Output), r.OutputBytes, r.Truncated)
	}
}

func TestSecretsInTheOutputArriveMasked(t *testing.T) {
	e := start(t, t.TempDir(), command.Rule{}, helperSpec(t, "dump", "secret"))
	e.r.Invoke([]command.Invocation{inv("i1", "dump", nil)})
	u := e.sink.await(t, "i1", command.StateSucceeded)
	r := u.Result
	for _, secret := range []string{"hunter2", "AKIAIOSFODNN7EXAMPLE", "eyJzdWIiOiIxIn0"} {
		if strings.Contains(r.Output, secret) {
			t.Errorf("output still holds %q:\n%s", secret, r.Output)
		}
	}
	if !strings.Contains(r.Output, "rows: 42") {
		t.Errorf("redaction removed what is not secret:\n%s", r.Output)
	}
	if r.Redacted["password"] == 0 || r.Redacted["api_key"] == 0 {
		t.Errorf("redacted counts = %v, want password and api_key", r.Redacted)
	}
	if len(r.OutputSHA256) != 64 {
		t.Errorf("no output hash: %+v", r)
	}
}

func TestARedeliveredIDIsNotRunAgain(t *testing.T) {
	dir := t.TempDir()
	spec := helperSpec(t, "env", "env")
	e := start(t, dir, command.Rule{}, spec)
	e.r.Invoke([]command.Invocation{inv("i1", "env", nil)})
	first := e.sink.await(t, "i1", command.StateSucceeded)
	e.r.Invoke([]command.Invocation{inv("i1", "env", nil)})
	again := e.sink.await(t, "i1", command.StateSucceeded)
	if again.Result.OutputSHA256 != first.Result.OutputSHA256 {
		t.Errorf("the outcome sent again differs: %+v vs %+v", again.Result, first.Result)
	}
	if err := e.r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// After a restart the journal still knows it.
	e2 := start(t, dir, command.Rule{})
	e2.r.Invoke([]command.Invocation{inv("i1", "env", nil)})
	e2.sink.await(t, "i1", command.StateSucceeded)
	if n := e.runCount(t); n != 1 {
		t.Errorf("the executable ran %d times, want once", n)
	}
	if got := command.Names(e2.r.Specs()); len(got) != 1 || got[0] != "env" {
		t.Errorf("the declarations did not survive the restart: %v", got)
	}
}

func TestFinalUpdatesAreSentAgainUntilAcked(t *testing.T) {
	e := start(t, t.TempDir(), command.Rule{}, helperSpec(t, "env", "env"))
	e.sink.setFail(true)
	e.r.Invoke([]command.Invocation{inv("i1", "env", nil)})
	// With no connection nothing is lost: once it is back, every state goes.
	e.r.wg.Wait() // the run has ended: its updates wait in the outbox
	e.sink.setFail(false)
	e.r.sendPending(context.Background(), false)
	var states []command.State
	for _, u := range e.sink.drain() {
		states = append(states, u.State)
	}
	if want := []command.State{command.StateDelivered, command.StateRunning, command.StateSucceeded}; !equalStates(states, want) {
		t.Fatalf("sent %v once reconnected, want %v", states, want)
	}
	e.r.sendPending(context.Background(), true)
	if got := e.sink.drain(); len(got) != 1 || got[0].State != command.StateSucceeded {
		t.Fatalf("resend sent %+v, want the unacked final update", got)
	}
	if err := e.r.HandleMessage(command.Message(command.MessageAck, command.Ack{IDs: []string{"i1"}})); err != nil {
		t.Fatal(err)
	}
	e.r.sendPending(context.Background(), true)
	if got := e.sink.drain(); len(got) != 0 {
		t.Fatalf("resend after the ack sent %+v, want nothing", got)
	}
}

func equalStates(a, b []command.State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// An agent without an update hook is never offered a release, so it runs the
// declaration that comes with the invocation — under its customer's rule and its
// own parameter check. Once an offer has brought declarations, only those count.
func TestAgentWithoutOffersRunsTheInvocationsDeclaration(t *testing.T) {
	spec := helperSpec(t, "rows", "env")
	spec.Params = []command.Param{{Name: "limit", Type: command.TypeInteger, Max: ptr(100.0)}}
	e := start(t, t.TempDir(), command.Rule{})
	carried := inv("c1", "rows", map[string]any{"limit": json.Number("5")})
	carried.Spec = &spec
	e.r.Invoke([]command.Invocation{carried})
	e.sink.await(t, "c1", command.StateSucceeded)
	bad := inv("c2", "rows", map[string]any{"limit": json.Number("500")})
	bad.Spec = &spec
	e.r.Invoke([]command.Invocation{bad})
	if u := e.sink.await(t, "c2", command.StateRefused); !strings.Contains(u.Reason, "invalid parameters") {
		t.Errorf("out-of-bounds parameter with a carried declaration: %q", u.Reason)
	}
	bare := inv("c3", "rows", nil)
	e.r.Invoke([]command.Invocation{bare})
	if u := e.sink.await(t, "c3", command.StateRefused); !strings.Contains(u.Reason, "holds no release declarations") {
		t.Errorf("no declaration anywhere: %q", u.Reason)
	}
	if n := e.runCount(t); n != 1 {
		t.Errorf("the executable ran %d times, want once", n)
	}

	offered := start(t, t.TempDir(), command.Rule{}, helperSpec(t, "other", "env"))
	smuggled := inv("s1", "rows", nil)
	smuggled.Spec = &spec
	offered.r.Invoke([]command.Invocation{smuggled})
	if u := offered.sink.await(t, "s1", command.StateRefused); !strings.Contains(u.Reason, "not declared by the release this agent was offered") {
		t.Errorf("a declaration the offer does not hold: %q", u.Reason)
	}
	if n := offered.runCount(t); n != 0 {
		t.Errorf("the offered agent ran %d times, want never", n)
	}
}
