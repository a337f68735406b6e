package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/supervisor"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// supervisedArg makes the test binary a workload the supervisor runs: it
// crashes as a service does whose database is down until the file named by
// its next argument exists, then listens on $PORT until it is stopped.
const supervisedArg = "supervised-workload"

func supervisedWorkload(upFile string) int {
	if _, err := os.Stat(upFile); err != nil {
		fmt.Fprintln(os.Stderr, "connecting to postgres")
		fmt.Fprintln(os.Stderr, "db connection refused")
		return 3
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		c.Close()
	}
}

// TestCrashLoopingWorkloadShowsThroughTheManager runs a workload under the
// supervisor with the runtime Collector reporting its health over OpAMP, as
// the agent does: while it crash-loops the manager's API shows the deployment
// unhealthy, naming the replica, its restart count and its last error line;
// once it stays up and answers its readiness probe, healthy again.
func TestCrashLoopingWorkloadShowsThroughTheManager(t *testing.T) {
	ctx := context.Background()
	m := startManager(t, freePort(t), t.TempDir())
	defer m.Shutdown(ctx)
	token := createAcme(t, m)
	checkin := startAgent(t, m.URL(), token, "websocket", "1.8.0", config.Agent{}, nil)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(freePort(t))
	var first int
	fmt.Sscan(port, &first)
	upFile := filepath.Join(t.TempDir(), "db-up")
	sup, err := supervisor.New(supervisor.Config{Workloads: []supervisor.Workload{{
		Name: "worker", Command: exe, Args: []string{supervisedArg, upFile}, Port: first,
		Backoff:   supervisor.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		Readiness: supervisor.Readiness{TCP: "127.0.0.1:{port}", Period: 100 * time.Millisecond},
	}}}, supervisor.Settings{Logger: logger(t), Env: []string{}, Redact: func(l string) string { return l }})
	if err != nil {
		t.Fatal(err)
	}
	col, err := runtime.New(runtime.Settings{Sources: []runtime.Source{sup}, Interval: 100 * time.Millisecond, Health: checkin,
		Consumer: consumer.ConsumerFunc(func(context.Context, consumer.Request) error { return nil }), Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sup.Shutdown(ctx)
	if err := col.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer col.Shutdown(ctx)

	api := apiclient.New(m.URL(), adminToken)
	eventually(t, 20*time.Second, "the deployment shows the crash-looping replica", func() error {
		d, err := api.Deployment(ctx, "acme-prod")
		if err != nil {
			return err
		}
		c := d.Health.Components["worker/0"]
		if d.Status != fleet.StatusUnhealthy || d.StatusReasonCode != fleet.ReasonComponentsDown || c.Restarts < 2 {
			return fmt.Errorf("status %s %s %q, worker/0 %+v", d.Status, d.StatusReasonCode, d.StatusReason, c)
		}
		want := fmt.Sprintf("components down: worker/0 (crash-loop, %d restarts): exit status 3: connecting to postgres | db connection refused", c.Restarts)
		if d.StatusReason != want {
			return fmt.Errorf("reason %q, want %q", d.StatusReason, want)
		}
		return nil
	})

	if err := os.WriteFile(upFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the deployment is healthy once the replica stays up and is ready", func() error {
		d, err := api.Deployment(ctx, "acme-prod")
		if err != nil {
			return err
		}
		if c := d.Health.Components["worker/0"]; d.Status != fleet.StatusHealthy || !c.Healthy || c.Status != supervisor.StatusRunning ||
			!strings.Contains(c.LastError, "db connection refused") {
			return fmt.Errorf("status %s %q, worker/0 %+v", d.Status, d.StatusReason, c)
		}
		return nil
	})
}
