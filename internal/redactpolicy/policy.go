// Package redactpolicy is the contract between the customer, the vendor and the agent
// for what the agent removes from telemetry before it leaves the customer's cloud: the
// policy as written in configuration (the agent's own, the customer's; the manager's,
// the vendor's, which reaches agents over OpAMP), and how two policies combine.
//
// Both programs import it, so it is plain data and pure Go. The agent compiles the
// effective policy into its redactor (internal/agent/redact).
//
// # Unset means the default
//
// A policy that says nothing is the safe default: every detector masks, URLs and
// database statements are sanitised, secret-named keys are masked. Each field left
// unset takes its default, so a policy only ever states what it changes. "off" (all
// of it, or one detector) is taken only when written.
//
// # Stricter wins
//
// [Merge] combines the vendor's policy with the customer's so that the result is at
// least as strict as each: a detector is off only when both turn it off, mask beats
// hash, deny-lists, custom patterns, drop patterns and sanitised keys add up,
// allow-lists and kept query parameters intersect, and the smaller body limit holds.
// Neither side can loosen what the other asks for; the whole policy is off only when
// both say off.
package redactpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The actions a detector can take. Their order is their strictness.
const (
	ActionOff  = "off"
	ActionHash = "hash"
	ActionMask = "mask"
)

// The modes of a policy.
const (
	ModeOn  = "on"
	ModeOff = "off"
)

// Detectors lists the built-in value detectors by the names configuration uses.
var Detectors = [...]string{"email", "card", "ip", "bearer", "api_key", "jwt", "password"}

// AlwaysKept lists the attribute keys no allow-list or deny-list removes: the
// deployment context and the semantic-convention keys the product's views are built
// on (routes, status codes, service, function and error names). Their values still
// pass the detectors.
var AlwaysKept = [...]string{
	"periscope.deployment.id", "periscope.customer", "periscope.release.version", "periscope.stack.name",
	"cloud.provider", "cloud.region", "cloud.platform",
	"service.name", "service.namespace", "service.version", "service.instance.id",
	"deployment.environment", "deployment.environment.name",
	"telemetry.sdk.name", "telemetry.sdk.language", "telemetry.sdk.version",
	"http.route", "http.request.method", "http.method", "http.response.status_code", "http.status_code",
	"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
	"db.system", "db.system.name", "db.operation", "db.operation.name",
	"messaging.system", "messaging.operation", "messaging.operation.name",
	"code.function", "code.function.name", "code.namespace",
	"error.type", "exception.type", "otel.status_code",
}

// DefaultURLKeys are the attribute keys whose values are sanitised as URLs.
var DefaultURLKeys = [...]string{"url.full", "url.original", "url.query", "http.url", "http.target", "http.request.header.referer"}

// DefaultSQLKeys are the attribute keys whose values are sanitised as database statements.
var DefaultSQLKeys = [...]string{"db.statement", "db.query.text"}

// DefaultKeepParams are the query parameters whose values URL sanitising keeps: paging
// and ordering, which carry no personal data and help reproduce a slow request.
var DefaultKeepParams = [...]string{"page", "per_page", "page_size", "limit", "offset", "sort", "order", "format"}

// DefaultSecretKeys are key patterns whose whole value is masked wherever they appear
// (attributes and keys of structured log bodies), because no value detector can tell
// a password from a word. HTTP header attributes spell names with dashes
// (http.request.header.x-api-key, ….proxy-authorization).
var DefaultSecretKeys = [...]string{
	"*password*", "*passwd*", "pwd", "*secret*", "*token*", "*api_key*", "*apikey*", "*api-key*", "*access_key*",
	"*access-key*", "*private_key*", "*private-key*", "*credential*", "authorization", "*.authorization",
	"*-authorization", "cookie", "*.cookie", "set-cookie",
	"*.set_cookie", "*.set-cookie", "session", "*session_id*", "*sessionid*",
}

