package checkin

import (
	"testing"

	"github.com/open-telemetry/opamp-go/protobufs"
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
