package rollouts

import (
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
)

// Decision is the release the rollouts want a deployment on, and what holds
// it back.
type Decision struct {
	// Release is the release the deployment should run: its pin's, else the
	// one the stack's rollouts give it, else the stack's latest.
	Release string `json:"release"`
	// Rollout is the rollout that gave Release ("" for a pin or the latest).
	Rollout string `json:"rollout,omitempty"`
	// Behind is BehindWaitingForWave (a newer release is rolling out and the
	// deployment's wave has not opened), BehindOutsideWindow (its update
	// window is closed), or "".
	Behind fleet.BehindReason `json:"behind,omitempty"`
	// Wave names the wave it waits for ("" for the end of the rollout, when
	// no wave selects it).
	Wave string `json:"wave,omitempty"`
	// Expected is when the wave is expected to open (zero while the rollout
	// is halted), or when the next update window starts.
	Expected time.Time `json:"expected,omitzero"`
	// Hold is set when the offer of Release must not go out now.
	Hold bool `json:"hold,omitempty"`
}

// Decide says which release m should run at now and why it waits. Pins always win: a pinned deployment is told its
// pin's release, never held (an operator's pin is deliberate and audited, and
// a rollout's pin-back undoes a bad release). Update windows hold an offer
// unless the rollout that gave the release is urgent. It only reads: the
// registry may call it under its own locks.
func (e *Engine) Decide(m Member, now time.Time) Decision {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.decideLocked(&m, now)
}

// decideLocked is Decide; the caller holds mu.
func (e *Engine) decideLocked(m *Member, now time.Time) Decision {
	if m.Pin != nil {
		return Decision{Release: m.Pin.Release}
	}
	d := Decision{Release: m.Latest}
	urgent := false
	chain := e.stacks[m.Stack] // newest first
	if len(chain) > 0 {
		// The newest rollout that holds m decides; m's release is otherwise
		// the baseline the oldest of them started from.
		governed := false
		for _, r := range chain {
			if r.Phase == PhaseAborted || r.skipped(m.ID) {
				continue
			}
			if r.Phase == PhaseCompleted || r.openedWaveOf(m.ID) >= 0 {
				d.Release, d.Rollout, urgent, governed = r.Release, r.ID, r.Urgent, true
				break
			}
		}
		if !governed {
			d.Release = chain[len(chain)-1].Baseline
		}
		if r := chain[0]; (r.Phase == PhaseRunning || r.Phase == PhaseHalted) && d.Release != r.Release && !r.skipped(m.ID) {
			d.Behind = BehindWaitingForWave
			d.Wave, d.Expected = r.expect(m, now)
		}
	}
	if d.Release != "" && m.Running != d.Release && !urgent {
		if open, next := e.windows.For(m.ID, m.Customer).Open(now); !open {
			d.Behind, d.Wave, d.Expected, d.Hold = BehindOutsideWindow, "", next, true
		}
	}
	return d
}

// expect returns the wave that will take m (not in an opened wave) and when
// it is expected to open: the open wave's bake end (from now when it has not
// started baking) plus the bake of every wave between. Zero while halted.
func (s *State) expect(m *Member, now time.Time) (string, time.Time) {
	from := s.Wave
	if from < len(s.Waves) && !s.Waves[from].OpenedAt.IsZero() {
		from++
	}
	k := s.waveFor(m, from)
	name := ""
	if k < len(s.Plan.Waves) {
		name = s.Plan.Waves[k].Name
	}
	if s.Phase != PhaseRunning || s.Wave >= len(s.Waves) {
		return name, time.Time{}
	}
	cur := s.Waves[s.Wave]
	t := now
	if !cur.BakeStart.IsZero() {
		t = cur.BakeStart
	}
	t = t.Add(time.Duration(s.Plan.Waves[s.Wave].Bake))
	for j := s.Wave + 1; j < k && j < len(s.Plan.Waves); j++ {
		t = t.Add(time.Duration(s.Plan.Waves[j].Bake))
	}
	if t.Before(now) {
		t = now
	}
	return name, t
}
