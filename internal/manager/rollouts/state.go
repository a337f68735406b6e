package rollouts

import (
	"time"

	"github.com/periscope-dev/periscope/internal/rolloutplan"
)

// Phase is where a rollout is.
type Phase string

// Rollout phases.
const (
	// PhaseRunning: a wave is open, updating or baking.
	PhaseRunning Phase = "running"
	// PhaseHalted: a gate failed; no wave opens until an operator resumes.
	PhaseHalted Phase = "halted"
	// PhaseCompleted: every wave passed; every deployment of the stack gets
	// the release.
	PhaseCompleted Phase = "completed"
	// PhaseAborted: an operator aborted it and every deployment it moved is
	// pinned back.
	PhaseAborted Phase = "aborted"
	// PhaseSuperseded: a newer release's rollout took over. The deployments
	// of its opened waves keep its release until the newer one reaches them.
	PhaseSuperseded Phase = "superseded"
)

// maxTimeline bounds a rollout's timeline; the audit log keeps everything.
const maxTimeline = 200

// State is one rollout: what the engine keeps in the store and what the API
// shows.
type State struct {
	ID    string `json:"id"`
	Stack string `json:"stack"`
	// Seq orders the rollouts of a stack: each starts one above the newest.
	Seq     int64  `json:"seq"`
	Release string `json:"release"`
	// Baseline is the release deployments no rollout reached run (the stack's
	// latest before this one, or the baseline of the rollout it superseded).
	Baseline string `json:"baseline,omitempty"`
	// Urgent rollouts ignore update windows.
	Urgent bool `json:"urgent,omitempty"`
	// Plan is the stack's plan as it was at the start: changing the plan
	// changes the rollouts started after.
	Plan      rolloutplan.Plan `json:"plan"`
	Phase     Phase            `json:"phase"`
	StartedAt time.Time        `json:"started_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	StartedBy string           `json:"started_by"`
	Reason    string           `json:"reason,omitempty"`
	// Wave is the index of the open wave (len(Waves) once all passed).
	Wave  int         `json:"wave"`
	Waves []WaveState `json:"waves"`
	// Halt is why the rollout last halted; nil if it never did.
	Halt *Halt `json:"halt,omitempty"`
	// Skipped are deployments operators left out: gates do not count them and
	// nothing waits for them; they take the release when it completes.
	Skipped []string `json:"skipped,omitempty"`
	// PendingPins are pin-backs decided and not yet confirmed by the pinner;
	// each Step retries them.
	PendingPins []PinOrder `json:"pending_pins,omitempty"`
	// SupersededBy names the rollout that took over.
	SupersededBy string `json:"superseded_by,omitempty"`
	// Retired is set on a superseded rollout once a newer one completed: no
	// deployment keeps its release any more.
	Retired  bool    `json:"retired,omitempty"`
	Timeline []Event `json:"timeline"`
}

// WaveState is one wave of a rollout.
type WaveState struct {
	Name string `json:"name"`
	// OpenedAt is zero until the wave opens.
	OpenedAt time.Time `json:"opened_at,omitzero"`
	// Members are the deployments the wave took when it opened, each with the
	// release it ran then (what a pin-back returns it to).
	Members map[string]string `json:"members,omitempty"`
	// BakeStart is when every member had updated (or was counted by a gate);
	// the wave passes Bake after it with every gate green.
	BakeStart time.Time `json:"bake_start,omitzero"`
	PassedAt  time.Time `json:"passed_at,omitzero"`
	// Figures are the wave's figures at the last evaluation.
	Figures Figures `json:"figures"`
}

// Figures count a wave's deployments for its gates. Size leaves out pinned
// and skipped members and those deleted since the wave opened.
type Figures struct {
	Size           int `json:"size"`
	Updated        int `json:"updated"`
	Regressed      int `json:"regressed"`
	FailedUpdates  int `json:"failed_updates"`
	ComponentsDown int `json:"components_down"`
	Stale          int `json:"stale"`
}

// Halt is why a rollout halted.
type Halt struct {
	At   time.Time `json:"at"`
	Wave string    `json:"wave"`
	// Gates name the gates that failed ("regressed", "failed_updates", …).
	Gates []string `json:"gates"`
	// Reason names the gates with their figures and the offending deployments.
	Reason string `json:"reason"`
	// Offenders are the deployments the failing gates counted.
	Offenders []string `json:"offenders"`
}

// PinOrder is a pin change to make: ids pinned to release, or unpinned.
type PinOrder struct {
	IDs     []string `json:"ids"`
	Release string   `json:"release,omitempty"`
	Unpin   bool     `json:"unpin,omitempty"`
	Actor   string   `json:"actor"`
	Reason  string   `json:"reason"`
}

// Event is one line of a rollout's timeline.
type Event struct {
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	Wave string    `json:"wave,omitempty"`
	Text string    `json:"text"`
}

// done reports whether the rollout no longer decides any deployment's release
// and has nothing left to do. An aborted rollout still keeps the deployments
// it never reached on its baseline until a newer rollout takes over.
func (s *State) done() bool {
	return len(s.PendingPins) == 0 && (s.Phase == PhaseCompleted || s.Retired || (s.Phase == PhaseAborted && s.SupersededBy != ""))
}

func (s *State) event(at time.Time, kind, wave, text string) {
	s.Timeline = append(s.Timeline, Event{At: at, Kind: kind, Wave: wave, Text: text})
	if n := len(s.Timeline); n > maxTimeline {
		s.Timeline = append(s.Timeline[:0], s.Timeline[n-maxTimeline:]...)
	}
}

func (s *State) skipped(id string) bool {
	for _, x := range s.Skipped {
		if x == id {
			return true
		}
	}
	return false
}

// openedWaveOf returns the index of the opened wave holding id, or -1.
func (s *State) openedWaveOf(id string) int {
	for i := range s.Waves {
		if s.Waves[i].OpenedAt.IsZero() {
			break
		}
		if _, ok := s.Waves[i].Members[id]; ok {
			return i
		}
	}
	return -1
}

// waveFor is the wave at or after from that takes m, the first whose selection
// matches; len(Waves) when none does (m gets the release when the rollout
// completes).
func (s *State) waveFor(m *Member, from int) int {
	for j := from; j < len(s.Plan.Waves); j++ {
		if s.Plan.Waves[j].Select.Matches(m.Subject, s.ID, j) {
			return j
		}
	}
	return len(s.Plan.Waves)
}

// clone returns a deep copy for a change to work on.
func (s *State) clone() State {
	c := *s
	c.Waves = make([]WaveState, len(s.Waves))
	for i, w := range s.Waves {
		c.Waves[i] = w
		if w.Members != nil {
			c.Waves[i].Members = make(map[string]string, len(w.Members))
			for k, v := range w.Members {
				c.Waves[i].Members[k] = v
			}
		}
	}
	if s.Halt != nil {
		h := *s.Halt
		c.Halt = &h
	}
	c.Skipped = append([]string(nil), s.Skipped...)
	c.PendingPins = append([]PinOrder(nil), s.PendingPins...)
	c.Timeline = append([]Event(nil), s.Timeline...)
	return c
}
