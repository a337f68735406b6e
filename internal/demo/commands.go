package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/periscope-dev/periscope/internal/agent"
	"github.com/periscope-dev/periscope/internal/agent/commands"
	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// The demo's remote commands: what its vendor's releases declare, and who runs
// one at start so the audit log and the dashboard have something to show.
const (
	// supportEngineer names the operator token the demo's first command runs
	// under, as a vendor's support engineer would hold one.
	supportEngineer = "dana.support"
	// firstCommandOn is where the support engineer runs disk-usage at start.
	firstCommandOn = "acme-prod"
	firstReason    = "ticket 4711: acme's nightly export fails with 'no space left on device'"
	// disabledOn is the deployment whose customer turned remote commands off.
	disabledOn = "umbrella-prod"
)

// commandsFile is the demo vendor's declaration of its commands, written as a
// vendor writes the file for `periscope releases create --commands`. The
// cache service's URL and df's path are known only at start.
const commandsFile = `commands:
  - name: disk-usage
    description: space left on the root filesystem (df -k /)
    timeout: 10s
    output_limit: 4096
    exec: {path: %q, args: [-k, /]}
  - name: cache-stats
    description: the session cache's size, hit rate and backing store
    timeout: 5s
    output_limit: 4096
    http: {url: %q, method: GET}
`

// cacheStats is what the sample service's cache-stats endpoint answers: its
// backing store's connection string carries a password and the largest entry
// names a shopper, both of which the agent's redaction masks before the output
// leaves the customer's cloud.
const cacheStats = `{"cache": "sessions", "entries": 18234, "hit_rate": 0.94, "evictions_last_hour": 112,
 "backing_store": "redis://cache-admin:Tr0ub4dor-3@sessions-cache.internal:6379/0",
 "largest_entry_owner": "alice.jones@example.com"}
`

// declareCommands parses the demo's declaration for the cache service at
// cacheURL, with df found on this machine's PATH (never a shell: the absolute
// path is declared).
func declareCommands(cacheURL string) ([]command.Spec, error) {
	df, err := exec.LookPath("df")
	if err == nil {
		df, err = filepath.Abs(df)
	}
	if err != nil {
		return nil, fmt.Errorf("the demo's disk-usage command runs df: %w", err)
	}
	specs, err := command.ParseSpecs(fmt.Appendf(nil, commandsFile, df, cacheURL))
	if err != nil {
		return nil, fmt.Errorf("the demo's command declarations: %w", err)
	}
	return specs, nil
}

// localService is one of the vendor's sample services the demo runs on
// 127.0.0.1, on a free port: the cache service answering cache-stats, and a
// deployment's shop behind its ingress proxy.
type localService struct {
	srv *http.Server
	ln  net.Listener
	// done is closed when Serve returns.
	done chan struct{}
}

func newLocalService(h http.Handler, log *slog.Logger) *localService {
	return &localService{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
}

// newCacheService is the sample service every simulated customer cloud
// shares: the HTTP handler of cache-stats, at /admin/cache-stats.
func newCacheService(log *slog.Logger) *localService {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/cache-stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(cacheStats))
	})
	return newLocalService(mux, log)
}

// Start binds 127.0.0.1 on a free port and serves.
func (c *localService) Start(context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("the demo's sample service: %w", err)
	}
	c.ln, c.done = ln, make(chan struct{})
	go func() {
		defer close(c.done)
		_ = c.srv.Serve(ln) // ErrServerClosed once Shutdown runs
	}()
	return nil
}

// URL is the service's base URL, such as http://127.0.0.1:41234; valid after
// Start.
func (c *localService) URL() string { return "http://" + c.ln.Addr().String() }

// Shutdown stops serving; safe without Start.
func (c *localService) Shutdown(ctx context.Context) error {
	if c.done == nil {
		return nil
	}
	err := c.srv.Shutdown(ctx)
	<-c.done
	return err
}

// simAgent is one simulated deployment's agent: its check-in and the runner
// of its remote commands, wired by agent.NewCheckin as the full agent's are,
// and its runtime signals.
type simAgent struct {
	checkin *opamp.Agent
	cmds    *commands.Runner
	rt      *agentRuntime // nil for a light deployment
}

// newSimAgent builds deployment ac's agent, with its runtime as rs says but
// reporting health through the agent's own check-in when withRuntime is set.
func newSimAgent(ac config.Agent, log *slog.Logger, rs runtimeSettings, withRuntime bool) (*simAgent, error) {
	c, r, err := agent.NewCheckin(ac, agent.CheckinSettings{Logger: log, Env: []string{}})
	if err != nil {
		return nil, err
	}
	a := &simAgent{checkin: c, cmds: r}
	if withRuntime {
		rs.health = c
		a.rt = newAgentRuntime(rs)
	}
	return a, nil
}

// Start starts the runner first: an invocation may arrive as soon as the
// check-in connects; the runtime last, whose health goes through the check-in.
func (a *simAgent) Start(ctx context.Context) error {
	if err := a.cmds.Start(ctx); err != nil {
		return fmt.Errorf("remote commands: %w", err)
	}
	err := a.checkin.Start(ctx)
	if err == nil && a.rt != nil {
		err = a.rt.Start(ctx) // which stops what of it started if it fails
	}
	if err != nil {
		// Shutdown is safe on parts that did not start.
		uctx, cancel := undoContext(ctx)
		defer cancel()
		return errors.Join(err, a.cmds.Shutdown(uctx), a.checkin.Shutdown(uctx))
	}
	return nil
}

// Shutdown stops the runtime, then the runner while the check-in can still
// send its last outcomes, then the check-in. Idempotent.
func (a *simAgent) Shutdown(ctx context.Context) error {
	var rt error
	if a.rt != nil {
		rt = a.rt.Shutdown(ctx)
	}
	return errors.Join(rt, a.cmds.Shutdown(ctx), a.checkin.Shutdown(ctx))
}

// runFirstCommand runs disk-usage on firstCommandOn as a support engineer
// with an operator token of their own, and waits for its result, so the
// commands list, the audit log and the dashboard show one from the start.
func runFirstCommand(ctx context.Context, admin *apiclient.Client, managerURL string) error {
	var tok apitypes.Token
	if err := admin.Do(ctx, "POST", "/api/v1/tokens", apitypes.NewToken{Name: supportEngineer, Role: "operator"}, &tok); err != nil {
		return fmt.Errorf("create the support engineer's token: %w", err)
	}
	support := apiclient.New(managerURL, tok.Secret)
	inv, err := support.RunCommand(ctx, firstCommandOn, apitypes.NewInvocation{Command: "disk-usage", Reason: firstReason})
	if err != nil {
		return fmt.Errorf("run disk-usage on %s: %w", firstCommandOn, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if inv, err = support.WaitCommand(wctx, inv.ID); err != nil {
		return fmt.Errorf("wait for disk-usage on %s: %w", firstCommandOn, err)
	}
	if inv.State != command.StateSucceeded {
		return fmt.Errorf("disk-usage on %s ended %s: %s", firstCommandOn, inv.State, inv.StateReason)
	}
	return nil
}
