package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/agent/record"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// testConfig points an agent at a manager that answers nothing useful: the
// lifecycle, not the check-in, is under test.
func testConfig(t *testing.T) config.Agent {
	t.Helper()
	mgr := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(mgr.Close)
	cfg := config.DefaultAgent()
	cfg.Manager, cfg.Token, cfg.Release, cfg.Transport = mgr.URL, "pdt_test", "1.0.0", "http"
	cfg.DataDir = t.TempDir()
	cfg.OTLPGRPC, cfg.OTLPHTTP = "127.0.0.1:0", "127.0.0.1:0"
	return cfg
}

func TestNewStartsNothingAndShutdownIsSafeWithoutStart(t *testing.T) {
	a, err := New(testConfig(t), Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if g, h := a.Addrs(); g != "" || h != "" {
		t.Errorf("New bound addresses %q %q before Start", g, h)
	}
	if err := a.Wait(); err != nil {
		t.Errorf("Wait without Start = %v, want nil at once", err)
	}
	for range 2 {
		if err := a.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown without Start: %v", err)
		}
	}
}

func TestNewRefusesAnInvalidConfiguration(t *testing.T) {
	cfg := testConfig(t)
	cfg.Token = ""
	if _, err := New(cfg, Settings{}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("New with no token = %v, want an error naming the token", err)
	}
}

func TestStartServesOTLPAndShutdownEndsWait(t *testing.T) {
	a, err := New(testConfig(t), Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, httpAddr := a.Addrs()
	resp, err := http.Post("http://"+httpAddr+"/v1/logs", "application/x-protobuf", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("an empty OTLP/HTTP logs export got %d, want 200", resp.StatusCode)
	}
	waited := make(chan error, 1)
	go func() { waited <- a.Wait() }()
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-waited; err != nil {
		t.Errorf("Wait after Shutdown = %v, want nil", err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestAPortInUseIsAStartupErrorThatLeavesNothingRunning(t *testing.T) {
	taken := takenAddr(t)
	cfg := testConfig(t)
	cfg.OTLPGRPC = taken
	cfg.OTLPHTTP = testenv.ClosedAddr(t) // a port for OTLP/HTTP, bound before gRPC
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a taken port = %v, want address already in use", err)
	}
	// The OTLP/HTTP port it had bound is free again.
	again, err := net.Listen("tcp", cfg.OTLPHTTP)
	if err != nil {
		t.Fatalf("the OTLP/HTTP port stayed bound after a failed start: %v", err)
	}
	again.Close()
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed start: %v", err)
	}
}

// takenAddr is a loopback address a listener holds until the test ends.
func takenAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

func TestRedactionHashKeyIsKeptPrivately(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Agent{DataDir: dir}
	k1, err := redactionHashKey(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "redaction-hash.key"))
	if err != nil || st.Mode().Perm() != 0o600 || len(k1) != 32 {
		t.Fatalf("key file %v (%v), key of %d bytes; want 0600 and 32 bytes", st, err, len(k1))
	}
	k2, err := redactionHashKey(cfg)
	if err != nil || string(k1) != string(k2) {
		t.Error("a restarted agent hashes with another key: hashed values would stop joining")
	}
	cfg.Redaction.HashKey = "the customer's own"
	if k, _ := redactionHashKey(cfg); string(k) != "the customer's own" {
		t.Errorf("configured key ignored: %q", k)
	}
}

// A restarted agent redacts with the vendor policy the manager sent its last run
// from the first record, before it has reached the manager again; a customer policy
// stays in force where it is the stricter.
func TestKeptVendorPolicyRunsBeforeTheFirstCheckin(t *testing.T) {
	cfg := testConfig(t)
	vendor := redactpolicy.Policy{Detectors: map[string]string{"email": redactpolicy.ActionHash, "ip": redactpolicy.ActionOff},
		Attributes: redactpolicy.Attributes{Deny: []string{"user.ssn"}}}
	cfg.Redaction = redactpolicy.Policy{Detectors: map[string]string{"email": redactpolicy.ActionOff}}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, opamp.VendorRedactionFile), redactpolicy.EncodePolicy(vendor), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	got := a.pipe.Redaction()
	if want := redactpolicy.Merge(vendor, cfg.Redaction); got.Hash() != want.Hash() {
		t.Fatalf("the pipeline runs %+v, want %+v", got, want)
	}
	if got.Detectors["email"] != redactpolicy.ActionHash || got.Detectors["ip"] != redactpolicy.ActionMask || len(got.Deny) != 1 {
		t.Errorf("detectors %v deny %v: want email hashed (vendor), ip masked (customer's default), user.ssn denied", got.Detectors, got.Deny)
	}
}

