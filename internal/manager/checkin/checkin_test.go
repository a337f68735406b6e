package checkin

import (
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

func TestReportHealth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       *protobufs.ComponentHealth
		healthy bool
		down    []string
	}{
		{"collector starting up is not an outage", &protobufs.ComponentHealth{Healthy: false, ComponentHealthMap: map[string]*protobufs.ComponentHealth{
			"extensions": {ComponentHealthMap: map[string]*protobufs.ComponentHealth{"extension:opamp": {Healthy: false, Status: "StatusStarting"}}}}}, true, nil},
		{"a failing nested component is named by its path", &protobufs.ComponentHealth{Healthy: false, ComponentHealthMap: map[string]*protobufs.ComponentHealth{
			"pipeline:logs": {ComponentHealthMap: map[string]*protobufs.ComponentHealth{"exporter:otlp": {Healthy: false, Status: "StatusPermanentError", LastError: "401"}}}}}, false, []string{"pipeline:logs/exporter:otlp"}},
		{"healthy", &protobufs.ComponentHealth{Healthy: true}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Report(&protobufs.AgentToServer{Health: tc.h})
			if rep.Health == nil || rep.Health.Healthy != tc.healthy {
				t.Fatalf("health = %+v, want healthy=%v", rep.Health, tc.healthy)
			}
			for _, n := range tc.down {
				if c, ok := rep.Health.Components[n]; !ok || c.Healthy {
					t.Errorf("component %s = %+v, %v; want reported down", n, c, ok)
				}
			}
		})
	}
}

func TestReportOnlyWhatWasSent(t *testing.T) {
	rep := Report(&protobufs.AgentToServer{})
	if rep.Description != nil || rep.Health != nil || rep.ConfigHash != nil {
		t.Fatalf("a heartbeat without content changed state: %+v", rep)
	}
}

func TestConfigHashIsStableAndSensitive(t *testing.T) {
	a := &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{"a.yaml": {Body: []byte("x: 1")}, "b.yaml": {Body: []byte("y: 2")}}}
	b := &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{"b.yaml": {Body: []byte("y: 2")}, "a.yaml": {Body: []byte("x: 1")}}}
	c := &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{"a.yaml": {Body: []byte("x: 1y: 2")}}}
	if ConfigHash(a) != ConfigHash(b) {
		t.Fatal("hash depends on map order")
	}
	if ConfigHash(a) == ConfigHash(c) {
		t.Fatal("different files hash the same")
	}
}

func TestReportTelemetryLoss(t *testing.T) {
	start := time.Date(2026, 12, 5, 11, 0, 0, 0, time.UTC)
	last := start.Add(30 * time.Minute)
	h := &protobufs.ComponentHealth{Healthy: true, StartTimeUnixNano: uint64(start.UnixNano()), ComponentHealthMap: map[string]*protobufs.ComponentHealth{
		fleet.LossComponent: {Healthy: true, Status: "dropped logs/queue_full=560", StatusTimeUnixNano: uint64(last.UnixNano())}}}
	rep := Report(&protobufs.AgentToServer{Health: h})
	if l := rep.Loss; l == nil || l.Counts["logs/queue_full"] != 560 || !l.RunStart.Equal(start) || !l.Last.Equal(last) {
		t.Errorf("loss = %+v; want 560 logs/queue_full since %v, last %v", rep.Loss, start, last)
	}
	if !rep.Health.Healthy {
		t.Error("loss made the health unhealthy; it is shown beside the status")
	}
	h.ComponentHealthMap[fleet.LossComponent].Status = "dropped everything"
	if rep := Report(&protobufs.AgentToServer{Health: h}); rep.Loss != nil {
		t.Errorf("malformed loss status gave %+v; want none", rep.Loss)
	}
}

