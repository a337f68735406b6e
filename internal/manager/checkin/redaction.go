package checkin

import (
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// reconcileRedaction adds to resp what deployment id's agent needs to hold the
// vendor redaction policy. The agent reports the hash of the policy it holds in its
// effective configuration; while that differs, every reply carries the policy (a
// WebSocket agent gets it in the reply to its first message, a polling agent in the
// reply to its next check-in), unless the agent refused exactly this policy, which
// a resend would not change. A manager that has not heard the agent's state since
// it started asks for it: a reconnecting agent sends only what changed.
func (s *Server) reconcileRedaction(id string, msg *protobufs.AgentToServer, resp *protobufs.ServerToAgent) {
	rep, heard, err := s.fleet.RedactionState(id)
	switch {
	case err != nil:
		return
	case !heard && msg.EffectiveConfig == nil:
		resp.Flags |= uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)
	case rep != nil && rep.VendorHash != s.vendorHash && rep.RefusedHash != s.vendorHash:
		resp.CustomCapabilities = &protobufs.CustomCapabilities{Capabilities: []string{redactpolicy.Capability}}
		resp.CustomMessage = s.vendorMsg
	}
}
