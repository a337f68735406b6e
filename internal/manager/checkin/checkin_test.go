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
