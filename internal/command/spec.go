// Package command is the remote-command contract both programs speak: what a
// release declares (Spec, with its parameter schema), how parameters are checked
// against it, the customer's local rule (Rule), and the OpAMP custom messages that
// carry invocations to an agent and their progress back (wire.go).
//
// A command runs only if it is declared by the release the agent was offered,
// allowed by the customer's rule, and its parameters pass the schema. The manager
// checks all three before anything is queued; the agent checks them again before
// it runs anything, because the customer's side must hold even against a manager
// that is wrong.
package command

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Bounds on a declaration. They keep what an agent runs, and what travels, small.
const (
	MaxCommands       = 64
	MaxParams         = 32
	MaxNameBytes      = 64
	MaxDescription    = 1024
	MaxArgs           = 64
	MaxArgBytes       = 4096
	MaxHeaders        = 16
	MaxEnumValues     = 64
	MaxPatternBytes   = 256
	MaxStringParam    = 4096
	DefaultStringMax  = 256
	DefaultTimeout    = 30 * time.Second
	MaxTimeout        = time.Hour
	DefaultOutputMax  = 16 << 10
	MaxOutputLimit    = 256 << 10
	DefaultHTTPMethod = "POST"
)

// Ways an executable receives its parameters.
const (
	// ParamsEnv passes each parameter as PERISCOPE_PARAM_<NAME> (EnvName).
	ParamsEnv = "env"
	// ParamsStdin passes the parameters as one JSON object on standard input.
	ParamsStdin = "stdin"
)

// Parameter types.
const (
	TypeString  = "string"
	TypeInteger = "integer"
	TypeNumber  = "number"
	TypeBoolean = "boolean"
	TypeEnum    = "enum"
)

// Spec is one declared command.
type Spec struct {
	// Name is what an operator runs: lower-case letters, digits, '.', '_', '-'.
	Name        string  `json:"name" yaml:"name"`
	Description string  `json:"description,omitempty" yaml:"description,omitempty"`
	Params      []Param `json:"params,omitempty" yaml:"params,omitempty"`
	// Timeout bounds one run (DefaultTimeout when zero, at most MaxTimeout).
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// OutputLimit bounds the output kept, in bytes (DefaultOutputMax when zero,
	// at most MaxOutputLimit); more is cut and the result marked truncated.
	OutputLimit int `json:"output_limit,omitempty" yaml:"output_limit,omitempty"`
	// Exactly one handler.
	HTTP *HTTPHandler `json:"http,omitempty" yaml:"http,omitempty"`
	Exec *ExecHandler `json:"exec,omitempty" yaml:"exec,omitempty"`
}

