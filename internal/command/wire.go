package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
)

// The OpAMP wire contract for commands.
//
// Both sides declare the custom capability Capability. The manager sends
// MessageInvoke (an Invocations) and MessageAck (an Ack); the agent sends
// MessageUpdate (an Updates). A push agent gets an invocation at once, a polling
// agent in the reply to its next check-in. The agent reports each state it
// reaches; it keeps a terminal update and sends it again until the manager acks
// it, so a result outlives a lost connection. The agent reports its customer's
// rule as the effective-configuration file RuleFile.
const (
	Capability    = "io.periscope.commands"
	MessageInvoke = "invoke"
	MessageUpdate = "update"
	MessageAck    = "ack"
	// RuleFile names the agent's Rule in its OpAMP effective configuration.
	RuleFile = "periscope.commands.json"
	// MaxWireBytes bounds one message read from the wire.
	MaxWireBytes = 2 << 20
	// MaxPerMessage bounds the invocations, updates or acks in one message.
	MaxPerMessage = 256
	// MaxIDBytes bounds an invocation id.
	MaxIDBytes = 64
	// MaxReasonBytes bounds an operator's reason and an agent's explanation.
	MaxReasonBytes = 1024
)

// State is where an invocation is in its life.
type State string

// States. Queued, Delivered and Running move forward only; the rest are final.
const (
	StateQueued    State = "queued"
	StateDelivered State = "delivered"
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateExpired   State = "expired"
	StateRefused   State = "refused"
	StateCancelled State = "cancelled"
)

// States lists every state in life order.
func States() []State {
	return []State{StateQueued, StateDelivered, StateRunning, StateSucceeded, StateFailed, StateExpired, StateRefused, StateCancelled}
}

// Final reports whether s ends an invocation.
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StateFailed, StateExpired, StateRefused, StateCancelled:
		return true
	}
	return false
}

// Valid reports whether s is a known state.
func (s State) Valid() bool { return slices.Contains(States(), s) }

// rank orders states so a late or repeated update never moves one back.
func (s State) rank() int {
	switch s {
	case StateQueued:
		return 0
	case StateDelivered:
		return 1
	case StateRunning:
		return 2
	}
	return 3
}

// Follows reports whether an invocation in state from may move to s: forward
// only, and never out of a final state.
func (s State) Follows(from State) bool {
	return s.Valid() && !from.Final() && s.rank() > from.rank()
}

// Invocation is one command to run on one deployment.
type Invocation struct {
	ID      string `json:"id"`
	Command string `json:"command"`
	Params  Params `json:"params,omitempty"`
	// Deadline is when the invocation expires if it has not finished; the agent
	// runs nothing past it and cuts a run short at it.
	Deadline time.Time `json:"deadline"`
	// By and Reason are the operator and their reason, for the customer's record.
	By     string `json:"by"`
	Reason string `json:"reason"`
	// Spec is the declaration the manager checked the parameters against,
	// from the release it offers the deployment. An agent that holds that
	// release's declarations from its offer runs those; one that takes no
	// offers (it has no update hook) runs this one, still under its
	// customer's rule and its own parameter check.
	Spec *Spec `json:"spec,omitempty"`
}

// Result is what a run produced.
type Result struct {
	// ExitCode is an executable's exit status (-1 when it was killed by a signal).
	ExitCode *int `json:"exit_code,omitempty"`
	// Signal names the signal that ended an executable.
	Signal string `json:"signal,omitempty"`
	// HTTPStatus is an HTTP handler's response status.
	HTTPStatus int `json:"http_status,omitempty"`
	// Output is what the handler wrote, cut at the spec's output limit and
	// redacted under the agent's policy.
	Output string `json:"output,omitempty"`
	// OutputBytes is how many bytes the handler wrote, before the cut.
	OutputBytes int64 `json:"output_bytes"`
	Truncated   bool  `json:"truncated,omitempty"`
	// OutputSHA256 is the hex SHA-256 of Output as sent.
	OutputSHA256 string `json:"output_sha256,omitempty"`
	// Redacted counts what redaction removed from the output, by reason.
	Redacted map[string]int `json:"redacted,omitempty"`
	// Duration is how long the handler ran.
	Duration time.Duration `json:"duration_ns"`
}

// Update is an agent's report of one invocation reaching a state.
type Update struct {
	ID    string    `json:"id"`
	State State     `json:"state"`
	At    time.Time `json:"at"`
	// Reason explains a refusal, failure or expiry ("disabled by the customer").
	Reason string  `json:"reason,omitempty"`
	Result *Result `json:"result,omitempty"`
}

// Invocations is the body of MessageInvoke.
type Invocations struct {
	Invocations []Invocation `json:"invocations"`
}

// Updates is the body of MessageUpdate.
type Updates struct {
	Updates []Update `json:"updates"`
}

// Ack is the body of MessageAck: final updates the manager has stored.
type Ack struct {
	IDs []string `json:"ids"`
}

// Message wraps body as a custom message of type typ.
func Message(typ string, body any) *protobufs.CustomMessage {
	b, _ := json.Marshal(body) // plain data cannot fail to marshal
	return &protobufs.CustomMessage{Capability: Capability, Type: typ, Data: b}
}

