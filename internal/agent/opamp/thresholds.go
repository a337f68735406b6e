package opamp

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/agent/statefile"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// ThresholdsFile keeps the last thresholds the manager sent, in the agent's
// data directory, so a restarted agent checks them from its first round rather
// than from its first check-in.
const ThresholdsFile = "thresholds.json"

// thresholdState is the agent's side of its deployment's thresholds, guarded
// by tmu, which is never held while calling out.
type thresholdState struct {
	set thresholds.Set
	// refusedHash and refusedErr name the last set refused and why.
	refusedHash, refusedErr string
	// onChange is told every new set.
	onChange func(thresholds.Set)
}

// Thresholds returns the thresholds in force: the last set the manager sent
// (kept across restarts), or none.
func (a *Agent) Thresholds() thresholds.Set {
	a.tmu.Lock()
	defer a.tmu.Unlock()
	return a.thr.set
}

func (a *Agent) thresholdsReport() thresholds.Report {
	a.tmu.Lock()
	defer a.tmu.Unlock()
	return thresholds.Report{Hash: thresholds.Hash(a.thr.set), RefusedHash: a.thr.refusedHash, Error: a.thr.refusedErr}
}

// loadThresholds reads the set kept by an earlier run. One that cannot be read
// is ignored (the manager sends it again at connect), not fatal.
func (a *Agent) loadThresholds() {
	path := filepath.Join(a.cfg.DataDir, ThresholdsFile)
	wire, err := statefile.Read(path, thresholds.MaxWireBytes)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var s thresholds.Set
	if err == nil {
		s, err = thresholds.Decode(wire)
	}
	if err != nil {
		a.log.Error("ignoring the kept thresholds until the manager sends them again", "path", path, "err", err)
		return
	}
	a.tmu.Lock()
	a.thr.set = s
	a.tmu.Unlock()
}

// receiveThresholds takes a set from the manager: a valid one is kept on disk
// and applied at once; an invalid one is refused, logged and reported, and the
// previous one stays in force. Either way the manager hears the outcome in the
// effective configuration.
func (a *Agent) receiveThresholds(ctx context.Context, m *protobufs.CustomMessage) {
	s, err := thresholds.DecodeMessage(m)
	hash := thresholds.WireHash(m.GetData())
	a.tmu.Lock()
	switch {
	case err != nil && a.thr.refusedHash == hash:
		a.tmu.Unlock()
		return
	case err != nil:
		a.thr.refusedHash, a.thr.refusedErr = hash, err.Error()
	case thresholds.Hash(a.thr.set) == hash && a.thr.refusedHash == "":
		a.tmu.Unlock()
		return // sent again before the manager heard we hold it
	default:
		a.thr.set, a.thr.refusedHash, a.thr.refusedErr = s, "", ""
	}
	notify := a.thr.onChange
	a.tmu.Unlock()
	if err != nil {
		a.log.Error("refused the thresholds; the previous ones stay in force", "thresholds_hash", hash, "err", err)
	} else {
		if werr := statefile.Write(a.cfg.DataDir, ThresholdsFile, thresholds.Encode(s)); werr != nil {
			// Applied now; only a restart before the next check-in would run
			// the previous set until the manager sends this one again.
			a.log.Error("cannot keep the thresholds on disk", "err", werr)
		}
		a.log.Info("thresholds applied", "thresholds_hash", hash, "thresholds", s.Summary())
		if notify != nil {
			notify(s)
		}
	}
	a.mu.Lock()
	c := a.client
	a.mu.Unlock()
	if c != nil {
		if err := c.UpdateEffectiveConfig(ctx); err != nil {
			a.log.Warn("cannot report the thresholds in force", "err", err)
		}
	}
}
