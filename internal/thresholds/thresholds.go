// Package thresholds is the model of a deployment's runtime thresholds — the
// queue lag, oldest-message age and filesystem free space past which its
// deployment is unhealthy — and the OpAMP wire contract by which the manager
// hands them to the agent. Both sides import it, so it stays plain data and pure
// functions.
//
// The manager keeps one Set per deployment and sends it as an OpAMP custom
// message (capability Capability, type MessageSet, data the set's JSON). The
// agent keeps it on disk, applies it to its runtime collector at once, and
// reports the Hash of the set it holds as one more file of its effective
// configuration (ReportFile); the manager sends the set again while that hash
// differs from its own. Each collection round the agent compares its figures
// with the set (Check); a breach is an unhealthy component named
// ComponentPrefix + "<source> <what>", which the manager's status rollup turns
// into an unhealthy deployment with the reason threshold-exceeded.
package thresholds

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AllSources is the Source of a rule that applies to every source of its kind
// without a rule of its own.
const AllSources = "*"

// Bounds of a Set, so a set from the wire or the API stays small.
const (
	// MaxRules bounds the rules of each kind.
	MaxRules = 64
	// MaxSourceBytes bounds a rule's Source.
	MaxSourceBytes = 256
)

// Set is one deployment's thresholds. The zero Set checks nothing. It reads
// from JSON (the API, the wire) and YAML (the manager's configuration) alike.
type Set struct {
	// Queues are the thresholds of queue sources (nats/…, redis-stream/…,
	// rabbitmq/…, sqs/…).
	Queues []QueueRule `json:"queues,omitempty" yaml:"queues,omitempty"`
	// Filesystems are the thresholds of filesystem sources.
	Filesystems []FilesystemRule `json:"filesystems,omitempty" yaml:"filesystems,omitempty"`
}

// QueueRule bounds the figures of one queue source, or of every queue source
// without a rule of its own when Source is AllSources. A zero field is not
// checked; at least one must be set.
type QueueRule struct {
	Source string `json:"source" yaml:"source"`
	// MaxLag is the most messages any one consumer or group may have pending
	// (periscope.queue.consumer.pending).
	MaxLag int64 `json:"max_lag,omitempty" yaml:"max_lag,omitempty"`
	// MaxOldestAgeSeconds is the oldest a message may be in the queue
	// (periscope.queue.oldest_age), where the server exposes it.
	MaxOldestAgeSeconds int64 `json:"max_oldest_age_seconds,omitempty" yaml:"max_oldest_age_seconds,omitempty"`
}

// FilesystemRule bounds the free space of the volumes of one filesystem source,
// or of every filesystem source without a rule of its own when Source is
// AllSources. A zero field is not checked; at least one must be set.
type FilesystemRule struct {
	Source string `json:"source" yaml:"source"`
	// MinFreeBytes is the fewest bytes available to unprivileged users.
	MinFreeBytes int64 `json:"min_free_bytes,omitempty" yaml:"min_free_bytes,omitempty"`
	// MinFreePercent is the least share of the volume available, in percent
	// (100 minus df's Use%).
	MinFreePercent float64 `json:"min_free_percent,omitempty" yaml:"min_free_percent,omitempty"`
	// MinFreeInodesPercent is the least share of inodes free, in percent; not
	// checked on filesystems that report no inode table.
	MinFreeInodesPercent float64 `json:"min_free_inodes_percent,omitempty" yaml:"min_free_inodes_percent,omitempty"`
}

// IsZero reports whether s checks nothing.
func (s Set) IsZero() bool { return len(s.Queues) == 0 && len(s.Filesystems) == 0 }

// Validate reports every problem of s, each with its field path.
func (s Set) Validate() error {
	var errs []error
	if len(s.Queues) > MaxRules {
		errs = append(errs, fmt.Errorf("queues: %d rules, at most %d", len(s.Queues), MaxRules))
	}
	if len(s.Filesystems) > MaxRules {
		errs = append(errs, fmt.Errorf("filesystems: %d rules, at most %d", len(s.Filesystems), MaxRules))
	}
	seen := map[string]bool{}
	for i, r := range s.Queues {
		p := fmt.Sprintf("queues[%d]", i)
		errs = append(errs, validSource(p, r.Source, seen))
		if r.MaxLag == 0 && r.MaxOldestAgeSeconds == 0 {
			errs = append(errs, fmt.Errorf("%s: sets no threshold (max_lag or max_oldest_age_seconds)", p))
		}
		if r.MaxLag < 0 {
			errs = append(errs, fmt.Errorf("%s.max_lag: %d is negative", p, r.MaxLag))
		}
		if r.MaxOldestAgeSeconds < 0 {
			errs = append(errs, fmt.Errorf("%s.max_oldest_age_seconds: %d is negative", p, r.MaxOldestAgeSeconds))
		}
	}
	seen = map[string]bool{}
	for i, r := range s.Filesystems {
		p := fmt.Sprintf("filesystems[%d]", i)
		errs = append(errs, validSource(p, r.Source, seen))
		if r.MinFreeBytes == 0 && r.MinFreePercent == 0 && r.MinFreeInodesPercent == 0 {
			errs = append(errs, fmt.Errorf("%s: sets no threshold (min_free_bytes, min_free_percent or min_free_inodes_percent)", p))
		}
		if r.MinFreeBytes < 0 {
			errs = append(errs, fmt.Errorf("%s.min_free_bytes: %d is negative", p, r.MinFreeBytes))
		}
		for _, f := range []struct {
			name string
			v    float64
		}{{"min_free_percent", r.MinFreePercent}, {"min_free_inodes_percent", r.MinFreeInodesPercent}} {
			if math.IsNaN(f.v) || f.v < 0 || f.v >= 100 {
				errs = append(errs, fmt.Errorf("%s.%s: %v is not a percentage from 0 to under 100", p, f.name, f.v))
			}
		}
	}
	return errors.Join(errs...)
}

