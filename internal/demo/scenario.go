package demo

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/rolloutplan"
)

// The demo's releases. The fleet runs Current when the demo starts (one
// customer holds Oldest with a pin); the scenario publishes Next, which rolls
// out through the stack's plan and breaks one function on one customer.
const (
	Oldest  = "1.6.4"
	Current = "1.7.2"
	Next    = "1.8.0"
	// oldestAge and currentAge are how long before the start Oldest and Current
	// were published, so that "behind" reads in days as it would in a real
	// fleet.
	oldestAge  = 23 * 24 * time.Hour
	currentAge = 9 * 24 * time.Hour
)

// The rings the rollout plan's waves select, by the deployment label ring.
const (
	ringLabel  = "ring"
	ringCanary = "canary"
	ringEarly  = "early"
)

// Scenario is a story the demo tells on its own, replayable by name.
type Scenario struct {
	// Name selects it (--scenario).
	Name string
	// Summary says in one line what happens.
	Summary string
	// halt puts the deployment that Next breaks in the early wave, whose gate
	// tolerates no regression: the rollout halts and pins it back by itself.
	// Otherwise it is in the last wave, whose gate tolerates one, so the
	// newcomer pins it back.
	halt bool
}

// Scenarios are the demo's stories; the first is the default.
var Scenarios = []Scenario{
	{Name: "rollout", Summary: Next + " rolls out in three waves; it breaks checkout on " + regressedOn + ", which you pin back"},
	{Name: "halt", Summary: Next + " rolls out; it breaks checkout on " + regressedOn + " in the second wave, and the rollout halts and pins it back by itself",
		halt: true},
}

// ScenarioNames lists the scenarios' names, the default first.
func ScenarioNames() []string {
	names := make([]string, len(Scenarios))
	for i, s := range Scenarios {
		names[i] = s.Name
	}
	return names
}

// scenarioNamed returns the scenario called name, the default for "".
func scenarioNamed(name string) (Scenario, error) {
	if name == "" {
		return Scenarios[0], nil
	}
	for _, s := range Scenarios {
		if s.Name == name {
			return s, nil
		}
	}
	return Scenario{}, fmt.Errorf("no demo scenario %q: choose one of %s", name, strings.Join(ScenarioNames(), ", "))
}

// The scenario's timeline at normal speed (Options.Speed divides each).
const (
	// publishAfter is when, after the start, Next is published.
	publishAfter = 20 * time.Second
	// canaryBake and earlyBake are the first two waves' bake times; the early
	// wave bakes longer in the halt scenario, so the regression is found
	// while it bakes.
	canaryBake    = 30 * time.Second
	earlyBake     = 45 * time.Second
	earlyBakeHalt = 3 * time.Minute
	lastBake      = 30 * time.Second
	// heartbeat is how often agents check in, and staleAfter how long the
	// manager waits for one before a deployment turns stale.
	heartbeat  = 5 * time.Second
	staleAfter = 60 * time.Second
	// slowPoll is how often the lagging poller polls: under staleAfter, so
	// it lags (pull-pending) without turning stale.
	slowPoll = 50 * time.Second
	// staleAfterStart is when the deployment that goes stale stops its agent.
	staleAfterStart = 15 * time.Second
	// regressionEvery is how often the manager compares releases, and
	// rolloutEvery how often it steps rollouts.
	regressionEvery = 10 * time.Second
	rolloutEvery    = 5 * time.Second
)

// rolloutPlan is the stack's plan in scenario sc, its bakes divided by speed:
// the canary ring, then the early ring, then everyone else. Gates watch
// regressions and failed updates, not components down: stark-prod's worker
// crash-loops on every release, and the rollout should not stop for it.
func (sc Scenario) rolloutPlan(speed float64) rolloutplan.Plan {
	gates := func(regressed int) *rolloutplan.Gates {
		zero := 0
		return &rolloutplan.Gates{Regressed: &rolloutplan.Threshold{Max: &regressed}, FailedUpdates: &rolloutplan.Threshold{Max: &zero}}
	}
	early := earlyBake
	if sc.halt {
		early = earlyBakeHalt
	}
	return rolloutplan.Plan{Stack: Stack, Waves: []rolloutplan.Wave{
		{Name: ringCanary, Select: rolloutplan.Selection{Labels: map[string]string{ringLabel: ringCanary}},
			Bake: rolloutplan.Duration(scaled(canaryBake, speed)), Gates: gates(0)},
		{Name: ringEarly, Select: rolloutplan.Selection{Labels: map[string]string{ringLabel: ringEarly}},
			Bake: rolloutplan.Duration(scaled(early, speed)), Gates: gates(0)},
		// The last wave tolerates one regressed deployment: the newcomer
		// finds it and pins it back.
		{Name: "everyone", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(scaled(lastBake, speed)), Gates: gates(1)},
	}}
}

// ring is the wave deployment s belongs to in scenario sc.
func (sc Scenario) ring(s sim) string {
	if sc.halt && s.id == regressedOn {
		return ringEarly
	}
	return s.ring
}

// scaled divides d by speed.
func scaled(d time.Duration, speed float64) time.Duration {
	return time.Duration(float64(d) / speed)
}

// waves lists, for the banner, which of the named deployments each wave takes.
func (sc Scenario) waves(specs []sim) string {
	by := map[string][]string{}
	for _, s := range specs {
		r := sc.ring(s)
		if r == "" {
			r = "everyone"
		}
		by[r] = append(by[r], s.id)
	}
	var parts []string
	for _, r := range []string{ringCanary, ringEarly} {
		sort.Strings(by[r])
		parts = append(parts, fmt.Sprintf("%s (%s)", r, strings.Join(by[r], ", ")))
	}
	return strings.Join(parts, ", then ") + ", then everyone else"
}