// Limits on what a policy may hold, so a policy from the wire cannot exhaust memory.
const (
	MaxListLen    = 256
	MaxPatternLen = 1024
	// MinBodyBytes is the smallest body limit: room for a marker and an ellipsis.
	MinBodyBytes = 16
)

// Policy is one side's redaction policy, as written under `redaction:` in the agent's or
// the manager's configuration and as carried over OpAMP (JSON).
type Policy struct {
	// Mode is "on" (the default) or "off". Off counts only when both sides say it.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Detectors sets a built-in detector's action: mask, hash or off. A detector not
	// listed masks.
	Detectors map[string]string `yaml:"detectors,omitempty" json:"detectors,omitempty"`
	// Custom lists regular expressions whose matches are removed too.
	Custom []Pattern `yaml:"custom,omitempty" json:"custom,omitempty"`
	// Attributes lists attribute keys to keep or remove, at resource, scope and record level.
	Attributes Attributes `yaml:"attributes,omitempty" json:"attributes,omitempty"`
	// SecretKeys are key patterns whose whole value is masked; they add to DefaultSecretKeys.
	SecretKeys []string `yaml:"secret_keys,omitempty" json:"secret_keys,omitempty"`
	// URL configures URL sanitising.
	URL URLRules `yaml:"url,omitempty" json:"url,omitempty"`
	// SQL configures database statement sanitising.
	SQL SQLRules `yaml:"sql,omitempty" json:"sql,omitempty"`
	// Body configures log bodies.
	Body BodyRules `yaml:"body,omitempty" json:"body,omitempty"`
	// HashKey keys the hash action's HMAC. It is the customer's secret: it never
	// leaves the agent and is never part of a merged or reported policy. Without one
	// the agent keeps a random key in its data directory.
	HashKey string `yaml:"hash_key,omitempty" json:"-"`
}

// Pattern is a custom detector.
type Pattern struct {
	// Name names the detector in markers ("[REDACTED:custom:<name>]") and counts.
	Name string `yaml:"name" json:"name"`
	// Regexp is an RE2 regular expression; its matches are removed.
	Regexp string `yaml:"regexp" json:"regexp"`
	// Action is mask (the default) or hash.
	Action string `yaml:"action,omitempty" json:"action,omitempty"`
}

// Attributes are key lists. A key pattern is a key, or a key with '*' matching any run
// of characters ("http.request.header.*").
type Attributes struct {
	// Allow, when not empty, keeps only the attributes it matches (and AlwaysKept).
	Allow []string `yaml:"allow,omitempty" json:"allow,omitempty"`
	// Deny removes the attributes it matches (never AlwaysKept).
	Deny []string `yaml:"deny,omitempty" json:"deny,omitempty"`
}

// URLRules configure URL sanitising: query values and userinfo out, shape kept.
type URLRules struct {
	// Off turns URL sanitising off (taken only when both sides say it).
	Off bool `yaml:"off,omitempty" json:"off,omitempty"`
	// Keys add to DefaultURLKeys: attributes whose values are sanitised as URLs.
	Keys []string `yaml:"keys,omitempty" json:"keys,omitempty"`
	// KeepParams replaces DefaultKeepParams: query parameters whose values are kept.
	KeepParams []string `yaml:"keep_params,omitempty" json:"keep_params,omitempty"`
}

// SQLRules configure statement sanitising: literals out, shape kept.
type SQLRules struct {
	// Off turns statement sanitising off (taken only when both sides say it).
	Off bool `yaml:"off,omitempty" json:"off,omitempty"`
	// Keys add to DefaultSQLKeys.
	Keys []string `yaml:"keys,omitempty" json:"keys,omitempty"`
}

// BodyRules configure log bodies. The detectors always run over string bodies and over
// the strings nested in map and array bodies.
type BodyRules struct {
	// MaxBytes truncates a longer string body (or nested string) at a character
	// boundary; 0 keeps bodies whole.
	MaxBytes int `yaml:"max_bytes,omitempty" json:"max_bytes,omitempty"`
	// DropPatterns drop a log record whose string body matches any of them.
	DropPatterns []string `yaml:"drop_patterns,omitempty" json:"drop_patterns,omitempty"`
}

