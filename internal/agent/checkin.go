package agent

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/periscope-dev/periscope/internal/agent/commands"
	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/agent/reach"
	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// CheckinSettings are the collaborators of NewCheckin; zero values are safe.
type CheckinSettings struct {
	// Logger receives the check-in's and the runner's logs; nil discards them.
	Logger *slog.Logger
	// Env is the environment cloud detection reads and command executables
	// start from; nil means os.Environ().
	Env []string
	// OnRedaction is told each change of the effective redaction policy
	// (opamp.Settings.OnRedaction).
	OnRedaction func(redactpolicy.Effective)
	// OnThresholds is told each new set of thresholds from the manager
	// (opamp.Settings.OnThresholds).
	OnThresholds func(thresholds.Set)
	// Reach, when set, is told each failed and successful exchange with the
	// manager and logs its changes of state instead of each failure.
	Reach *reach.Tracker
	// Record, when set, is told every invocation the runner received,
	// refused, started and finished.
	Record commands.Recorder
}

// NewCheckin builds an agent's check-in and its remote-command runner wired to
// each other as the full agent runs them: the runner keeps its journal under
// cfg.DataDir, obeys the customer's rule cfg.Commands, redacts output with the
// check-in's effective redaction policy and sends its updates through the
// check-in. It starts nothing: start the runner before the check-in (an
// invocation may arrive as soon as it connects) and shut it down first (its
// last outcomes leave through the check-in).
func NewCheckin(cfg config.Agent, s CheckinSettings) (*opamp.Agent, *commands.Runner, error) {
	c, r, _, err := newCheckin(cfg, s)
	return c, r, err
}

func newCheckin(cfg config.Agent, s CheckinSettings) (*opamp.Agent, *commands.Runner, *outputRedactor, error) {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Env == nil {
		s.Env = os.Environ()
	}
	// The runner and the check-in need each other; neither calls the other
	// before Start, by which time c is set.
	var c *opamp.Agent
	red := &outputRedactor{cfg: cfg, log: s.Logger, policy: func() redactpolicy.Effective { return c.Redaction() }}
	r, err := commands.New(commands.Settings{
		Dir: commands.Dir(cfg.DataDir), Rule: cfg.Commands, Redact: red.redact, Env: s.Env,
		Sink: commands.SinkFunc(func(ctx context.Context, u []command.Update) error {
			return c.SendCommandUpdates(ctx, u)
		}),
		Record: s.Record,
		Logger: s.Logger.With("component", "commands"),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	c, err = opamp.New(cfg, opamp.Settings{Logger: s.Logger, Env: s.Env, Reach: s.Reach, OnRedaction: s.OnRedaction, OnThresholds: s.OnThresholds, Commands: r})
	if err != nil {
		return nil, nil, nil, err
	}
	return c, r, red, nil
}

// outputRedactor applies the effective redaction policy to commands' output,
// compiling it again only when the policy changed.
type outputRedactor struct {
	cfg    config.Agent
	log    *slog.Logger
	policy func() redactpolicy.Effective

	mu   sync.Mutex
	pol  *redact.Policy
	hash string
}

// redact redacts s and counts what it removed by reason. If the policy cannot
// be compiled the output is withheld rather than sent unredacted.
func (o *outputRedactor) redact(s string) (string, map[string]int) {
	eff := o.policy()
	o.mu.Lock()
	p := o.pol
	if p == nil || o.hash != eff.Hash() {
		key, err := redactionHashKey(o.cfg)
		if err == nil {
			p, err = redact.Compile(eff, key)
		}
		if err != nil {
			o.mu.Unlock()
			o.log.Error("cannot compile the redaction policy for command output; withholding the output", "err", err)
			return "[output withheld: the agent could not apply its redaction policy]", nil
		}
		o.pol, o.hash = p, eff.Hash()
	}
	o.mu.Unlock()
	var st redact.Stats
	out := p.Text(s, "command.output", &st)
	var counts map[string]int
	for r, n := range st.Reasons {
		if n > 0 {
			if counts == nil {
				counts = map[string]int{}
			}
			counts[redact.Reason(r).String()] = n
		}
	}
	return out, counts
}