// HTTPHandler calls an endpoint of the vendor's service inside the customer's
// environment. POST sends the parameters as a JSON object; GET sends them as
// the query string. The result is the response status and body.
type HTTPHandler struct {
	URL     string            `json:"url" yaml:"url"`
	Method  string            `json:"method,omitempty" yaml:"method,omitempty"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
}

// ExecHandler runs an executable with fixed arguments, never through a shell.
// The parameters go in the environment (ParamsEnv, the default) or as JSON on
// standard input (ParamsStdin). The result is the exit status and the combined
// standard output and error.
type ExecHandler struct {
	// Path is absolute: what runs never depends on the agent's PATH.
	Path   string   `json:"path" yaml:"path"`
	Args   []string `json:"args,omitempty" yaml:"args,omitempty"`
	Params string   `json:"params,omitempty" yaml:"params,omitempty"`
}

// Param is one parameter of a command's schema.
type Param struct {
	Name        string `json:"name" yaml:"name"`
	Type        string `json:"type" yaml:"type"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	Required    bool   `json:"required,omitempty" yaml:"required,omitempty"`
	// Default is used when the parameter is not given; it must pass the schema.
	Default any `json:"default,omitempty" yaml:"default,omitempty"`
	// Min and Max bound integer and number parameters.
	Min *float64 `json:"min,omitempty" yaml:"min,omitempty"`
	Max *float64 `json:"max,omitempty" yaml:"max,omitempty"`
	// MaxLength bounds a string in bytes (DefaultStringMax when zero, at most
	// MaxStringParam).
	MaxLength int `json:"max_length,omitempty" yaml:"max_length,omitempty"`
	// Pattern, when set, must match the whole string (RE2, so linear time).
	Pattern string `json:"pattern,omitempty" yaml:"pattern,omitempty"`
	// Values are the choices of an enum parameter.
	Values []string `json:"values,omitempty" yaml:"values,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"30s\": %w", err)
	}
	return d.parse(s)
}

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.parse(n.Value) }

func (d *Duration) parse(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// EffectiveTimeout is the spec's timeout with the default applied.
func (s Spec) EffectiveTimeout() time.Duration {
	if s.Timeout <= 0 {
		return DefaultTimeout
	}
	return time.Duration(s.Timeout)
}

// EffectiveOutputLimit is the spec's output limit with the default applied.
func (s Spec) EffectiveOutputLimit() int {
	if s.OutputLimit <= 0 {
		return DefaultOutputMax
	}
	return s.OutputLimit
}

// ValidName reports whether name can name a command or a parameter.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidateSpecs checks a release's declarations: every spec valid, names unique,
// at most MaxCommands.
func ValidateSpecs(specs []Spec) error {
	if len(specs) > MaxCommands {
		return fmt.Errorf("%d commands, at most %d", len(specs), MaxCommands)
	}
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("command %q is declared twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// Validate checks one declaration.
func (s Spec) Validate() error {
	if !ValidName(s.Name) {
		return fmt.Errorf("command name %.80q: use 1 to %d lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", s.Name, MaxNameBytes)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("command %s: %s", s.Name, fmt.Sprintf(format, args...))
	}
	if len(s.Description) > MaxDescription || !utf8.ValidString(s.Description) {
		return fail("description: at most %d bytes of UTF-8", MaxDescription)
	}
	if s.Timeout < 0 || time.Duration(s.Timeout) > MaxTimeout {
		return fail("timeout %s: between 0 (the default, %s) and %s", time.Duration(s.Timeout), DefaultTimeout, MaxTimeout)
	}
	if s.OutputLimit < 0 || s.OutputLimit > MaxOutputLimit {
		return fail("output_limit %d: between 0 (the default, %d bytes) and %d bytes", s.OutputLimit, DefaultOutputMax, MaxOutputLimit)
	}
	switch {
	case (s.HTTP == nil) == (s.Exec == nil):
		return fail("declare exactly one handler, http or exec")
	case s.HTTP != nil:
		if err := s.HTTP.validate(); err != nil {
			return fail("http: %v", err)
		}
	default:
		if err := s.Exec.validate(); err != nil {
			return fail("exec: %v", err)
		}
	}
	if len(s.Params) > MaxParams {
		return fail("%d parameters, at most %d", len(s.Params), MaxParams)
	}
	seen := make(map[string]bool, len(s.Params))
	for _, p := range s.Params {
		if err := p.validate(); err != nil {
			return fail("%v", err)
		}
		if seen[p.Name] {
			return fail("parameter %q is declared twice", p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

func (h *HTTPHandler) validate() error {
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %.200q: an absolute http or https URL", h.URL)
	}
	if u.User != nil {
		return fmt.Errorf("url: credentials belong in headers, not in the URL")
	}
	if m := h.Method; m != "" && m != "GET" && m != "POST" {
		return fmt.Errorf("method %.20q: GET or POST", m)
	}
	if len(h.Headers) > MaxHeaders {
		return fmt.Errorf("%d headers, at most %d", len(h.Headers), MaxHeaders)
	}
	for k, v := range h.Headers {
		if k == "" || len(k) > 256 || len(v) > MaxArgBytes || strings.ContainsAny(k+v, "\r\n\x00") || strings.ContainsAny(k, " :") {
			return fmt.Errorf("header %.80q: a token name and a value of at most %d bytes on one line", k, MaxArgBytes)
		}
	}
	return nil
}

func (h *ExecHandler) validate() error {
	if !filepath.IsAbs(h.Path) || len(h.Path) > MaxArgBytes || strings.ContainsRune(h.Path, 0) {
		return fmt.Errorf("path %.200q: an absolute path", h.Path)
	}
	if len(h.Args) > MaxArgs {
		return fmt.Errorf("%d arguments, at most %d", len(h.Args), MaxArgs)
	}
	for _, a := range h.Args {
		if len(a) > MaxArgBytes || strings.ContainsRune(a, 0) {
			return fmt.Errorf("argument %.80q: at most %d bytes, no NUL", a, MaxArgBytes)
		}
	}
	if h.Params != "" && h.Params != ParamsEnv && h.Params != ParamsStdin {
		return fmt.Errorf("params %.20q: %q or %q", h.Params, ParamsEnv, ParamsStdin)
	}
	return nil
}

func (p Param) validate() error {
	if !ValidName(p.Name) {
		return fmt.Errorf("parameter name %.80q: use 1 to %d lower-case letters, digits, '.', '_' or '-'", p.Name, MaxNameBytes)
	}
	if len(p.Description) > MaxDescription || !utf8.ValidString(p.Description) {
		return fmt.Errorf("parameter %s: description: at most %d bytes of UTF-8", p.Name, MaxDescription)
	}
	switch p.Type {
	case TypeString:
		if p.MaxLength < 0 || p.MaxLength > MaxStringParam {
			return fmt.Errorf("parameter %s: max_length %d: between 0 (the default, %d) and %d", p.Name, p.MaxLength, DefaultStringMax, MaxStringParam)
		}
		if len(p.Pattern) > MaxPatternBytes {
			return fmt.Errorf("parameter %s: pattern: at most %d bytes", p.Name, MaxPatternBytes)
		}
		if p.Pattern != "" {
			if _, err := regexp.Compile(p.Pattern); err != nil {
				return fmt.Errorf("parameter %s: pattern: %w", p.Name, err)
			}
		}
	case TypeInteger, TypeNumber:
		if p.Min != nil && p.Max != nil && *p.Min > *p.Max {
			return fmt.Errorf("parameter %s: min %v is above max %v", p.Name, *p.Min, *p.Max)
		}
	case TypeBoolean:
	case TypeEnum:
		if len(p.Values) == 0 || len(p.Values) > MaxEnumValues {
			return fmt.Errorf("parameter %s: an enum lists 1 to %d values", p.Name, MaxEnumValues)
		}
		for _, v := range p.Values {
			if v == "" || len(v) > MaxNameBytes*4 || !utf8.ValidString(v) {
				return fmt.Errorf("parameter %s: enum value %.80q: 1 to %d bytes of UTF-8", p.Name, v, MaxNameBytes*4)
			}
		}
	default:
		return fmt.Errorf("parameter %s: type %.20q: one of string, integer, number, boolean, enum", p.Name, p.Type)
	}
	if (p.Min != nil || p.Max != nil) && p.Type != TypeInteger && p.Type != TypeNumber {
		return fmt.Errorf("parameter %s: min and max apply to integer and number parameters", p.Name)
	}
	if p.Default != nil {
		if _, err := p.check(p.Default); err != nil {
			return fmt.Errorf("parameter %s: default: %w", p.Name, err)
		}
	}
	return nil
}

// Find returns the spec named name.
func Find(specs []Spec, name string) (Spec, bool) {
	for _, s := range specs {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Names lists the specs' names in order.
func Names(specs []Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// ParseSpecs reads a declarations file (YAML or JSON): either a list of specs
// or an object with a "commands" list. Unknown fields are refused, so a typo does
// not silently declare a command without its bounds.
func ParseSpecs(data []byte) ([]Spec, error) {
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("commands file: %d bytes, at most %d", len(data), 1<<20)
	}
	var doc struct {
		Commands []Spec `yaml:"commands"`
	}
	var list []Spec
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, fmt.Errorf("commands file: %w", err)
	}
	if len(node.Content) == 0 {
		return nil, fmt.Errorf("commands file is empty")
	}
	root := node.Content[0]
	var err error
	switch root.Kind {
	case yaml.SequenceNode:
		err = decodeStrictYAML(root, &list)
	case yaml.MappingNode:
		err = decodeStrictYAML(root, &doc)
		list = doc.Commands
	default:
		return nil, fmt.Errorf("commands file: a list of commands, or an object with a \"commands\" list")
	}
	if err != nil {
		return nil, fmt.Errorf("commands file: %w", err)
	}
	if err := ValidateSpecs(list); err != nil {
		return nil, err
	}
	return list, nil
}

// decodeStrictYAML decodes n into v refusing unknown fields (yaml.v3 checks
// them only through a Decoder, so the node is re-encoded once).
func decodeStrictYAML(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	return dec.Decode(v)
}
