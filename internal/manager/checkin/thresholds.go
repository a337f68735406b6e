package checkin

import (
	"context"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/thresholds"
)

// reconcileThresholds puts into resp the thresholds deployment id's agent
// should hold, while the hash it reports differs from theirs and it did not
// refuse exactly them. An agent that reports no thresholds (one from before
// them) is sent none. The redaction policy and commands come first for the one
// custom message slot: thresholds wait for a reply that has it free, which
// their own resend-until-held loop makes safe.
func (s *Server) reconcileThresholds(id string, resp *protobufs.ServerToAgent) {
	if resp.CustomMessage != nil {
		return
	}
	if msg := s.thresholdsMessage(id); msg != nil {
		resp.CustomMessage = msg
		resp.CustomCapabilities = withCapability(resp.CustomCapabilities, thresholds.Capability)
	}
}

// thresholdsMessage is the message that carries deployment id's thresholds
// when its agent needs them, else nil.
func (s *Server) thresholdsMessage(id string) *protobufs.CustomMessage {
	set, rep, _, err := s.fleet.ThresholdsState(id)
	if err != nil || rep == nil {
		return nil
	}
	want := thresholds.Hash(set)
	if rep.Hash == want || rep.RefusedHash == want {
		return nil
	}
	return thresholds.Message(set)
}

// PushThresholds sends deployment id its thresholds now when it holds an open
// push connection and its agent needs them; a polling agent gets them at its
// next check-in, and a failed send is retried with its next message.
func (s *Server) PushThresholds(ctx context.Context, id string) {
	s.mu.Lock()
	c := s.conns[id]
	s.mu.Unlock()
	if c == nil {
		return
	}
	msg := s.thresholdsMessage(id)
	if msg == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := c.Send(sctx, &protobufs.ServerToAgent{CustomMessage: msg,
		CustomCapabilities: &protobufs.CustomCapabilities{Capabilities: []string{thresholds.Capability}}}); err != nil {
		s.log.Debug("push of thresholds failed", "deployment", id, "err", err)
	}
}