func validSource(path, src string, seen map[string]bool) error {
	switch {
	case src == "":
		return fmt.Errorf("%s.source: empty (a source name, or %q for all)", path, AllSources)
	case len(src) > MaxSourceBytes:
		return fmt.Errorf("%s.source: %d bytes, at most %d", path, len(src), MaxSourceBytes)
	case !utf8.ValidString(src) || strings.ContainsFunc(src, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("%s.source: not printable text", path)
	case seen[src]:
		return fmt.Errorf("%s.source: %q has two rules", path, src)
	}
	seen[src] = true
	return nil
}

func (r QueueRule) source() string      { return r.Source }
func (r FilesystemRule) source() string { return r.Source }

// ruleFor returns the rule for source among rules: its own, else the
// AllSources one.
func ruleFor[R interface{ source() string }](rules []R, source string) (R, bool) {
	var all R
	found := false
	for _, r := range rules {
		switch r.source() {
		case source:
			return r, true
		case AllSources:
			all, found = r, true
		}
	}
	return all, found
}

// Defaults are the thresholds of deployments without their own: Customers[c]
// for a deployment of customer c, else Fleet.
type Defaults struct {
	Fleet     Set            `json:"fleet,omitzero" yaml:"fleet"`
	Customers map[string]Set `json:"customers,omitempty" yaml:"customers"`
}

// Where an effective set comes from.
const (
	FromDeployment = "deployment"
	FromCustomer   = "customer"
	FromFleet      = "fleet"
)

// For returns the set a deployment of customer checks when own is its own set
// (the zero Set when it has none), and where that set comes from ("" when
// nothing applies).
func (d Defaults) For(customer string, own Set) (Set, string) {
	switch {
	case !own.IsZero():
		return own, FromDeployment
	case !d.Customers[customer].IsZero():
		return d.Customers[customer], FromCustomer
	case !d.Fleet.IsZero():
		return d.Fleet, FromFleet
	}
	return Set{}, ""
}

// Validate reports every problem of d, each with its field path.
func (d Defaults) Validate() error {
	errs := []error{Prefixed("fleet.", d.Fleet.Validate())}
	for c, s := range d.Customers {
		errs = append(errs, Prefixed("customers."+c+".", s.Validate()))
	}
	return errors.Join(errs...)
}

// Prefixed puts prefix before the field path of each of err's problems (as
// Validate joins them), so a set inside a larger document names its place.
func Prefixed(prefix string, err error) error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s%w", prefix, err)
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Prefixed(prefix, e))
	}
	return errors.Join(out...)
}

// Summary says what s checks in one line, for people: "queue lag * 1000;
// disk free * 10%".
func (s Set) Summary() string {
	if s.IsZero() {
		return "none"
	}
	var parts []string
	for _, r := range s.Queues {
		if r.MaxLag > 0 {
			parts = append(parts, fmt.Sprintf("queue lag %s %d", r.Source, r.MaxLag))
		}
		if r.MaxOldestAgeSeconds > 0 {
			parts = append(parts, fmt.Sprintf("queue age %s %ds", r.Source, r.MaxOldestAgeSeconds))
		}
	}
	for _, r := range s.Filesystems {
		if r.MinFreeBytes > 0 {
			parts = append(parts, fmt.Sprintf("disk free %s %d B", r.Source, r.MinFreeBytes))
		}
		if r.MinFreePercent > 0 {
			parts = append(parts, fmt.Sprintf("disk free %s %s%%", r.Source, percent(r.MinFreePercent)))
		}
		if r.MinFreeInodesPercent > 0 {
			parts = append(parts, fmt.Sprintf("inodes free %s %s%%", r.Source, percent(r.MinFreeInodesPercent)))
		}
	}
	return strings.Join(parts, "; ")
}

func percent(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
