package checkin_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// poll sends one polling check-in and returns the manager's answer.
func (f *opampFixture) poll(t *testing.T, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	t.Helper()
	msg.InstanceUid, msg.SequenceNum = bytes.Repeat([]byte{7}, 16), 1
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	code, body := f.post(t, bytes.NewReader(b), "")
	if code != 200 {
		t.Fatalf("check-in: %d %s", code, body)
	}
	var resp protobufs.ServerToAgent
	if err := proto.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

// A polling agent reports its customer's rule in its effective configuration,
// gets its invocations in the reply to a check-in, sharing the one custom
// message with the redaction policy in turns, and gets its final update acked.
func TestPollingAgentGetsCommandsInItsReplies(t *testing.T) {
	f := newOpAMP(t, 0)
	ctx := context.Background()
	specs := []command.Spec{{Name: "flush", HTTP: &command.HTTPHandler{URL: "http://localhost:9/flush"}}}
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "1.0", Commands: specs}); err != nil {
		t.Fatal(err)
	}
	e := redactpolicy.Resolve(redactpolicy.Policy{})
	config := func(vendorHash string) *protobufs.EffectiveConfig {
		return &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
			command.RuleFile:        {Body: command.EncodeRule(command.Rule{Allow: []string{"flush"}})},
			redactpolicy.ReportFile: {Body: redactpolicy.EncodeReport(redactpolicy.Report{VendorHash: vendorHash, Effective: e, EffectiveHash: e.Hash()})},
		}}}
	}
	// The agent holds another redaction policy: the policy wants every reply.
	if resp := f.poll(t, &protobufs.AgentToServer{EffectiveConfig: config("old")}); resp.CustomMessage.GetCapability() != redactpolicy.Capability {
		t.Fatalf("first reply carries %v, want the policy", resp.CustomMessage)
	}
	if v, _ := f.reg.Get("acme-prod"); v.Deployment.CommandRule == nil || v.Deployment.CommandRule.Allow[0] != "flush" {
		t.Fatalf("deployment's rule = %+v", v.Deployment.CommandRule)
	}
	run := func() string {
		invs, err := f.cmds.Invoke(ctx, commands.Request{Actor: commands.Actor{Name: "alice"}, Select: registry.Selector{IDs: []string{"acme-prod"}},
			Command: "flush", Reason: "ticket"})
		if err != nil || invs[0].State != command.StateQueued {
			t.Fatalf("invoke = %+v, %v", invs, err)
		}
		return invs[0].ID
	}
	invoked := func(resp *protobufs.ServerToAgent) string {
		m := resp.CustomMessage
		if m.GetCapability() != command.Capability || m.GetType() != command.MessageInvoke {
			return ""
		}
		body, err := command.DecodeInvocations(m.Data)
		if err != nil || len(body.Invocations) != 1 {
			t.Fatalf("invocations %v, %v", body, err)
		}
		return body.Invocations[0].ID
	}
	first := run()
	if got := invoked(f.poll(t, &protobufs.AgentToServer{})); got != first {
		t.Fatalf("reply with a queued invocation and the policy pending carried invocation %q, want %q", got, first)
	}
	second := run()
	if resp := f.poll(t, &protobufs.AgentToServer{}); resp.CustomMessage.GetCapability() != redactpolicy.Capability {
		t.Fatalf("the policy lost its turn: %v", resp.CustomMessage)
	}
	if got := invoked(f.poll(t, &protobufs.AgentToServer{})); got != second {
		t.Fatalf("commands' turn carried %q, want %q", got, second)
	}
	if inv, _ := f.cmds.Get(ctx, first); inv.State != command.StateDelivered {
		t.Fatalf("a sent invocation is %s, want delivered", inv.State)
	}

	// The agent now holds the policy; its final update is acked.
	f.poll(t, &protobufs.AgentToServer{EffectiveConfig: config(redactpolicy.VendorHash(redactpolicy.Policy{}))})
	status := 204
	up := command.Message(command.MessageUpdate, command.Updates{Updates: []command.Update{{ID: first, State: command.StateSucceeded,
		Result: &command.Result{HTTPStatus: status}}}})
	resp := f.poll(t, &protobufs.AgentToServer{CustomMessage: up})
	if m := resp.CustomMessage; m.GetType() != command.MessageAck {
		t.Fatalf("reply to an update carries %v, want an ack", m)
	}
	if inv, _ := f.cmds.Get(ctx, first); inv.State != command.StateSucceeded || inv.HTTPStatus != 204 {
		t.Fatalf("stored %+v", inv)
	}
}

// readReply reads one OpAMP message from a WebSocket (after its header byte).
func readReply(t *testing.T, c *websocket.Conn) *protobufs.ServerToAgent {
	t.Helper()
	_, b, err := c.ReadMessage()
	if err != nil || len(b) == 0 {
		t.Fatalf("read: %v", err)
	}
	var m protobufs.ServerToAgent
	if err := proto.Unmarshal(b[1:], &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// A push agent gets an invocation the moment it is queued, over its open
// WebSocket, and the ack of its result in the reply to the update.
func TestPushAgentGetsCommandsAtOnce(t *testing.T) {
	f := newOpAMP(t, 0)
	ctx := context.Background()
	specs := []command.Spec{{Name: "flush", HTTP: &command.HTTPHandler{URL: "http://localhost:9/flush"}}}
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "1.0", Commands: specs}); err != nil {
		t.Fatal(err)
	}
	c := dialOpAMP(t, f)
	if err := c.WriteMessage(websocket.BinaryMessage, append([]byte{0}, agentMessage(t)...)); err != nil {
		t.Fatal(err)
	}
	readReply(t, c)
	invs, err := f.cmds.Invoke(ctx, commands.Request{Actor: commands.Actor{Name: "alice"}, Select: registry.Selector{IDs: []string{"acme-prod"}},
		Command: "flush", Reason: "ticket"})
	if err != nil {
		t.Fatal(err)
	}
	m := readReply(t, c).CustomMessage
	if m.GetType() != command.MessageInvoke {
		t.Fatalf("pushed %v, want the invocation", m)
	}
	body, err := command.DecodeInvocations(m.Data)
	if err != nil || len(body.Invocations) != 1 || body.Invocations[0].ID != invs[0].ID {
		t.Fatalf("pushed %+v, %v", body, err)
	}
	if inv, _ := f.cmds.Get(ctx, invs[0].ID); inv.State != command.StateDelivered {
		t.Fatalf("pushed invocation is %s, want delivered", inv.State)
	}
	up, err := proto.Marshal(&protobufs.AgentToServer{InstanceUid: bytes.Repeat([]byte{7}, 16), SequenceNum: 2,
		CustomMessage: command.Message(command.MessageUpdate, command.Updates{Updates: []command.Update{{ID: invs[0].ID, State: command.StateFailed, Reason: "exit 2"}}})})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, append([]byte{0}, up...)); err != nil {
		t.Fatal(err)
	}
	if m := readReply(t, c).CustomMessage; m.GetType() != command.MessageAck {
		t.Fatalf("reply to the update carries %v, want the ack", m)
	}
	if inv, _ := f.cmds.Get(ctx, invs[0].ID); inv.State != command.StateFailed || inv.StateReason != "exit 2" {
		t.Fatalf("stored %+v", inv)
	}
}