// Off reports whether the policy turns redaction off.
func (p Policy) Off() bool { return p.Mode == ModeOff }

// Validate reports every problem of the policy.
func (p Policy) Validate() error {
	var errs []error
	switch p.Mode {
	case "", ModeOn, ModeOff:
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not on or off", p.Mode))
	}
	for _, name := range slices.Sorted(maps.Keys(p.Detectors)) {
		if !slices.Contains(Detectors[:], name) {
			errs = append(errs, fmt.Errorf("detectors: unknown detector %q (known: %s)", name, strings.Join(Detectors[:], ", ")))
		}
		if a := p.Detectors[name]; strictness(a) < 0 {
			errs = append(errs, fmt.Errorf("detectors.%s: %q is not mask, hash or off", name, a))
		}
	}
	names := map[string]bool{}
	for i, c := range p.Custom {
		if c.Name == "" || len(c.Name) > 64 || strings.ContainsAny(c.Name, "[]: \t\n") {
			errs = append(errs, fmt.Errorf("custom[%d]: name %q must be 1 to 64 bytes, without spaces, ':' or brackets", i, c.Name))
		}
		if names[c.Name] {
			errs = append(errs, fmt.Errorf("custom[%d]: name %q used twice", i, c.Name))
		}
		names[c.Name] = true
		if c.Action != "" && c.Action != ActionMask && c.Action != ActionHash {
			errs = append(errs, fmt.Errorf("custom[%d] %s: action %q is not mask or hash", i, c.Name, c.Action))
		}
		errs = append(errs, checkRegexp(fmt.Sprintf("custom[%d] %s", i, c.Name), c.Regexp))
	}
	for i, re := range p.Body.DropPatterns {
		errs = append(errs, checkRegexp(fmt.Sprintf("body.drop_patterns[%d]", i), re))
	}
	if p.Body.MaxBytes < 0 || (p.Body.MaxBytes > 0 && p.Body.MaxBytes < MinBodyBytes) {
		errs = append(errs, fmt.Errorf("body.max_bytes: %d must be 0 (bodies kept whole) or at least %d", p.Body.MaxBytes, MinBodyBytes))
	}
	for name, list := range map[string][]string{
		"attributes.allow": p.Attributes.Allow, "attributes.deny": p.Attributes.Deny, "secret_keys": p.SecretKeys,
		"url.keys": p.URL.Keys, "url.keep_params": p.URL.KeepParams, "sql.keys": p.SQL.Keys,
		"custom": make([]string, len(p.Custom)), "body.drop_patterns": p.Body.DropPatterns,
	} {
		if len(list) > MaxListLen {
			errs = append(errs, fmt.Errorf("%s: %d entries, at most %d", name, len(list), MaxListLen))
		}
		for _, k := range list {
			if len(k) > MaxPatternLen {
				errs = append(errs, fmt.Errorf("%s: an entry of %d bytes, at most %d", name, len(k), MaxPatternLen))
			}
		}
	}
	return errors.Join(errs...)
}

func checkRegexp(what, expr string) error {
	if len(expr) > MaxPatternLen {
		return fmt.Errorf("%s: regexp of %d bytes, at most %d", what, len(expr), MaxPatternLen)
	}
	re, err := regexp.Compile(expr)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case re.MatchString(""):
		return fmt.Errorf("%s: regexp %q matches the empty string", what, expr)
	}
	return nil
}

// strictness orders actions: off < hash < mask; -1 for an unknown one.
func strictness(action string) int {
	switch action {
	case ActionOff:
		return 0
	case ActionHash:
		return 1
	case "", ActionMask:
		return 2
	}
	return -1
}

