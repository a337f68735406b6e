package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/periscope-dev/periscope/internal/agent/runtime/supervisor"
	"github.com/periscope-dev/periscope/internal/config"
)

func TestAWorkloadRunsFromStartToShutdownAndLeavesNoOrphan(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Runtime.Workloads = []config.Workload{{Name: "worker", Command: exe, Env: []string{workloadEnv + "=" + ln.Addr().String()}}}
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())

	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	_, err = fmt.Fscan(c, &pid)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the workload's process %d is not running: %v", pid, err)
	}
	if a.collector == nil || a.sources[len(a.sources)-1] != a.sup {
		t.Errorf("the supervisor is not among the collector's sources: %v", a.sources)
	}

	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the workload's process %d outlived the agent: signal 0 = %v", pid, err)
	}
	if r := a.sup.Replicas()[0]; r.Status != supervisor.StatusStopped || r.Up {
		t.Errorf("worker/0 after Shutdown: %+v", r)
	}
}

func TestAMissingWorkloadCommandIsAStartupError(t *testing.T) {
	cfg := testConfig(t)
	cfg.Runtime.Workloads = []config.Workload{{Name: "worker", Command: "/nonexistent/worker"}}
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), `runtime.workloads: workload "worker": command`) {
		t.Errorf("Start = %v, want the missing command named", err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed Start: %v", err)
	}
}

func TestABadWorkloadIsRefusedNamingItsField(t *testing.T) {
	cfg := testConfig(t)
	cfg.Runtime.Workloads = []config.Workload{{Name: "worker", Command: "worker"}}
	if _, err := New(cfg, Settings{Env: []string{}}); err == nil || !strings.Contains(err.Error(), "runtime.workloads[0].command") {
		t.Errorf("New = %v, want runtime.workloads[0].command named", err)
	}
}
