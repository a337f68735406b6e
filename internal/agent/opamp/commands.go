package opamp

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/desired"
)

// Commands is the agent's remote-command runner as the check-in sees it
// (internal/agent/commands).
type Commands interface {
	// HandleMessage takes a custom message of command.Capability.
	HandleMessage(*protobufs.CustomMessage) error
	// SetSpecs takes the commands the latest release offer declares.
	SetSpecs([]command.Spec) error
	// Resend sends the final updates the manager has not acked again.
	Resend()
}

// errNotConnected means there is no OpAMP client to send through yet.
var errNotConnected = errors.New("the agent is not checking in with the manager")

// receiveCommandMessage hands a command message to the runner; a message the
// runner refuses is logged and dropped (the manager sends an invocation again
// until it hears of it).
func (a *Agent) receiveCommandMessage(m *protobufs.CustomMessage) {
	if a.cmds == nil {
		return
	}
	if err := a.cmds.HandleMessage(m); err != nil {
		a.log.Warn("refused a command message from the manager", "type", m.GetType(), "err", err)
	}
}

// keepOfferedCommands gives the runner the commands an offer declares, whether
// or not the agent applies the offer: they are what the manager may invoke.
func (a *Agent) keepOfferedCommands(rc *protobufs.AgentRemoteConfig) {
	if a.cmds == nil {
		return
	}
	offer, err := desired.Decode(rc)
	if err != nil {
		return // receiveOffer reports a bad offer; its commands are not taken
	}
	if err := a.cmds.SetSpecs(offer.Commands); err != nil {
		a.log.Error("cannot keep the offered release's commands", "release", offer.Release, "err", err)
	}
}

// SendCommandUpdates sends updates to the manager as one MessageUpdate. opamp-go
// holds one custom message at a time: while another is pending it waits for it
// to go, within ctx, so no update is lost.
func (a *Agent) SendCommandUpdates(ctx context.Context, updates []command.Update) error {
	msg := command.Message(command.MessageUpdate, command.Updates{Updates: updates})
	for {
		a.mu.Lock()
		c := a.client
		a.mu.Unlock()
		if c == nil {
			return errNotConnected
		}
		sent, err := c.SendCustomMessage(msg)
		if errors.Is(err, types.ErrCustomMessagePending) {
			select {
			case <-sent:
				continue
			case <-ctx.Done():
				return fmt.Errorf("send command updates: %w", ctx.Err())
			}
		}
		if err != nil {
			return fmt.Errorf("send command updates: %w", err)
		}
		return nil
	}
}
