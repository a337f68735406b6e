package checkin

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
)

// Token rotation over OpAMP: an agent that checks in with the previous token of
// a rotation is offered the new one as an OpAMP connection settings offer (an
// Authorization header), in every reply until it uses it, and at once when it
// holds a push connection. A connection whose token is revoked is closed.

// defaultOfferHeartbeat is the heartbeat a token offer carries when the manager
// has no whole-second one to offer: opamp-go applies an offer's heartbeat, and
// zero would stop a push agent's heartbeats.
const defaultOfferHeartbeat = 30

// tokenOffer returns the offer of a rotated token for c's agent, or nil.
func (c *conn) tokenOffer() *protobufs.ConnectionSettingsOffers {
	_, offer := c.s.fleet.TokenValid(c.id, c.tokenHash)
	if offer == "" {
		return nil
	}
	return c.s.tokenSettings(offer)
}

// tokenSettings is the connection settings offer that hands token over.
func (s *Server) tokenSettings(token string) *protobufs.ConnectionSettingsOffers {
	hb := uint64(defaultOfferHeartbeat)
	if s.hb > 0 {
		hb = uint64((s.hb + time.Second - 1) / time.Second) // whole seconds, rounded up
	}
	sum := sha256.Sum256([]byte("periscope token offer\x00" + token))
	return &protobufs.ConnectionSettingsOffers{Hash: sum[:], Opamp: &protobufs.OpAMPConnectionSettings{
		Headers:                  &protobufs.Headers{Headers: []*protobufs.Header{{Key: "Authorization", Value: "Bearer " + token}}},
		HeartbeatIntervalSeconds: hb,
	}}
}

// TokensChanged acts on a change of deployment id's tokens: its push
// connection is closed if its token is no longer valid, or offered the rotated
// token now. Polling agents are told at their next check-in.
func (s *Server) TokensChanged(ctx context.Context, id string) {
	s.mu.Lock()
	c, ok := s.conns[id]
	h := s.connToken[id]
	s.mu.Unlock()
	if !ok {
		return
	}
	valid, offer := s.fleet.TokenValid(id, h)
	if !valid {
		s.rejected.WithLabelValues("revoked_token").Inc()
		s.log.Info("closing the push connection of a revoked token", "deployment", id)
		if err := c.Disconnect(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("close push connection", "deployment", id, "err", err)
		}
		return
	}
	if offer == "" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := c.Send(sctx, &protobufs.ServerToAgent{ConnectionSettings: s.tokenSettings(offer)}); err != nil {
		// The agent gets the offer in the reply to its next message instead.
		s.log.Debug("push of rotated token failed", "deployment", id, "err", err)
	}
}