// DecodeInvocations reads a MessageInvoke body, checking every bound.
func DecodeInvocations(data []byte) (Invocations, error) {
	var v Invocations
	if err := decodeStrict(data, &v); err != nil {
		return v, fmt.Errorf("invocations: %w", err)
	}
	if len(v.Invocations) > MaxPerMessage {
		return v, fmt.Errorf("invocations: %d, at most %d", len(v.Invocations), MaxPerMessage)
	}
	for _, inv := range v.Invocations {
		if err := checkID(inv.ID); err != nil {
			return v, err
		}
		if !ValidName(inv.Command) {
			return v, fmt.Errorf("invocation %s: command name %.80q", inv.ID, inv.Command)
		}
		if len(inv.Params) > MaxParams || len(inv.By) > MaxReasonBytes || len(inv.Reason) > MaxReasonBytes {
			return v, fmt.Errorf("invocation %s: over its bounds", inv.ID)
		}
		if inv.Spec != nil {
			if inv.Spec.Name != inv.Command {
				return v, fmt.Errorf("invocation %s: runs %.80q with the declaration of %.80q", inv.ID, inv.Command, inv.Spec.Name)
			}
			if err := inv.Spec.Validate(); err != nil {
				return v, fmt.Errorf("invocation %s: %w", inv.ID, err)
			}
		}
	}
	return v, nil
}

// DecodeUpdates reads a MessageUpdate body, checking every bound: ids, known
// states, reasons and outputs within their limits.
func DecodeUpdates(data []byte) (Updates, error) {
	var v Updates
	if err := decodeStrict(data, &v); err != nil {
		return v, fmt.Errorf("updates: %w", err)
	}
	if len(v.Updates) > MaxPerMessage {
		return v, fmt.Errorf("updates: %d, at most %d", len(v.Updates), MaxPerMessage)
	}
	for _, u := range v.Updates {
		if err := checkID(u.ID); err != nil {
			return v, err
		}
		if !u.State.Valid() || u.State == StateQueued {
			return v, fmt.Errorf("update %s: state %.20q", u.ID, u.State)
		}
		if len(u.Reason) > MaxReasonBytes {
			return v, fmt.Errorf("update %s: reason of %d bytes, at most %d", u.ID, len(u.Reason), MaxReasonBytes)
		}
		if r := u.Result; r != nil {
			if len(r.Output) > MaxOutputLimit || r.OutputBytes < 0 || r.Duration < 0 || len(r.Redacted) > 64 || len(r.Signal) > 32 || len(r.OutputSHA256) > 64 {
				return v, fmt.Errorf("update %s: result over its bounds", u.ID)
			}
		}
	}
	return v, nil
}

// DecodeAck reads a MessageAck body.
func DecodeAck(data []byte) (Ack, error) {
	var v Ack
	if err := decodeStrict(data, &v); err != nil {
		return v, fmt.Errorf("ack: %w", err)
	}
	if len(v.IDs) > MaxPerMessage {
		return v, fmt.Errorf("ack: %d ids, at most %d", len(v.IDs), MaxPerMessage)
	}
	for _, id := range v.IDs {
		if err := checkID(id); err != nil {
			return v, err
		}
	}
	return v, nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDBytes {
		return fmt.Errorf("invocation id %.80q: 1 to %d bytes", id, MaxIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("invocation id %.80q: letters, digits, '-' and '_'", id)
		}
	}
	return nil
}

// decodeStrict decodes one JSON value of known fields, at most MaxWireBytes.
func decodeStrict(data []byte, v any) error {
	if len(data) > MaxWireBytes {
		return fmt.Errorf("%d bytes, at most %d", len(data), MaxWireBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one JSON value")
	}
	return nil
}

// Rule is the customer's rule for commands, from the agent's config: commands
// are on unless Disabled; when Allow is non-empty only the commands it names
// may run. The local rule always wins over what the vendor declares.
type Rule struct {
	Disabled bool     `json:"disabled,omitempty" yaml:"disabled,omitempty"`
	Allow    []string `json:"allow,omitempty" yaml:"allow,omitempty"`
}

// Validate checks the rule's names.
func (r Rule) Validate() error {
	if len(r.Allow) > MaxCommands {
		return fmt.Errorf("commands.allow: %d names, at most %d", len(r.Allow), MaxCommands)
	}
	for _, n := range r.Allow {
		if !ValidName(n) {
			return fmt.Errorf("commands.allow: %.80q is not a command name", n)
		}
	}
	return nil
}

// Permits says whether the rule lets command name run, and why not.
func (r Rule) Permits(name string) (bool, string) {
	if r.Disabled {
		return false, "the customer has disabled commands on this deployment"
	}
	if len(r.Allow) > 0 && !slices.Contains(r.Allow, name) {
		return false, fmt.Sprintf("the customer allows only %v on this deployment", r.Allow)
	}
	return true, ""
}

// EncodeRule is the rule's wire form (the RuleFile body).
func EncodeRule(r Rule) []byte {
	b, _ := json.Marshal(r)
	return b
}

// DecodeRule reads a RuleFile body.
func DecodeRule(data []byte) (Rule, error) {
	var r Rule
	if err := decodeStrict(data, &r); err != nil {
		return r, fmt.Errorf("command rule: %w", err)
	}
	return r, r.Validate()
}
