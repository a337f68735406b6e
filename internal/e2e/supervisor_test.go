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

	"github.com/periscope-dev/periscope/internal/agent/runtime/supervisor"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
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

// TestCrashLoopingWorkloadShowsThroughTheManager runs a real agent process
// whose configuration file names a workload: while it crash-loops the
// manager's API shows the deployment unhealthy, naming the replica, its
// restart count and its last error line; once it stays up and answers its
// readiness probe, healthy again; and stopping the agent stops the workload.
func TestCrashLoopingWorkloadShowsThroughTheManager(t *testing.T) {
	ctx := context.Background()
	m := startTelemetryManager(t, "127.0.0.1:0", t.TempDir(), nil)
	defer m.Shutdown(ctx)
	token := createAcme(t, m)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	workloadAddr := freePort(t)
	_, port, _ := net.SplitHostPort(workloadAddr)
	dir := t.TempDir()
	upFile := filepath.Join(dir, "db-up")
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
runtime:
  interval: 1s
  timeout: 1s
  workloads:
    - name: worker
      command: %q
      args: [%q, %q]
      port: %s
      backoff: {initial: 50ms, max: 200ms}
      readiness: {tcp: "127.0.0.1:{port}", period: 100ms}
`, exe, supervisedArg, upFile, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	ag := runAgent(t, freePort(t), freePort(t), "--config", cfgPath, "--manager", m.URL(), "--token", token, "--release", "1.8.0",
		"--transport", "http", "--heartbeat-interval", "1s", "--data-dir", filepath.Join(dir, "agent"))
	defer ag.stop(t)

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

	ag.stop(t)
	if c, err := net.Dial("tcp", workloadAddr); err == nil {
		c.Close()
		t.Errorf("the workload still serves %s after the agent stopped", workloadAddr)
	}
}
