// Package rolloutplan is the model of progressive rollouts as plain data: a
// stack's plan (ordered waves, each a selection of deployments, a bake time and
// gates with thresholds), customers' update windows, and the pure functions
// over them (Validate, which deployments a wave selects, whether a gate's
// figures pass, whether a window is open and when the next one starts). The
// manager's config and its API read plans in this form; the rollout engine
// (internal/manager/rollouts) runs them.
package rolloutplan

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Bounds on what a plan may hold: plans come from config files and the API.
const (
	MaxWaves       = 32
	MaxListed      = 256 // customers, clouds, regions or labels of one selection
	MaxNameLength  = 64
	MaxWindows     = 16 // windows of one customer or deployment
	MaxWindowOwner = 10000
	MaxBake        = 30 * 24 * time.Hour
)

// Config is the rollouts section of the manager's configuration.
type Config struct {
	// Plans are the stacks' rollout plans; a stack without one takes each new
	// release everywhere at once.
	Plans []Plan `yaml:"plans" json:"plans"`
	// Windows are the customers' and deployments' update windows.
	Windows WindowSet `yaml:"windows" json:"windows"`
}

// Duration is a time.Duration written as a Go duration string ("30m", "2h")
// in YAML and JSON alike.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 30m or 2h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalJSON parses a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("a duration is a string like \"30m\" or \"2h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 30m or 2h", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// WindowSet holds update windows by customer and by deployment. A deployment's
// own windows replace its customer's.
type WindowSet struct {
	Customers   map[string]Windows `yaml:"customers" json:"customers,omitempty"`
	Deployments map[string]Windows `yaml:"deployments" json:"deployments,omitempty"`
}

// For returns the windows deployment id of customer must update in: its own,
// else its customer's; none means any time.
func (s WindowSet) For(id, customer string) Windows {
	if w, ok := s.Deployments[id]; ok {
		return w
	}
	return s.Customers[customer]
}

// Plan is one stack's rollout plan.
type Plan struct {
	// Stack is the stack the plan rolls releases of.
	Stack string `yaml:"stack" json:"stack"`
	// Waves open one after the other; a deployment belongs to the first wave
	// that selects it. Deployments no wave selects get the release when the
	// rollout completes, after the last wave passed.
	Waves []Wave `yaml:"waves" json:"waves"`
}

// Wave is one step of a rollout.
type Wave struct {
	// Name names the wave in views, reasons and notifications.
	Name string `yaml:"name" json:"name"`
	// Select says which deployments (of those no earlier wave took) it takes.
	Select Selection `yaml:"select" json:"select"`
	// Bake is how long the wave's deployments must run the release with every
	// gate green, from when the last of them updated, before the next wave opens.
	Bake Duration `yaml:"bake" json:"bake"`
	// Gates halt the rollout when the wave's figures cross them. Unset, the
	// DefaultGates apply; an empty Gates checks nothing.
	Gates *Gates `yaml:"gates" json:"gates,omitempty"`
}

// Selection picks deployments. Every kind it sets must match (labels all
// present with their values, customer, cloud and region each one of the
// listed); Percent then takes that share of the matching ones by a hash of the
// deployment and the rollout, so the choice is the same on every evaluation and
// a deployment added later leaves everyone else's wave unchanged. Rest takes
// every deployment left and stands alone.
type Selection struct {
	Labels    map[string]string `yaml:"labels" json:"labels,omitempty"`
	Customers []string          `yaml:"customers" json:"customers,omitempty"`
	Clouds    []string          `yaml:"clouds" json:"clouds,omitempty"`
	Regions   []string          `yaml:"regions" json:"regions,omitempty"`
	// Percent is a share of the matching deployments, in (0, 100]; 0 means all.
	Percent float64 `yaml:"percent" json:"percent,omitempty"`
	Rest    bool    `yaml:"rest" json:"rest,omitempty"`
}

// Gates are the thresholds of a wave's figures; nil gates are not checked.
type Gates struct {
	// Regressed counts deployments the regression detector found worse on the
	// release than on their previous one (error rate or p95).
	Regressed *Threshold `yaml:"regressed" json:"regressed,omitempty"`
	// FailedUpdates counts deployments whose update to the release failed.
	FailedUpdates *Threshold `yaml:"failed_updates" json:"failed_updates,omitempty"`
	// ComponentsDown counts deployments on the release with components down.
	ComponentsDown *Threshold `yaml:"components_down" json:"components_down,omitempty"`
	// Stale counts deployments that stopped checking in.
	Stale *Threshold `yaml:"stale" json:"stale,omitempty"`
}

