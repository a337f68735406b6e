package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// replicaArg makes the test binary a manager replica (see runReplica), so the
// test can kill it with SIGKILL.
const replicaArg = "e2e-manager-replica"

// replicaStaleAfter is the replicas' stale_after: long enough for an agent to
// reconnect through the load balancer after its replica dies, short enough
// that a replica reading last check-ins wrongly would mark it stale.
const replicaStaleAfter = 10 * time.Second

// runReplica runs a manager on the fleet store args[2] names (a PostgreSQL
// URL), listening on args[0] with data directory args[1], until SIGTERM.
func runReplica(args []string) int {
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.Storage, cfg.AdminToken = args[0], args[1], args[2], adminToken
	cfg.HeartbeatInterval = config.Duration(time.Second)
	cfg.StaleAfter = config.Duration(replicaStaleAfter)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, err := manager.New(cfg, manager.Settings{Logger: log, EvalInterval: 100 * time.Millisecond, FlushInterval: 200 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := m.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	err = m.Wait(ctx)
	m.Shutdown(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// replica is a manager replica running as a child process.
type replica struct {
	name string
	addr string
	cmd  *exec.Cmd
	api  *apiclient.Client
}

func startReplica(t *testing.T, name, storage string) *replica {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, addr: freePort(t)}
	r.cmd = exec.Command(self, replicaArg, r.addr, t.TempDir(), storage)
	if testing.Verbose() {
		r.cmd.Stderr = os.Stderr
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.kill)
	r.api = apiclient.New(r.url(), adminToken)
	eventually(t, 20*time.Second, "replica "+name+" serving", func() error {
		_, err := r.role()
		return err
	})
	return r
}

func (r *replica) url() string { return "http://" + r.addr }

// role is the replica's fleet role from /healthz: leader or follower.
func (r *replica) role() (string, error) {
	resp, err := http.Get(r.url() + "/healthz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return resp.Header.Get("Periscope-Fleet-Role"), nil
}

func (r *replica) kill() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// balancer is the load balancer in front of the replicas, as simple as one
// gets: a TCP forwarder to one upstream, without stickiness, that can be
// pointed at another (and then drops what it forwarded to the old one).
type balancer struct {
	ln       net.Listener
	upstream atomic.Pointer[string]
	// holding swallows the upstream's answers while set, so a test can have a
	// replica die between doing a request's work and its answer reaching the
	// client, the window a SIGKILL otherwise hits only by chance.
	holding atomic.Bool
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newBalancer(t *testing.T, upstream string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, conns: map[net.Conn]struct{}{}}
	b.upstream.Store(&upstream)
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() {
		ln.Close()
		b.dropAll()
		b.wg.Wait()
	})
	return b
}

func (b *balancer) url() string { return "http://" + b.ln.Addr().String() }

// point sends new connections to upstream and drops the ones in flight,
// answers held back included, and forwards answers again.
func (b *balancer) point(upstream string) {
	b.upstream.Store(&upstream)
	b.dropAll()
	b.holding.Store(false)
}

// hold stops forwarding answers to clients (they are discarded) until point.
func (b *balancer) hold() { b.holding.Store(true) }

func (b *balancer) dropAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}

func (b *balancer) track(c net.Conn, add bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if add {
		b.conns[c] = struct{}{}
	} else {
		delete(b.conns, c)
	}
	return true
}

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", *b.upstream.Load())
		if err != nil {
			in.Close()
			continue
		}
		b.track(in, true)
		b.track(out, true)
		b.wg.Add(2)
		pipe := func(dst, src net.Conn, answers bool) {
			defer b.wg.Done()
			w := io.Writer(dst)
			if answers {
				w = heldWriter{dst, &b.holding}
			}
			_, _ = io.Copy(w, src)
			dst.Close()
			src.Close()
			b.track(src, false)
		}
		go pipe(out, in, false)
		go pipe(in, out, true)
	}
}

// heldWriter discards what it is given while holding is set.
type heldWriter struct {
	w       io.Writer
	holding *atomic.Bool
}

func (h heldWriter) Write(p []byte) (int, error) {
	if h.holding.Load() {
		return len(p), nil
	}
	return h.w.Write(p)
}

