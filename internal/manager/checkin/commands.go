package checkin

import (
	"context"
	"slices"
	"sync"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// commandRule reads the customer's command rule from an agent's effective
// configuration. A rule the manager cannot read counts as commands disabled:
// nothing is queued that the customer may not have allowed (the agent enforces
// its rule regardless).
func commandRule(cm *protobufs.AgentConfigMap) *registry.CommandsReport {
	rep := &registry.CommandsReport{}
	f := cm.ConfigMap[command.RuleFile]
	if f == nil {
		return rep
	}
	r, err := command.DecodeRule(f.Body)
	if err != nil {
		r = command.Rule{Disabled: true}
	}
	rep.Rule = &r
	return rep
}

// exchangeCommands handles the commands message an agent sent and puts what it
// should get back into resp: an ack of its updates, else its pending
// invocations. A reply carries one custom message; when the redaction policy
// also wants the slot, the two take turns, and what is left out goes in a
// later reply (invocations are recorded delivered only once sent, and an agent
// resends an update until it is acked).
func (s *Server) exchangeCommands(ctx context.Context, id string, msg *protobufs.AgentToServer, resp *protobufs.ServerToAgent) {
	if s.commands == nil {
		return
	}
	var out *protobufs.CustomMessage
	var sent func()
	if m := msg.CustomMessage; m != nil && m.Capability == command.Capability {
		out = s.commands.Incoming(ctx, id, m)
	}
	if out == nil {
		out, sent = s.commands.Outgoing(ctx, id)
	}
	if out == nil {
		return
	}
	if resp.CustomMessage != nil && !s.commandsTakeTurn(id) {
		return
	}
	resp.CustomMessage = out
	resp.CustomCapabilities = withCapability(resp.CustomCapabilities, command.Capability)
	if sent != nil {
		sent()
	}
}

// commandsTakeTurn says whether commands get the contended slot this time,
// alternating per deployment.
func (s *Server) commandsTakeTurn(id string) bool {
	s.turnMu.Lock()
	defer s.turnMu.Unlock()
	if s.commandsTurn[id] {
		delete(s.commandsTurn, id)
		return false
	}
	s.commandsTurn[id] = true
	return true
}

func withCapability(cc *protobufs.CustomCapabilities, capability string) *protobufs.CustomCapabilities {
	if cc == nil {
		return &protobufs.CustomCapabilities{Capabilities: []string{capability}}
	}
	if !slices.Contains(cc.Capabilities, capability) {
		cc.Capabilities = append(cc.Capabilities, capability)
	}
	return cc
}

// PushCommands sends each listed deployment that holds an open push connection
// its pending invocations now, a few at a time; deployments that poll get them
// in the reply to their next check-in.
func (s *Server) PushCommands(ctx context.Context, ids []string) {
	if s.commands == nil {
		return
	}
	type job struct {
		id string
		c  interface {
			Send(context.Context, *protobufs.ServerToAgent) error
		}
	}
	s.mu.Lock()
	var jobs []job
	seen := map[string]bool{}
	for _, id := range ids {
		if c, ok := s.conns[id]; ok && !seen[id] {
			seen[id] = true
			jobs = append(jobs, job{id, c})
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	next := make(chan job)
	for range min(len(jobs), pushWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				msg, sent := s.commands.Outgoing(ctx, j.id)
				if msg == nil {
					continue
				}
				sctx, cancel := context.WithTimeout(ctx, pushTimeout)
				err := j.c.Send(sctx, &protobufs.ServerToAgent{CustomCapabilities: withCapability(nil, command.Capability), CustomMessage: msg})
				cancel()
				if err != nil {
					s.log.Debug("push of commands failed", "deployment", j.id, "err", err)
					continue
				}
				sent()
			}
		}()
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
}
