package opamp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/agent/statefile"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// VendorRedactionFile keeps the last vendor redaction policy the manager sent, in
// the agent's data directory, so a restarted agent runs it from its first record
// rather than from its first check-in.
const VendorRedactionFile = "vendor-redaction.json"

// redaction is the agent's side of the vendor policy. Its fields are guarded by rmu,
// which is never held while calling out (the client or OnRedaction).
type redaction struct {
	// vendorWire is the vendor policy as received (nil before one is known), vendor
	// its decoding.
	vendorWire []byte
	vendor     redactpolicy.Policy
	// refusedHash and refusedErr name the last vendor policy refused and why.
	refusedHash, refusedErr string
	// onRedaction is told every change of the effective policy.
	onRedaction func(redactpolicy.Effective)
}

// Redaction returns the effective redaction policy: the vendor's (the default until
// one is known) merged with the customer's, the stricter of each.
func (a *Agent) Redaction() redactpolicy.Effective {
	a.rmu.Lock()
	defer a.rmu.Unlock()
	return a.effectiveRedactionLocked()
}

func (a *Agent) effectiveRedactionLocked() redactpolicy.Effective {
	return redactpolicy.Merge(a.red.vendor, a.cfg.Redaction)
}

// redactionReport is what the agent tells the manager in its effective configuration.
func (a *Agent) redactionReport() redactpolicy.Report {
	a.rmu.Lock()
	defer a.rmu.Unlock()
	e := a.effectiveRedactionLocked()
	r := redactpolicy.Report{Effective: e, EffectiveHash: e.Hash(), RefusedHash: a.red.refusedHash, Error: a.red.refusedErr}
	if a.red.vendorWire != nil {
		r.VendorHash = redactpolicy.PolicyHash(a.red.vendorWire)
	}
	return r
}

// loadVendorRedaction reads the vendor policy kept by an earlier run. A file that
// cannot be read or decoded is ignored (the agent runs at least the default and the
// manager sends the policy again at connect), not fatal: redaction must not stop
// the agent from starting.
func (a *Agent) loadVendorRedaction() {
	path := filepath.Join(a.cfg.DataDir, VendorRedactionFile)
	wire, err := statefile.Read(path, redactpolicy.MaxWireBytes)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var p redactpolicy.Policy
	if err == nil {
		p, err = redactpolicy.DecodePolicy(wire)
	}
	if err != nil {
		a.log.Error("ignoring the kept vendor redaction policy until the manager sends it again", "path", path, "err", err)
		return
	}
	a.rmu.Lock()
	a.red.vendorWire, a.red.vendor = wire, p
	a.rmu.Unlock()
}

// decodeVendorMessage reads the vendor policy from a custom message from the
// manager: hostile input as far as the agent is concerned.
func decodeVendorMessage(m *protobufs.CustomMessage) (redactpolicy.Policy, error) {
	if m.GetCapability() != redactpolicy.Capability || m.GetType() != redactpolicy.MessagePolicy {
		return redactpolicy.Policy{}, fmt.Errorf("custom message %s/%s is not a vendor redaction policy", m.GetCapability(), m.GetType())
	}
	return redactpolicy.DecodePolicy(m.GetData())
}

// receiveCustomMessage takes a vendor policy: a valid one is kept on disk and
// applied; an invalid one is refused, logged and reported, and the previous one
// stays in force. Either way the manager hears the outcome in the effective config.
func (a *Agent) receiveCustomMessage(ctx context.Context, m *protobufs.CustomMessage) {
	if m.GetCapability() != redactpolicy.Capability || m.GetType() != redactpolicy.MessagePolicy {
		return // another capability's message: not for us
	}
	hash := redactpolicy.PolicyHash(m.Data)
	p, err := decodeVendorMessage(m)
	a.rmu.Lock()
	held := a.red.vendorWire != nil && redactpolicy.PolicyHash(a.red.vendorWire) == hash
	switch {
	case err != nil:
		if a.red.refusedHash == hash {
			a.rmu.Unlock()
			return
		}
		a.red.refusedHash, a.red.refusedErr = hash, err.Error()
	case held && a.red.refusedHash == "":
		a.rmu.Unlock()
		return // sent again before the manager heard we hold it
	default:
		a.red.vendorWire, a.red.vendor = append([]byte(nil), m.Data...), p
		a.red.refusedHash, a.red.refusedErr = "", ""
	}
	eff := a.effectiveRedactionLocked()
	notify := a.red.onRedaction
	a.rmu.Unlock()
	if err != nil {
		a.log.Error("refused the vendor redaction policy; the previous one stays in force", "policy_hash", hash, "err", err)
	} else {
		if werr := statefile.Write(a.cfg.DataDir, VendorRedactionFile, m.Data); werr != nil {
			// Still applied now; only a restart before the next check-in would
			// run the previous policy until the manager sends this one again.
			a.log.Error("cannot keep the vendor redaction policy on disk", "err", werr)
		}
		a.log.Info("vendor redaction policy applied", "policy_hash", hash, "effective_hash", eff.Hash(), "off", eff.Off)
		if notify != nil && !held {
			notify(eff)
		}
	}
	a.mu.Lock()
	c := a.client
	a.mu.Unlock()
	if c != nil {
		if err := c.UpdateEffectiveConfig(ctx); err != nil {
			a.log.Warn("cannot report the effective redaction policy", "err", err)
		}
	}
}
