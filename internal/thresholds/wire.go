package thresholds

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

// The OpAMP wire contract (see the package documentation).
const (
	// Capability is the OpAMP custom capability both sides declare.
	Capability = "io.periscope.thresholds"
	// MessageSet is the custom message type that carries a Set.
	MessageSet = "set"
	// ReportFile names the agent's Report in its OpAMP effective configuration.
	ReportFile = "periscope.thresholds.json"
	// ContentType is the content type of ReportFile and of the state file.
	ContentType = "application/json"
	// MaxWireBytes bounds a set or a report read from the wire or from disk; a
	// set at its rule limits is well under it.
	MaxWireBytes = 64 << 10
)

// Encode returns the wire form of s: JSON, the same bytes for equal sets.
func Encode(s Set) []byte {
	b, _ := json.Marshal(s) // plain data cannot fail to marshal
	return b
}

// Hash identifies a set as the agent reports the one it holds; the zero Set,
// which an agent that never received one holds, hashes to "".
func Hash(s Set) string {
	if s.IsZero() {
		return ""
	}
	h := sha256.Sum256(Encode(s))
	return hex.EncodeToString(h[:8])
}

// Decode reads a set from the wire or from disk. It refuses more than
// MaxWireBytes, anything but one JSON object of known fields, and a set that
// fails Validate: an agent must not run part of a set it cannot understand.
func Decode(wire []byte) (Set, error) {
	var s Set
	if err := decodeStrict(wire, &s); err != nil {
		return Set{}, fmt.Errorf("thresholds: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Set{}, fmt.Errorf("thresholds are invalid: %w", err)
	}
	// An empty list is no list: equal sets then compare and store alike.
	if len(s.Queues) == 0 {
		s.Queues = nil
	}
	if len(s.Filesystems) == 0 {
		s.Filesystems = nil
	}
	return s, nil
}

// Message is the custom message that carries s to an agent.
func Message(s Set) *protobufs.CustomMessage {
	return &protobufs.CustomMessage{Capability: Capability, Type: MessageSet, Data: Encode(s)}
}

// DecodeMessage reads the set from a custom message from the manager.
func DecodeMessage(m *protobufs.CustomMessage) (Set, error) {
	if m.GetCapability() != Capability || m.GetType() != MessageSet {
		return Set{}, fmt.Errorf("custom message %s/%s is not a thresholds set", m.GetCapability(), m.GetType())
	}
	return Decode(m.GetData())
}

// Report is what an agent says about its thresholds.
type Report struct {
	// Hash is Hash of the set the agent holds ("" for none).
	Hash string `json:"hash"`
	// RefusedHash is the hash of the last set the agent refused (of the data
	// as received), and Error why; both empty when it refused none since it
	// started.
	RefusedHash string `json:"refused_hash,omitempty"`
	Error       string `json:"error,omitempty"`
}

// WireHash identifies a set's data as received, valid or not, for
// Report.RefusedHash; for a valid set it equals Hash.
func WireHash(wire []byte) string {
	if s, err := Decode(wire); err == nil {
		return Hash(s)
	}
	h := sha256.Sum256(wire)
	return hex.EncodeToString(h[:8])
}

// EncodeReport returns the wire form of r.
func EncodeReport(r Report) []byte {
	b, _ := json.Marshal(r) // plain data cannot fail to marshal
	return b
}

// ErrNoReport means an effective configuration carries no thresholds report
// (a stock Collector, an agent from before thresholds).
var ErrNoReport = errors.New("no thresholds report in the effective configuration")

// ReportFromConfig reads the agent's report from its effective configuration.
func ReportFromConfig(cm *protobufs.AgentConfigMap) (Report, error) {
	f := cm.GetConfigMap()[ReportFile]
	if f == nil {
		return Report{}, ErrNoReport
	}
	var r Report
	if err := decodeStrict(f.Body, &r); err != nil {
		return Report{}, fmt.Errorf("thresholds report %s: %w", ReportFile, err)
	}
	return r, nil
}

// decodeStrict decodes one JSON object of known fields, at most MaxWireBytes long.
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