// A command's output passes the effective redaction policy the telemetry does.
func TestCommandOutputPassesTheAgentsRedaction(t *testing.T) {
	cfg := testConfig(t)
	cfg.Redaction = redactpolicy.Policy{Detectors: map[string]string{"email": redactpolicy.ActionHash}, HashKey: "customer-key"}
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	out, counts := a.outRed.redact("url=postgres://app:hunter2@db/orders owner=ops@example.com rows=42")
	if strings.Contains(out, "hunter2") || strings.Contains(out, "ops@example.com") || !strings.Contains(out, "rows=42") {
		t.Errorf("redacted output %q", out)
	}
	if counts["password"] != 1 || counts["email"] != 1 {
		t.Errorf("counts %v, want one password and one e-mail", counts)
	}
}

// What the commands runner decides reaches the customer's local record, and
// the report, through the agent's wiring.
func TestCommandsAreInTheCustomersRecord(t *testing.T) {
	cfg := testConfig(t)
	cfg.Commands = command.Rule{Disabled: true}
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.cmds.Invoke([]command.Invocation{{ID: "inv-1", Command: "db.rows", Deadline: time.Now().Add(time.Minute), By: "alice", Reason: "ticket 42"}})
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := record.Summarise(record.Dir(cfg.DataDir), time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if s.Commands.Events[record.CommandReceived] != 1 || s.Commands.States["refused"] != 1 {
		t.Fatalf("the record holds %+v", s.Commands)
	}
	last := s.Commands.Recent[len(s.Commands.Recent)-1]
	if last.By != "alice" || last.Why != "ticket 42" || !strings.Contains(last.Detail, "not declared") {
		t.Errorf("refusal recorded as %+v", last)
	}
}

func TestRuntimeSignalsReachThePipelineAndASourceDownIsReported(t *testing.T) {
	down := testenv.ClosedAddr(t)
	cfg := testConfig(t)
	cfg.Runtime.Queues = []config.QueueSource{{Kind: config.QueueRedisStream, Name: "jobs", URL: "redis://" + down, Stream: "jobs",
		PasswordEnv: "JOBS_REDIS_PASSWORD"}}
	a, err := New(cfg, Settings{Env: []string{"JOBS_REDIS_PASSWORD=s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	if rs, ok := a.sources[0].(interface{ Name() string }); !ok || rs.Name() != "redis-stream/jobs" {
		t.Fatalf("sources %v", a.sources)
	}
	// One round more than the one Start began: when it returns, its request
	// is queued.
	a.collector.Round(t.Context())
	_, httpAddr := a.Addrs()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := io.Copy(&body, resp.Body); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(body.String(), "\n") {
		if strings.HasPrefix(line, `periscope_agent_accepted_records_total{signal="metrics"}`) {
			if strings.HasSuffix(line, " 0") {
				t.Errorf("no runtime metric queued: %s", line)
			}
			return
		}
	}
	t.Errorf("no accepted metrics counter in:\n%s", body.String())
}

// An agent whose OTLP port is taken exits before it checks in: the manager
// never sees a session under the deployment's token from an agent that then
// vanishes, and the error names the setting to change.
func TestAPortInUseFailsBeforeTheCheckin(t *testing.T) {
	var requests atomic.Int64
	mgr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(mgr.Close)
	for _, port := range []string{"otlp_http", "otlp_grpc"} {
		cfg := testConfig(t)
		cfg.Manager = mgr.URL
		if port == "otlp_http" {
			cfg.OTLPHTTP = takenAddr(t)
		} else {
			cfg.OTLPGRPC = takenAddr(t)
		}
		a, err := New(cfg, Settings{Env: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		err = a.Start(t.Context())
		if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), port) {
			t.Fatalf("%s taken: Start = %v, want address already in use naming %s", port, err, port)
		}
		if n := requests.Load(); n != 0 {
			t.Fatalf("%s taken: the manager got %d check-in request(s) before the agent failed", port, n)
		}
		if err := a.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown after a failed start: %v", err)
		}
	}
}
