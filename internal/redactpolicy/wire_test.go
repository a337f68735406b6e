package redactpolicy

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/open-telemetry/opamp-go/protobufs"
)

func TestPolicyTravelsWithoutTheHashKey(t *testing.T) {
	p := Policy{Detectors: map[string]string{"ip": ActionOff}, Attributes: Attributes{Deny: []string{"user.name"}}, HashKey: "customer-secret"}
	m := PolicyMessage(p)
	if m.Capability != Capability || m.Type != MessagePolicy {
		t.Fatalf("message %s/%s", m.Capability, m.Type)
	}
	if bytes.Contains(m.Data, []byte("customer-secret")) {
		t.Fatalf("the hash key travels: %s", m.Data)
	}
	got, err := DecodePolicy(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Detectors["ip"] != ActionOff || got.Attributes.Deny[0] != "user.name" || got.HashKey != "" {
		t.Errorf("decoded %+v", got)
	}
	// The hash names the policy, not the secret: the agent and the manager agree on it.
	p.HashKey = ""
	if VendorHash(p) != PolicyHash(m.Data) || VendorHash(p) == VendorHash(Policy{}) {
		t.Errorf("hashes: %s %s %s", VendorHash(p), PolicyHash(m.Data), VendorHash(Policy{}))
	}
}

func TestDecodePolicyRefusesWhatItCannotRunWhole(t *testing.T) {
	for name, wire := range map[string]string{
		"unknown detector":  `{"detectors":{"iban":"mask"}}`,
		"unknown action":    `{"detectors":{"ip":"shred"}}`,
		"unknown field":     `{"detectors":{},"new_rule":true}`,
		"bad regexp":        `{"custom":[{"name":"x","regexp":"("}]}`,
		"empty match":       `{"body":{"drop_patterns":[".*"]}}`,
		"not an object":     `["mode","off"]`,
		"null":              `null`,
		"trailing data":     `{} {"mode":"off"}`,
		"truncated":         `{"mode":"o`,
		"too large":         `{"secret_keys":["` + strings.Repeat("a", MaxWireBytes) + `"]}`,
		"too many patterns": `{"secret_keys":[` + strings.TrimSuffix(strings.Repeat(`"k",`, MaxListLen+1), ",") + `]}`,
	} {
		if _, err := DecodePolicy([]byte(wire)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReportRoundTripsThroughTheEffectiveConfig(t *testing.T) {
	e := Merge(Policy{Detectors: map[string]string{"email": ActionOff}}, Policy{})
	r := Report{VendorHash: "0123456789abcdef", Effective: e, EffectiveHash: e.Hash(), RefusedHash: "fedcba9876543210", Error: "detectors: unknown detector"}
	cm := &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
		"agent.yaml": {Body: []byte("x: 1\n")}, ReportFile: {Body: EncodeReport(r), ContentType: ReportContentType},
	}}
	got, err := ReportFromConfig(cm)
	if err != nil {
		t.Fatal(err)
	}
	if got.VendorHash != r.VendorHash || got.EffectiveHash != e.Hash() || got.Effective.Hash() != e.Hash() || got.Error != r.Error {
		t.Errorf("got %+v", got)
	}
	delete(cm.ConfigMap, ReportFile)
	if _, err := ReportFromConfig(cm); !errors.Is(err, ErrNoReport) {
		t.Errorf("without the file: %v", err)
	}
	cm.ConfigMap[ReportFile] = &protobufs.AgentConfigFile{Body: []byte(`{"vendor_hash":1}`)}
	if _, err := ReportFromConfig(cm); err == nil {
		t.Error("a malformed report was read")
	}
}