// An effective configuration always says something about commands: the rule,
// none, or, when the manager cannot read it, commands disabled, so nothing is
// queued that the customer may not allow.
func TestReportCommandRule(t *testing.T) {
	rep := func(files map[string]*protobufs.AgentConfigFile) registry.Report {
		return Report(&protobufs.AgentToServer{EffectiveConfig: &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: files}}})
	}
	if r := rep(map[string]*protobufs.AgentConfigFile{"agent.yaml": {Body: []byte("x: 1")}}); r.Commands == nil || r.Commands.Rule != nil {
		t.Errorf("no rule file: %+v", r.Commands)
	}
	r := rep(map[string]*protobufs.AgentConfigFile{command.RuleFile: {Body: command.EncodeRule(command.Rule{Allow: []string{"flush"}})}})
	if r.Commands == nil || r.Commands.Rule == nil || r.Commands.Rule.Disabled || r.Commands.Rule.Allow[0] != "flush" {
		t.Errorf("rule file: %+v", r.Commands)
	}
	r = rep(map[string]*protobufs.AgentConfigFile{command.RuleFile: {Body: []byte(`{"allow":"everything"}`)}})
	if r.Commands == nil || r.Commands.Rule == nil || !r.Commands.Rule.Disabled {
		t.Errorf("unreadable rule file: %+v, want commands disabled", r.Commands)
	}
	if r := Report(&protobufs.AgentToServer{}); r.Commands != nil {
		t.Errorf("no effective configuration changed the rule: %+v", r.Commands)
	}
}

func TestReportWatchedComponentKeepsStatusRestartsAndLastError(t *testing.T) {
	h := &protobufs.ComponentHealth{Healthy: false, Status: "degraded", LastError: "worker/0: crash-loop; restarts 4; last error exit status 3: db connection refused",
		ComponentHealthMap: map[string]*protobufs.ComponentHealth{
			"worker/0": {Healthy: false, Status: "failing", LastError: fleet.FormatComponentError("crash-loop", 4, "exit status 3: db connection refused")},
			"worker/1": {Healthy: true, Status: "running", LastError: fleet.FormatComponentError("running", 1, "signal: killed")},
		}}
	rep := Report(&protobufs.AgentToServer{Health: h})
	got := rep.Health.Components["worker/0"]
	want := fleet.ComponentHealth{Status: "crash-loop", Restarts: 4, LastError: "exit status 3: db connection refused", Watched: true}
	if rep.Health.Healthy || got != want {
		t.Fatalf("worker/0 = %+v (deployment healthy %v), want %+v", got, rep.Health.Healthy, want)
	}
	if w1 := rep.Health.Components["worker/1"]; !w1.Healthy || w1.Restarts != 1 {
		t.Errorf("worker/1 = %+v, want healthy with 1 restart", w1)
	}
}

func TestReportReplicaStillStartingIsNotAnOutage(t *testing.T) {
	starting := fleet.FormatComponentError("starting", 0, "")
	h := &protobufs.ComponentHealth{Healthy: false, Status: "degraded", LastError: "worker/0: " + starting,
		ComponentHealthMap: map[string]*protobufs.ComponentHealth{"worker/0": {Healthy: false, Status: "failing", LastError: starting}}}
	if rep := Report(&protobufs.AgentToServer{Health: h}); !rep.Health.Healthy {
		t.Fatalf("a replica starting made the deployment unhealthy: %+v", rep.Health)
	}
	crashed := fleet.FormatComponentError("restarting", 2, "exit status 1")
	h.ComponentHealthMap["worker/0"].LastError, h.LastError = crashed, "worker/0: "+crashed
	if rep := Report(&protobufs.AgentToServer{Health: h}); rep.Health.Healthy {
		t.Fatalf("a watched component restarting was taken for one starting: %+v", rep.Health)
	}
	h.ComponentHealthMap["worker/0"].LastError = starting
	h.LastError = "disk full"
	if rep := Report(&protobufs.AgentToServer{Health: h}); rep.Health.Healthy {
		t.Fatalf("the agent's own error was hidden by a starting replica: %+v", rep.Health)
	}
}
