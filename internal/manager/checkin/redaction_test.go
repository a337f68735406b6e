package checkin_test

import (
	"testing"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// checkinWithReport polls once with an effective configuration that carries rep
// (none when nil) and returns the manager's answer.
func (f *opampFixture) checkinWithReport(t *testing.T, rep *redactpolicy.Report) *protobufs.ServerToAgent {
	t.Helper()
	files := map[string]*protobufs.AgentConfigFile{"agent.yaml": {Body: []byte("manager: x\n")}}
	if rep != nil {
		files[redactpolicy.ReportFile] = &protobufs.AgentConfigFile{Body: redactpolicy.EncodeReport(*rep), ContentType: redactpolicy.ReportContentType}
	}
	return f.poll(t, &protobufs.AgentToServer{EffectiveConfig: &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: files}}})
}

// The manager sends its vendor policy while the agent holds another, stops once it
// holds it, does not resend one the agent refused, and sends nothing to an agent
// that reports no redaction (a stock Collector).
func TestVendorPolicyIsSentUntilTheAgentHoldsIt(t *testing.T) {
	f := newOpAMP(t, 0)
	vendor := redactpolicy.VendorHash(redactpolicy.Policy{}) // the manager's policy is the default
	e := redactpolicy.Resolve(redactpolicy.Policy{})

	resp := f.checkinWithReport(t, &redactpolicy.Report{Effective: e, EffectiveHash: e.Hash()})
	m := resp.GetCustomMessage()
	if m.GetCapability() != redactpolicy.Capability || m.GetType() != redactpolicy.MessagePolicy || redactpolicy.PolicyHash(m.GetData()) != vendor {
		t.Fatalf("an agent without the vendor policy got %v", m)
	}
	if v, _ := f.reg.Get("acme-prod"); v.Redaction == nil || v.Redaction.InSync {
		t.Errorf("the deployment shows %+v, want a report out of sync", v.Redaction)
	}

	refused := &redactpolicy.Report{Effective: e, EffectiveHash: e.Hash(), RefusedHash: vendor, Error: "unknown detector"}
	if resp := f.checkinWithReport(t, refused); resp.CustomMessage != nil {
		t.Error("the manager resent a policy the agent refused")
	}
	if v, _ := f.reg.Get("acme-prod"); v.Redaction == nil || v.Redaction.Error != "unknown detector" {
		t.Errorf("the refusal is not on the deployment: %+v", v.Redaction)
	}

	if resp := f.checkinWithReport(t, &redactpolicy.Report{VendorHash: vendor, Effective: e, EffectiveHash: e.Hash()}); resp.CustomMessage != nil {
		t.Error("the manager sent the policy to an agent that holds it")
	}
	if v, _ := f.reg.Get("acme-prod"); v.Redaction == nil || !v.Redaction.InSync || v.Redaction.EffectiveHash != e.Hash() {
		t.Errorf("the deployment shows %+v, want in sync", v.Redaction)
	}

	if resp := f.checkinWithReport(t, nil); resp.CustomMessage != nil {
		t.Error("the manager sent the policy to an agent that reports no redaction")
	}
	if v, _ := f.reg.Get("acme-prod"); v.Redaction != nil {
		t.Errorf("an agent without a report shows %+v", v.Redaction)
	}
}
