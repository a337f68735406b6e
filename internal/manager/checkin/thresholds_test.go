package checkin_test

import (
	"context"
	"testing"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// checkinWithThresholds polls once with an effective configuration whose
// redaction report says the agent holds the vendor policy (so the custom
// message slot is free) and that carries thr (none when nil).
func (f *opampFixture) checkinWithThresholds(t *testing.T, thr *thresholds.Report) *protobufs.ServerToAgent {
	t.Helper()
	e := redactpolicy.Resolve(redactpolicy.Policy{})
	red := redactpolicy.Report{VendorHash: redactpolicy.VendorHash(redactpolicy.Policy{}), Effective: e, EffectiveHash: e.Hash()}
	files := map[string]*protobufs.AgentConfigFile{"agent.yaml": {Body: []byte("manager: x\n")},
		redactpolicy.ReportFile: {Body: redactpolicy.EncodeReport(red), ContentType: redactpolicy.ReportContentType}}
	if thr != nil {
		files[thresholds.ReportFile] = &protobufs.AgentConfigFile{Body: thresholds.EncodeReport(*thr), ContentType: thresholds.ContentType}
	}
	return f.poll(t, &protobufs.AgentToServer{EffectiveConfig: &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: files}}})
}

// The manager sends a deployment's thresholds while its agent holds others,
// stops once it holds them, does not resend ones it refused, and sends none to
// an agent that reports no thresholds (one from before them).
func TestThresholdsAreSentUntilTheAgentHoldsThem(t *testing.T) {
	f := newOpAMP(t, 0)
	if resp := f.checkinWithThresholds(t, &thresholds.Report{}); resp.CustomMessage != nil {
		t.Fatalf("an agent holding no thresholds, with none set, got %v", resp.CustomMessage)
	}
	set := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}
	if _, err := f.reg.SetThresholds(context.Background(), registry.ThresholdsRequest{ID: "acme-prod", Set: set, By: "ops", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	resp := f.checkinWithThresholds(t, &thresholds.Report{})
	got, err := thresholds.DecodeMessage(resp.GetCustomMessage())
	if err != nil || thresholds.Hash(got) != thresholds.Hash(set) {
		t.Fatalf("an agent without the set got %v (%v)", resp.GetCustomMessage(), err)
	}
	if resp := f.checkinWithThresholds(t, &thresholds.Report{RefusedHash: thresholds.Hash(set), Error: "x"}); resp.CustomMessage != nil {
		t.Error("the manager resent thresholds the agent refused")
	}
	if resp := f.checkinWithThresholds(t, &thresholds.Report{Hash: thresholds.Hash(set)}); resp.CustomMessage != nil {
		t.Error("the manager sent thresholds to an agent that holds them")
	}
	if v, _ := f.reg.Thresholds("acme-prod"); !v.InSync {
		t.Errorf("the deployment shows %+v, want in sync", v)
	}
	if resp := f.checkinWithThresholds(t, nil); resp.CustomMessage != nil {
		t.Error("the manager sent thresholds to an agent that reports none")
	}
}