// Effective is a policy with every default filled in and every list sorted, as the
// agent runs it and reports it.
type Effective struct {
	// Off is true when both sides turned redaction off: nothing is removed.
	Off bool `json:"off" yaml:"off"`
	// Detectors holds every built-in detector's action.
	Detectors map[string]string `json:"detectors" yaml:"detectors"`
	// Custom holds every custom detector, sorted by name.
	Custom []Pattern `json:"custom,omitempty" yaml:"custom,omitempty"`
	// AllowOnly is true when an allow-list is in force: only Allow and AlwaysKept
	// pass, and an empty Allow then keeps AlwaysKept alone.
	AllowOnly bool `json:"allow_only,omitempty" yaml:"allow_only,omitempty"`
	// Allow is the allow-list.
	Allow []string `json:"allow,omitempty" yaml:"allow,omitempty"`
	// Deny is the deny-list.
	Deny []string `json:"deny,omitempty" yaml:"deny,omitempty"`
	// AlwaysKept lists the keys no list removes.
	AlwaysKept []string `json:"always_kept" yaml:"always_kept"`
	// SecretKeys are the key patterns whose values are masked whole.
	SecretKeys []string `json:"secret_keys" yaml:"secret_keys"`
	// URLKeys and SQLKeys are the keys sanitised as URLs and statements; empty when off.
	URLKeys []string `json:"url_keys" yaml:"url_keys"`
	SQLKeys []string `json:"sql_keys" yaml:"sql_keys"`
	// KeepParams are the query parameters whose values URL sanitising keeps.
	KeepParams []string `json:"keep_params" yaml:"keep_params"`
	// BodyMaxBytes truncates longer string bodies; 0 keeps them whole.
	BodyMaxBytes int `json:"body_max_bytes,omitempty" yaml:"body_max_bytes,omitempty"`
	// DropPatterns drop log records whose body matches.
	DropPatterns []string `json:"drop_patterns,omitempty" yaml:"drop_patterns,omitempty"`
}