// replicaAgent runs an in-process agent through url that applies every offer
// at once (its update hook succeeds), over transport.
func replicaAgent(t *testing.T, url, token, transport string) *opamp.Agent {
	t.Helper()
	return startAgent(t, url, token, transport, "1.1", config.Agent{Update: config.AgentUpdate{Command: "true"}}, nil)
}

// startReplicaPair starts replica A on a fresh PostgreSQL database, waits
// until it leads, and starts replica B beside it as a follower.
func startReplicaPair(t *testing.T) (a, b *replica) {
	t.Helper()
	storage := testenv.PostgresDatabase(t)
	a = startReplica(t, "A", storage)
	eventually(t, 10*time.Second, "replica A leads", func() error {
		if role, err := a.role(); err != nil || role != "leader" {
			return fmt.Errorf("role %q, %v", role, err)
		}
		return nil
	})
	b = startReplica(t, "B", storage)
	if role, err := b.role(); err != nil || role != "follower" {
		t.Fatalf("replica B started beside a leader: role %q, %v; want follower", role, err)
	}
	return a, b
}

// TestReplicasShareOneFleet runs two manager processes on one PostgreSQL
// database with agents spread over both behind a load balancer each (push
// agents over WebSocket, pull agents polling over HTTP, and an agent process
// that runs remote commands): a pin made through A reaches a push agent on B
// within a second and a pull agent on B at its next poll; a command queued on
// B runs on an agent connected to A; and when A is killed with SIGKILL, its
// agents move to B, B takes over the leader's work (it notices an agent going
// silent), and no deployment was ever stale on the way.
func TestReplicasShareOneFleet(t *testing.T) {
	ctx := context.Background()
	a, b := startReplicaPair(t)

	// The vendor's service a remote command asks.
	var pings atomic.Int64
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pings.Add(1)
		fmt.Fprintln(w, "pong")
	}))
	defer svc.Close()
	specs := []command.Spec{{Name: "ping", Description: "ask the service", HTTP: &command.HTTPHandler{URL: svc.URL + "/ping"}}}
	for _, v := range []string{"1.0", "1.1"} {
		if _, err := a.api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: v, Commands: specs}); err != nil {
			t.Fatal(err)
		}
	}
	ids := []string{"push-a", "pull-a", "cmd-a", "push-b", "pull-b", "ghost-b"}
	tokens := map[string]string{}
	for _, id := range ids {
		d, err := a.api.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: "acme", Stack: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[id] = d.Token
	}
	// Created on A, known to B (its agents authenticate there).
	eventually(t, 5*time.Second, "B lists what A created", func() error {
		got, err := b.api.Deployments(ctx, apiclient.Filter{})
		if err != nil || len(got) != len(ids) {
			return fmt.Errorf("%d deployments, %v", len(got), err)
		}
		return nil
	})

	lbA, lbB := newBalancer(t, a.addr), newBalancer(t, b.addr)
	agents := map[string]*opamp.Agent{
		"push-a":  replicaAgent(t, lbA.url(), tokens["push-a"], "websocket"),
		"pull-a":  replicaAgent(t, lbA.url(), tokens["pull-a"], "http"),
		"push-b":  replicaAgent(t, lbB.url(), tokens["push-b"], "websocket"),
		"pull-b":  replicaAgent(t, lbB.url(), tokens["pull-b"], "http"),
		"ghost-b": replicaAgent(t, lbB.url(), tokens["ghost-b"], "websocket"),
	}
	startCommandAgent(t, lbA.url(), tokens["cmd-a"], "websocket")
	for _, r := range []*replica{a, b} {
		eventually(t, 15*time.Second, "every deployment healthy as "+r.name+" sees it", func() error {
			got, err := r.api.Deployments(ctx, apiclient.Filter{})
			if err != nil {
				return err
			}
			for _, d := range got {
				if d.Status != fleet.StatusHealthy {
					return fmt.Errorf("%s is %s on %q", d.ID, d.Status, d.Release)
				}
			}
			return nil
		})
	}

	// A pin through A reaches the push agent on B at once, the pull agent on
	// B at its next poll.
	start := time.Now()
	if _, err := a.api.ChangePins(ctx, apitypes.PinRequest{Action: fleet.ActionPin, Release: "1.0", Reason: "incident 7", Deployments: []string{"push-b", "pull-b"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "push-b applies the pin made on A", func() error {
		if got := agents["push-b"].Release(); got != "1.0" {
			return fmt.Errorf("runs %q", got)
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("pin through replica A reached the push agent on replica B and was applied in %v", took)
	if took > time.Second {
		t.Errorf("the pin took %v to reach a push agent on the other replica; want under a second", took)
	}
	eventually(t, 5*time.Second, "pull-b applies the pin made on A", func() error {
		if got := agents["pull-b"].Release(); got != "1.0" {
			return fmt.Errorf("runs %q", got)
		}
		return nil
	})

	// A command queued on B runs on the agent connected to A.
	inv, err := b.api.RunCommand(ctx, "cmd-a", apitypes.NewInvocation{Command: "ping", Reason: "ticket 12"})
	if err != nil || inv.State != command.StateQueued {
		t.Fatalf("queue ping on cmd-a through B: %+v, %v", inv, err)
	}
	// B answers the operator waiting on it, though the result reached A.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	done, err := b.api.WaitCommand(wctx, inv.ID)
	cancel()
	if err != nil || done.State != command.StateSucceeded || !strings.Contains(done.Output, "pong") {
		t.Fatalf("the command queued on B, run on the agent on A: state %s, output %q, %v", done.State, done.Output, err)
	}
	if pings.Load() != 1 {
		t.Errorf("the service was asked %d times, want once", pings.Load())
	}

	// Kill A; the load balancer sends its agents to B.
	a.kill()
	killed := time.Now()
	lbA.point(b.addr)
	eventually(t, 10*time.Second, "B leads once A is gone", func() error {
		if role, err := b.role(); err != nil || role != "leader" {
			return fmt.Errorf("role %q, %v", role, err)
		}
		return nil
	})
	t.Logf("B led %v after A was killed", time.Since(killed).Round(10*time.Millisecond))
	eventually(t, replicaStaleAfter, "A's agents check in with B", func() error {
		for _, id := range []string{"push-a", "pull-a", "cmd-a"} {
			d, err := b.api.Deployment(ctx, id)
			if err != nil {
				return err
			}
			if d.LastCheckin == nil || !d.LastCheckin.After(killed) {
				return fmt.Errorf("%s last checked in at %v", id, d.LastCheckin)
			}
		}
		return nil
	})
	if !agents["push-a"].Connected() {
		t.Error("push-a is not connected after moving to B")
	}
	// A push agent on A that B pins gets the pin over its new connection.
	if _, err := b.api.PinDeployment(ctx, "push-a", "1.0", "incident 8"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "push-a applies a pin made on B after moving there", func() error {
		if got := agents["push-a"].Release(); got != "1.0" {
			return fmt.Errorf("runs %q", got)
		}
		return nil
	})

	// The leader's stale sweep now runs on B: an agent that goes silent is
	// stale, and the change is recorded once.
	if err := agents["ghost-b"].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, replicaStaleAfter+5*time.Second, "B records ghost-b going stale", func() error {
		evs, err := b.api.Events(ctx, "ghost-b", 10)
		if err != nil {
			return err
		}
		if len(evs) == 0 || evs[0].To != fleet.StatusStale {
			return fmt.Errorf("events %+v", evs)
		}
		return nil
	})

	// No other deployment was ever stale, as either leader recorded it.
	evs, err := b.api.Events(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	stale := map[string]int{}
	for _, e := range evs {
		if e.To == fleet.StatusStale {
			stale[e.DeploymentID]++
		}
	}
	if stale["ghost-b"] != 1 || len(stale) != 1 {
		t.Errorf("stale events by deployment %v; want only ghost-b, once", stale)
	}
	got, err := b.api.Deployments(ctx, apiclient.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range got {
		if d.ID != "ghost-b" && d.Status == fleet.StatusStale {
			t.Errorf("%s is stale on B", d.ID)
		}
	}
}
