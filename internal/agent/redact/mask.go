package redact

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Action is what happens to a match.
type Action uint8

const (
	// Mask replaces the match with "[REDACTED:<kind>]".
	Mask Action = iota
	// Hash replaces the match with "[<kind>:<first 12 hex of HMAC-SHA256>]", so equal
	// values stay joinable without being readable.
	Hash
)

// Rule turns on a built-in detector and says what to do with its matches.
type Rule struct {
	Kind   Kind
	Action Action
}

// Pattern is a custom detector: matches of Regexp are replaced, named "custom:<Name>".
type Pattern struct {
	Name   string
	Regexp string
	Action Action
}

// Config says which detectors run and what they do. It is plain data; [Default] gives
// the safe policy.
type Config struct {
	// Rules lists the built-in detectors to run; a kind not listed is off.
	Rules []Rule
	// Custom lists regular expressions to redact as well.
	Custom []Pattern
	// HashKey keys the HMAC of the Hash action; required when any rule hashes.
	HashKey []byte
}

// Default returns every built-in detector on, masking: what the agent does when nothing
// is configured.
func Default() Config {
	var c Config
	for _, k := range Kinds() {
		c.Rules = append(c.Rules, Rule{Kind: k, Action: Mask})
	}
	return c
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	hashes := false
	seen := [numKinds]bool{}
	for i, r := range c.Rules {
		if r.Kind >= KindCustom {
			errs = append(errs, fmt.Errorf("rules[%d]: kind %d is not a built-in detector", i, r.Kind))
			continue
		}
		if seen[r.Kind] {
			errs = append(errs, fmt.Errorf("rules[%d]: kind %s listed twice", i, r.Kind))
		}
		seen[r.Kind] = true
		if r.Action > Hash {
			errs = append(errs, fmt.Errorf("rules[%d]: unknown action %d", i, r.Action))
		}
		hashes = hashes || r.Action == Hash
	}
	names := map[string]bool{}
	for i, p := range c.Custom {
		if p.Name == "" || len(p.Name) > maxName || strings.ContainsAny(p.Name, "[]: \t\n") {
			errs = append(errs, fmt.Errorf("custom[%d]: name %q must be 1 to %d bytes, without spaces, ':' or brackets", i, p.Name, maxName))
		}
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("custom[%d]: name %q used twice", i, p.Name))
		}
		names[p.Name] = true
		re, err := regexp.Compile(p.Regexp)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("custom[%d] %s: %w", i, p.Name, err))
		case re.MatchString(""):
			errs = append(errs, fmt.Errorf("custom[%d] %s: regexp matches the empty string", i, p.Name))
		}
		if p.Action > Hash {
			errs = append(errs, fmt.Errorf("custom[%d]: unknown action %d", i, p.Action))
		}
		hashes = hashes || p.Action == Hash
	}
	if hashes && len(c.HashKey) == 0 {
		errs = append(errs, errors.New("hash_key: required when an action is hash"))
	}
	return errors.Join(errs...)
}

// Counts is how many matches of each kind a string lost, indexed by [Kind].
type Counts [numKinds]uint32

// Total returns the number of matches of every kind.
func (c Counts) Total() int {
	t := 0
	for _, n := range c {
		t += int(n)
	}
	return t
}

// Add adds o's counts to c.
func (c *Counts) Add(o Counts) {
	for k, n := range o {
		c[k] += n
	}
}

// maxName bounds a custom pattern's name, and so the length of a marker.
const (
	maxName   = 64
	maxMarker = maxName + len("[custom::0123456789ab]") + 2
)

type custom struct {
	re     *regexp.Regexp
	marker string // "custom:<name>"
	action Action
}

// Redactor applies a [Config]. It is immutable and safe for concurrent use.
type Redactor struct {
	on      [numKinds]bool
	action  [numKinds]Action
	custom  []custom
	hashKey []byte
}

// New validates cfg and returns its Redactor.
func New(cfg Config) (*Redactor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redact config: %w", err)
	}
	r := &Redactor{hashKey: append([]byte(nil), cfg.HashKey...)}
	for _, rule := range cfg.Rules {
		r.on[rule.Kind] = true
		r.action[rule.Kind] = rule.Action
	}
	for _, p := range cfg.Custom {
		r.custom = append(r.custom, custom{re: regexp.MustCompile(p.Regexp), marker: "custom:" + p.Name, action: p.Action})
	}
	r.on[KindCustom] = len(r.custom) > 0
	return r, nil
}

