package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWorkloadsFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(`
runtime:
  workloads:
    - name: worker
      command: /usr/local/bin/worker
      args: [--queue, orders]
      env: [LOG_LEVEL=info]
      replicas: 2
      port: 9100
      restart: on-failure
      backoff: {initial: 500ms, max: 30s}
      readiness: {http: "http://127.0.0.1:{port}/healthz", period: 5s}
      stop_timeout: 20s
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := validAgent()
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ws := cfg.Runtime.Workloads
	if len(ws) != 1 {
		t.Fatalf("workloads = %+v", ws)
	}
	w := ws[0]
	if w.Name != "worker" || w.Replicas != 2 || w.Port != 9100 || w.Restart != RestartOnFailure || len(w.Args) != 2 ||
		w.Backoff.Initial != 500*time.Millisecond || w.Backoff.Max != 30*time.Second || w.Readiness.Period != 5*time.Second ||
		w.StopTimeout != 20*time.Second || ExpandWorkloadTarget(w.Readiness.HTTP, 1, w.Port) != "http://127.0.0.1:9101/healthz" {
		t.Errorf("workload = %+v", w)
	}
}

func TestWorkloadsValidateNamesEachField(t *testing.T) {
	cfg := validAgent()
	cfg.Runtime.Workloads = []Workload{
		{Name: "ok", Command: "/bin/true"},
		{Name: "ok", Command: "bin/true", Replicas: 99, Restart: "sometimes", Env: []string{"NOEQUALS"}, Dir: "rel",
			Backoff: WorkloadBackoff{Initial: time.Minute, Max: time.Second}, StopTimeout: -1,
			Readiness: WorkloadReadiness{HTTP: "ftp://x/", TCP: "127.0.0.1:{port}"}},
		{Name: "bad name/1", Command: "/bin/true", Readiness: WorkloadReadiness{TCP: "nohost"}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad workloads")
	}
	for _, want := range []string{
		`runtime.workloads[1].name: duplicate "ok"`, "runtime.workloads[1].command: must be an absolute path",
		"runtime.workloads[1].replicas:", "runtime.workloads[1].restart:", "runtime.workloads[1].env[0]:", "runtime.workloads[1].dir:",
		"runtime.workloads[1].backoff.initial: longer than backoff.max", "runtime.workloads[1].stop_timeout: negative",
		"runtime.workloads[1].readiness: http and tcp are exclusive", "runtime.workloads[1].readiness: {port} needs port",
		"runtime.workloads[1].readiness.http:", "runtime.workloads[2].name:", "runtime.workloads[2].readiness.tcp:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate's errors lack %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "runtime.workloads[0]") {
		t.Errorf("the good workload is blamed:\n%v", err)
	}
	cfg.Runtime.Workloads = make([]Workload, MaxWorkloads+1)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "runtime.workloads: 65 workloads, at most 64") {
		t.Errorf("too many workloads: %v", err)
	}
}
