package commands

import (
	"fmt"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/command"
)

// HandleMessage takes a custom message of command.Capability from the manager:
// hostile input as far as the agent is concerned. MessageInvoke's invocations
// go to Invoke, MessageAck's ids to Ack; anything else, or a body that breaks
// the contract's bounds, is refused whole with an error and changes nothing.
func (r *Runner) HandleMessage(m *protobufs.CustomMessage) error {
	if m.GetCapability() != command.Capability {
		return fmt.Errorf("custom message of capability %.80q is not a command message", m.GetCapability())
	}
	switch m.GetType() {
	case command.MessageInvoke:
		v, err := command.DecodeInvocations(m.GetData())
		if err != nil {
			return err
		}
		r.Invoke(v.Invocations)
	case command.MessageAck:
		v, err := command.DecodeAck(m.GetData())
		if err != nil {
			return err
		}
		r.Ack(v.IDs)
	default:
		return fmt.Errorf("command message type %.40q: the agent takes %s and %s", m.GetType(), command.MessageInvoke, command.MessageAck)
	}
	return nil
}