// String returns s with every match replaced, and how many matches of each kind it had.
// When nothing matches it returns s itself and allocates nothing.
func (r *Redactor) String(s string) (string, Counts) {
	var counts Counts
	var buf [16]span
	spans := r.find(s, buf[:0])
	if len(spans) == 0 {
		return s, counts
	}
	spans = merge(spans)
	var b strings.Builder
	b.Grow(len(s) + 16*len(spans))
	last := 0
	for _, sp := range spans {
		counts[sp.kind]++
		b.WriteString(s[last:sp.start])
		r.writeMarker(&b, s[sp.start:sp.end], sp)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String(), counts
}

// find collects every detector's matches, skipping the markers of an earlier pass so
// that redacting twice changes nothing.
func (r *Redactor) find(s string, spans []span) []span {
	if len(s) == 0 {
		return spans
	}
	if r.on[KindEmail] {
		spans = scanEmail(s, spans)
	}
	if r.on[KindCard] {
		spans = scanCard(s, spans)
	}
	if r.on[KindIP] {
		spans = scanIP(s, spans)
	}
	if r.on[KindBearer] || r.on[KindAPIKey] || r.on[KindJWT] || r.on[KindPassword] {
		spans = scanWords(s, spans, &r.on)
	}
	if r.on[KindPassword] {
		spans = scanURLPasswords(s, spans)
	}
	for i, c := range r.custom {
		for _, loc := range c.re.FindAllStringIndex(s, -1) {
			if loc[1] > loc[0] {
				spans = append(spans, span{loc[0], loc[1], KindCustom, i})
			}
		}
	}
	// Drop matches that are, or lie inside, a marker.
	out := spans[:0]
	for _, sp := range spans {
		if !r.inMarker(s, sp) {
			out = append(out, sp)
		}
	}
	return out
}

// inMarker reports whether sp is inside a marker this package wrote: "[REDACTED:kind]"
// or "[kind:0123456789ab]".
func (r *Redactor) inMarker(s string, sp span) bool {
	// Markers are short: look back a bounded way, so many matches stay linear.
	from := max(0, sp.start-maxMarker)
	open := strings.LastIndexByte(s[from:sp.start+1], '[')
	if open < 0 {
		return false
	}
	open += from
	end := strings.IndexByte(s[open:min(len(s), open+maxMarker)], ']')
	if end < 0 || open+end+1 < sp.end {
		return false
	}
	return r.isMarker(s[open+1 : open+end])
}

// isMarker reports whether inner, the text between brackets, is a marker of one of r's
// kinds; naming the kinds exactly keeps "[REDACTED:4111 1111 1111 1111]" from hiding a card.
func (r *Redactor) isMarker(inner string) bool {
	if name, ok := strings.CutPrefix(inner, "REDACTED:"); ok {
		return r.isName(name)
	}
	if len(inner) < 14 || inner[len(inner)-13] != ':' {
		return false
	}
	for _, c := range []byte(inner[len(inner)-12:]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return r.isName(inner[:len(inner)-13])
}

func (r *Redactor) isName(name string) bool {
	if _, ok := ParseKind(name); ok {
		return true
	}
	for _, c := range r.custom {
		if c.marker == name {
			return true
		}
	}
	return false
}

// merge sorts spans by start and joins overlapping ones, keeping the kind that comes
// first in the Kind order, so no part of any match survives.
func merge(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int {
		if a.start != b.start {
			return cmp.Compare(a.start, b.start)
		}
		return cmp.Compare(b.end, a.end)
	})
	out := spans[:1]
	for _, sp := range spans[1:] {
		cur := &out[len(out)-1]
		if sp.start >= cur.end {
			out = append(out, sp)
			continue
		}
		cur.end = max(cur.end, sp.end)
		if sp.kind < cur.kind {
			cur.kind, cur.pat = sp.kind, sp.pat
		}
	}
	return out
}

func (r *Redactor) writeMarker(b *strings.Builder, value string, sp span) {
	name, action := sp.kind.String(), r.action[sp.kind]
	if sp.kind == KindCustom {
		name, action = r.custom[sp.pat].marker, r.custom[sp.pat].action
	}
	b.WriteByte('[')
	if action == Mask {
		b.WriteString("REDACTED:")
		b.WriteString(name)
		b.WriteByte(']')
		return
	}
	mac := hmac.New(sha256.New, r.hashKey)
	mac.Write([]byte(value))
	var sum [sha256.Size]byte
	var hx [12]byte
	hex.Encode(hx[:], mac.Sum(sum[:0])[:6])
	b.WriteString(name)
	b.WriteByte(':')
	b.Write(hx[:])
	b.WriteByte(']')
}