// DefaultGates halt at the first regressed deployment, failed update or
// deployment with components down.
func DefaultGates() Gates {
	zero := func() *Threshold { n := 0; return &Threshold{Max: &n} }
	return Gates{Regressed: zero(), FailedUpdates: zero(), ComponentsDown: zero()}
}

// Effective returns the wave's gates, or DefaultGates when it sets none.
func (w Wave) Effective() Gates {
	if w.Gates == nil {
		return DefaultGates()
	}
	return *w.Gates
}

// Threshold is "no more than Max deployments or MaxPercent of the wave": a
// gate passes while its count is at most the larger of the two allowances, so
// Max keeps a small wave from halting on its first failure when a percentage
// rounds to nothing, and MaxPercent scales with a large wave. Unset, an
// allowance is not granted; a threshold must set at least one.
type Threshold struct {
	Max        *int     `yaml:"max" json:"max,omitempty"`
	MaxPercent *float64 `yaml:"max_percent" json:"max_percent,omitempty"`
}

// Allows reports whether count offending deployments of a wave of size pass.
// An empty wave passes every gate.
func (t Threshold) Allows(count, size int) bool { return count <= t.Allowed(size) }

// Allowed is the most offending deployments a wave of size may have: the larger
// of Max and MaxPercent of size rounded down (a share of 10% allows 0 of 9 and
// 1 of 10).
func (t Threshold) Allowed(size int) int {
	n := 0
	if t.Max != nil {
		n = *t.Max
	}
	if t.MaxPercent != nil {
		// MaxPercent has at most two decimals (Validate): in hundredths of a
		// percent it is a whole number, and the share is exact integer arithmetic.
		if p := int(math.Round(*t.MaxPercent*100)) * size / 10000; p > n {
			n = p
		}
	}
	return n
}

// String says the threshold in words: "at most 1 or 10% of the wave".
func (t Threshold) String() string {
	var parts []string
	if t.Max != nil {
		parts = append(parts, fmt.Sprintf("%d", *t.Max))
	}
	if t.MaxPercent != nil {
		parts = append(parts, fmt.Sprintf("%g%% of the wave", *t.MaxPercent))
	}
	return "at most " + strings.Join(parts, " or ")
}

// Subject is what selection looks at of a deployment.
type Subject struct {
	ID, Customer, Cloud, Region string
	Labels                      map[string]string
}

// Matches reports whether s selects d in wave wave of rollout rollout (the
// percentage's hash mixes both in, so each wave takes an independent share and
// each rollout its own canaries).
func (s Selection) Matches(d Subject, rollout string, wave int) bool {
	if s.Rest {
		return true
	}
	for k, v := range s.Labels {
		if got, ok := d.Labels[k]; !ok || got != v {
			return false
		}
	}
	if !listed(s.Customers, d.Customer) || !listed(s.Clouds, d.Cloud) || !listed(s.Regions, d.Region) {
		return false
	}
	if s.Percent > 0 && s.Percent < 100 {
		return Point(rollout, wave, d.ID) < s.Percent/100
	}
	return true
}

func listed(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Point is deployment id's place in [0, 1) for wave wave of rollout rollout: a
// hash, so the same inputs always give the same point and points of different
// deployments are spread evenly.
func Point(rollout string, wave int, id string) float64 {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s", rollout, wave, id)
	var sum [sha256.Size]byte
	return float64(binary.BigEndian.Uint64(h.Sum(sum[:0]))>>11) / (1 << 53)
}

// IsZero reports whether the selection selects nothing by itself.
func (s Selection) IsZero() bool {
	return len(s.Labels) == 0 && len(s.Customers) == 0 && len(s.Clouds) == 0 && len(s.Regions) == 0 && s.Percent == 0 && !s.Rest
}

// Validate reports every problem of the rollouts section, each with its path.
func (c Config) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.Plans {
		at := fmt.Sprintf("plans[%d]", i)
		if p.Stack != "" && seen[p.Stack] {
			errs = append(errs, fmt.Errorf("%s.stack: stack %q has two plans", at, p.Stack))
		}
		seen[p.Stack] = true
		errs = append(errs, thresholds.Prefixed(at+".", p.Validate()))
	}
	errs = append(errs, c.Windows.validate())
	return errors.Join(errs...)
}