// Hash identifies the effective policy: equal policies have equal hashes.
func (e Effective) Hash() string {
	b, _ := json.Marshal(e) // plain data cannot fail to marshal
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Resolve fills in p's defaults.
func Resolve(p Policy) Effective {
	if p.Off() {
		return Effective{Off: true, Detectors: offDetectors(), AlwaysKept: sorted(AlwaysKept[:]),
			SecretKeys: []string{}, URLKeys: []string{}, SQLKeys: []string{}, KeepParams: []string{}}
	}
	e := Effective{Detectors: map[string]string{}, AlwaysKept: sorted(AlwaysKept[:])}
	for _, d := range Detectors {
		a := p.Detectors[d]
		if a == "" {
			a = ActionMask
		}
		e.Detectors[d] = a
	}
	for _, c := range p.Custom {
		if c.Action == "" {
			c.Action = ActionMask
		}
		e.Custom = append(e.Custom, c)
	}
	slices.SortFunc(e.Custom, func(a, b Pattern) int { return strings.Compare(a.Name, b.Name) })
	e.AllowOnly = len(p.Attributes.Allow) > 0
	e.Allow = sorted(p.Attributes.Allow)
	e.Deny = sorted(p.Attributes.Deny)
	e.SecretKeys = union(DefaultSecretKeys[:], p.SecretKeys)
	e.URLKeys, e.SQLKeys = []string{}, []string{}
	if !p.URL.Off {
		e.URLKeys = union(DefaultURLKeys[:], p.URL.Keys)
	}
	if !p.SQL.Off {
		e.SQLKeys = union(DefaultSQLKeys[:], p.SQL.Keys)
	}
	e.KeepParams = sorted(DefaultKeepParams[:])
	if p.URL.KeepParams != nil {
		e.KeepParams = sorted(p.URL.KeepParams)
	}
	e.BodyMaxBytes = p.Body.MaxBytes
	e.DropPatterns = sorted(p.Body.DropPatterns)
	return e
}

func offDetectors() map[string]string {
	m := map[string]string{}
	for _, d := range Detectors {
		m[d] = ActionOff
	}
	return m
}

// Merge returns the effective policy of the vendor's and the customer's: at least as
// strict as each of them.
func Merge(vendor, customer Policy) Effective {
	v, c := Resolve(vendor), Resolve(customer)
	if v.Off {
		return c
	}
	if c.Off {
		return v
	}
	e := Effective{Detectors: map[string]string{}, AlwaysKept: v.AlwaysKept}
	for _, d := range Detectors {
		e.Detectors[d] = v.Detectors[d]
		if strictness(c.Detectors[d]) > strictness(v.Detectors[d]) {
			e.Detectors[d] = c.Detectors[d]
		}
	}
	e.Custom = mergeCustom(v.Custom, c.Custom)
	e.AllowOnly = v.AllowOnly || c.AllowOnly
	switch {
	case !v.AllowOnly:
		e.Allow = c.Allow
	case !c.AllowOnly:
		e.Allow = v.Allow
	default:
		e.Allow = intersectPatterns(v.Allow, c.Allow)
	}
	e.Deny = union(v.Deny, c.Deny)
	e.SecretKeys = union(v.SecretKeys, c.SecretKeys)
	e.URLKeys = union(v.URLKeys, c.URLKeys)
	e.SQLKeys = union(v.SQLKeys, c.SQLKeys)
	// A side that turned URL sanitising off has no say in which parameters it keeps.
	switch {
	case len(v.URLKeys) == 0:
		e.KeepParams = c.KeepParams
	case len(c.URLKeys) == 0:
		e.KeepParams = v.KeepParams
	default:
		e.KeepParams = intersect(v.KeepParams, c.KeepParams)
	}
	e.BodyMaxBytes = minPositive(v.BodyMaxBytes, c.BodyMaxBytes)
	e.DropPatterns = union(v.DropPatterns, c.DropPatterns)
	return e
}

// mergeCustom keeps every pattern of both sides; a name both use for different
// expressions keeps both, the customer's renamed with a "local-" prefix.
func mergeCustom(v, c []Pattern) []Pattern {
	out := slices.Clone(v)
	for _, p := range c {
		i := slices.IndexFunc(out, func(q Pattern) bool { return q.Name == p.Name })
		switch {
		case i < 0:
			out = append(out, p)
		case out[i].Regexp == p.Regexp:
			if strictness(p.Action) > strictness(out[i].Action) {
				out[i].Action = p.Action
			}
		default:
			p.Name = "local-" + p.Name
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Pattern) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// intersectPatterns keeps what both allow-lists allow: an entry of one list survives
// when the other list matches it (a plain key, or a pattern the other's pattern covers
// as written).
func intersectPatterns(a, b []string) []string {
	var out []string
	for _, x := range a {
		if MatchAny(b, x) {
			out = append(out, x)
		}
	}
	for _, y := range b {
		if MatchAny(a, y) {
			out = append(out, y)
		}
	}
	return sorted(out)
}

// Match reports whether key matches pattern, where '*' matches any run of bytes. It
// runs in time proportional to len(pattern)*len(key) at worst, whatever the pattern.
func Match(pattern, key string) bool {
	p, k := 0, 0
	star, mark := -1, 0 // the last '*' seen, and where in key its run ends so far
	for k < len(key) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, k
			p++
		case p < len(pattern) && pattern[p] == key[k]:
			p++
			k++
		case star >= 0:
			// Let the last '*' take one more byte and try the rest again.
			mark++
			p, k = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// MatchAny reports whether any pattern matches key.
func MatchAny(patterns []string, key string) bool {
	for _, p := range patterns {
		if Match(p, key) {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func union(a, b []string) []string { return sorted(append(slices.Clone(a), b...)) }

func intersect(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return sorted(out)
}

func minPositive(a, b int) int {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}
