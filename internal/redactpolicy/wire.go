package redactpolicy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/open-telemetry/opamp-go/protobufs"
)

// The OpAMP wire contract for the vendor's policy, spoken by the manager and the agent.
//
// The manager sends its policy as an OpAMP custom message (capability Capability, type
// MessagePolicy, data the policy's JSON). The agent reports what it runs as one more
// file of its effective configuration, ReportFile, holding a Report: the hash of the
// vendor policy it holds, the effective policy and its hash. The effective
// configuration travels at connect, on every change and whenever the manager asks for
// the agent's full state, so a manager that restarted learns it again without
// a message of its own; the manager sends its policy again whenever the hash the
// agent holds differs from its own.
const (
	// Capability is the OpAMP custom capability both sides declare.
	Capability = "io.periscope.redaction"
	// MessagePolicy is the custom message type that carries the vendor's policy.
	MessagePolicy = "policy"
	// ReportFile names the agent's report in its OpAMP effective configuration.
	ReportFile = "periscope.redaction.json"
	// ReportContentType is ReportFile's content type.
	ReportContentType = "application/json"
	// MaxWireBytes bounds a policy or a report read from the wire: a policy at its
	// list limits is well under it.
	MaxWireBytes = 1 << 20
)

// EncodePolicy returns the wire form of p: JSON, without the hash key (the
// customer's secret never travels). Equal policies encode to equal bytes.
func EncodePolicy(p Policy) []byte {
	b, _ := json.Marshal(p) // plain data cannot fail to marshal
	return b
}

// PolicyHash identifies the wire form of a policy, as the agent reports the one it
// holds.
func PolicyHash(wire []byte) string {
	h := sha256.Sum256(wire)
	return hex.EncodeToString(h[:8])
}

// VendorHash is PolicyHash of p's wire form.
func VendorHash(p Policy) string { return PolicyHash(EncodePolicy(p)) }

// PolicyMessage is the custom message that carries p to an agent.
func PolicyMessage(p Policy) *protobufs.CustomMessage {
	return &protobufs.CustomMessage{Capability: Capability, Type: MessagePolicy, Data: EncodePolicy(p)}
}

// DecodePolicy reads a policy from the wire. It refuses more than MaxWireBytes,
// anything but one JSON object of known fields, and a policy that fails Validate:
// an agent that cannot understand every rule of a policy must not run part of it.
func DecodePolicy(wire []byte) (Policy, error) {
	var p Policy
	if err := decodeStrict(wire, &p); err != nil {
		return Policy{}, fmt.Errorf("vendor redaction policy: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("vendor redaction policy is invalid: %w", err)
	}
	return p, nil
}

// Report is what an agent says about its redaction: which vendor policy it holds and
// what it runs.
type Report struct {
	// VendorHash is PolicyHash of the vendor policy the agent holds; "" before it
	// has received one.
	VendorHash string `json:"vendor_hash"`
	// Effective is the policy the agent runs: the vendor's merged with the customer's.
	Effective Effective `json:"effective"`
	// EffectiveHash is Effective.Hash().
	EffectiveHash string `json:"effective_hash"`
	// RefusedHash is the hash of the last vendor policy the agent refused, and
	// Error why; both empty when it refused none since it started.
	RefusedHash string `json:"refused_hash,omitempty"`
	Error       string `json:"error,omitempty"`
}

// EncodeReport returns the wire form of r.
func EncodeReport(r Report) []byte {
	b, _ := json.Marshal(r) // plain data cannot fail to marshal
	return b
}

// ErrNoReport means an effective configuration carries no redaction report (the
// agent is not a Periscope agent, or one from before redaction).
var ErrNoReport = errors.New("no redaction report in the effective configuration")

// ReportFromConfig reads the agent's report from its effective configuration.
func ReportFromConfig(cm *protobufs.AgentConfigMap) (Report, error) {
	f := cm.GetConfigMap()[ReportFile]
	if f == nil {
		return Report{}, ErrNoReport
	}
	var r Report
	if err := decodeStrict(f.Body, &r); err != nil {
		return Report{}, fmt.Errorf("redaction report %s: %w", ReportFile, err)
	}
	return r, nil
}

// decodeStrict decodes one JSON value of known fields, at most MaxWireBytes long.
func decodeStrict(wire []byte, v any) error {
	if len(wire) > MaxWireBytes {
		return fmt.Errorf("%d bytes, at most %d", len(wire), MaxWireBytes)
	}
	if t := bytes.TrimSpace(wire); len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(wire))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}