func (s WindowSet) validate() error {
	var errs []error
	if len(s.Customers)+len(s.Deployments) > MaxWindowOwner {
		errs = append(errs, fmt.Errorf("windows: more than %d customers and deployments", MaxWindowOwner))
	}
	for kind, m := range map[string]map[string]Windows{"customers": s.Customers, "deployments": s.Deployments} {
		for name, ws := range m {
			switch {
			case name == "":
				errs = append(errs, fmt.Errorf("windows.%s: a name is empty", kind))
			case len(ws) == 0:
				errs = append(errs, fmt.Errorf("windows.%s.%s: no window (remove the entry to allow updates at any time)", kind, name))
			case len(ws) > MaxWindows:
				errs = append(errs, fmt.Errorf("windows.%s.%s: more than %d windows", kind, name, MaxWindows))
			}
			for j, w := range ws {
				if w.Loc == nil {
					errs = append(errs, fmt.Errorf("windows.%s.%s[%d]: empty window", kind, name, j))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the plan, each with its path within it.
func (p Plan) Validate() error {
	var errs []error
	if p.Stack == "" {
		errs = append(errs, errors.New("stack: must be set"))
	}
	switch {
	case len(p.Waves) == 0:
		errs = append(errs, errors.New("waves: a plan needs at least one wave"))
	case len(p.Waves) > MaxWaves:
		errs = append(errs, fmt.Errorf("waves: %d waves, more than %d", len(p.Waves), MaxWaves))
	}
	names := map[string]bool{}
	for i, w := range p.Waves {
		at := fmt.Sprintf("waves[%d]", i)
		switch {
		case w.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: must be set", at))
		case len(w.Name) > MaxNameLength:
			errs = append(errs, fmt.Errorf("%s.name: longer than %d characters", at, MaxNameLength))
		case names[w.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", at, w.Name))
		}
		names[w.Name] = true
		if w.Bake < 0 || time.Duration(w.Bake) > MaxBake {
			errs = append(errs, fmt.Errorf("%s.bake: %s is not between 0 and %s", at, time.Duration(w.Bake), MaxBake))
		}
		errs = append(errs, w.Select.validate(at+".select"))
		if w.Select.Rest && i != len(p.Waves)-1 {
			errs = append(errs, fmt.Errorf("%s.select.rest: only the last wave can take the rest; later waves would be empty", at))
		}
		if w.Gates != nil {
			g := w.Gates
			for name, t := range map[string]*Threshold{"regressed": g.Regressed, "failed_updates": g.FailedUpdates, "components_down": g.ComponentsDown, "stale": g.Stale} {
				if t != nil {
					errs = append(errs, t.validate(at+".gates."+name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (s Selection) validate(at string) error {
	var errs []error
	if s.IsZero() {
		errs = append(errs, fmt.Errorf("%s: select something: labels, customers, clouds, regions, a percent, or rest: true", at))
	}
	if s.Rest && (len(s.Labels) > 0 || len(s.Customers) > 0 || len(s.Clouds) > 0 || len(s.Regions) > 0 || s.Percent != 0) {
		errs = append(errs, fmt.Errorf("%s.rest: takes every deployment left, so it stands alone", at))
	}
	if math.IsNaN(s.Percent) || s.Percent < 0 || s.Percent > 100 {
		errs = append(errs, fmt.Errorf("%s.percent: %g is not a share between 0 and 100", at, s.Percent))
	} else if s.Percent*100 != math.Round(s.Percent*100) {
		errs = append(errs, fmt.Errorf("%s.percent: %g has more than two decimals", at, s.Percent))
	}
	if len(s.Labels) > MaxListed || len(s.Customers) > MaxListed || len(s.Clouds) > MaxListed || len(s.Regions) > MaxListed {
		errs = append(errs, fmt.Errorf("%s: more than %d labels, customers, clouds or regions", at, MaxListed))
	}
	for k := range s.Labels {
		if k == "" {
			errs = append(errs, fmt.Errorf("%s.labels: a label name is empty", at))
		}
	}
	for kind, l := range map[string][]string{"customers": s.Customers, "clouds": s.Clouds, "regions": s.Regions} {
		for _, v := range l {
			if v == "" {
				errs = append(errs, fmt.Errorf("%s.%s: an entry is empty", at, kind))
			}
		}
	}
	return errors.Join(errs...)
}

func (t Threshold) validate(at string) error {
	var errs []error
	if t.Max == nil && t.MaxPercent == nil {
		errs = append(errs, fmt.Errorf("%s: set max, max_percent or both (omit the gate not to check it)", at))
	}
	if t.Max != nil && *t.Max < 0 {
		errs = append(errs, fmt.Errorf("%s.max: must not be negative", at))
	}
	if p := t.MaxPercent; p != nil {
		if math.IsNaN(*p) || *p < 0 || *p > 100 {
			errs = append(errs, fmt.Errorf("%s.max_percent: %g is not a share between 0 and 100", at, *p))
		} else if *p*100 != math.Round(*p*100) {
			errs = append(errs, fmt.Errorf("%s.max_percent: %g has more than two decimals", at, *p))
		}
	}
	return errors.Join(errs...)
}
