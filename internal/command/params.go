package command

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Params are an invocation's parameters after validation: each value is a
// string, an int64, a float64 or a bool, as its declared type says.
type Params map[string]any

// ValidateParams checks raw parameters against spec's schema and returns them
// typed, with defaults filled in. Raw values may be JSON values (string,
// float64, json.Number, bool) or strings from a command line ("42", "true"),
// which are read as the declared type. Unknown and missing required parameters
// are refused; the error names the parameter and the rule it broke.
func ValidateParams(spec Spec, raw map[string]any) (Params, error) {
	if len(raw) > MaxParams {
		return nil, fmt.Errorf("%d parameters, at most %d", len(raw), MaxParams)
	}
	known := make(map[string]bool, len(spec.Params))
	for _, p := range spec.Params {
		known[p.Name] = true
	}
	var unknown []string
	for k := range raw {
		if !known[k] {
			unknown = append(unknown, fmt.Sprintf("%.64q", k))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("command %s has no parameter %s (it takes %s)", spec.Name, strings.Join(unknown, ", "), paramList(spec))
	}
	out := make(Params, len(spec.Params))
	for _, p := range spec.Params {
		v, ok := raw[p.Name]
		if !ok || v == nil {
			switch {
			case p.Default != nil:
				v = p.Default
			case p.Required:
				return nil, fmt.Errorf("parameter %s is required (%s)", p.Name, p.describe())
			default:
				continue
			}
		}
		typed, err := p.check(v)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", p.Name, err)
		}
		out[p.Name] = typed
	}
	return out, nil
}

func paramList(spec Spec) string {
	if len(spec.Params) == 0 {
		return "none"
	}
	names := make([]string, len(spec.Params))
	for i, p := range spec.Params {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// describe says what the parameter accepts, for error messages.
func (p Param) describe() string {
	switch p.Type {
	case TypeEnum:
		return "one of " + strings.Join(p.Values, ", ")
	case TypeInteger, TypeNumber:
		s := "a" + map[bool]string{true: "n", false: ""}[p.Type == TypeInteger] + " " + p.Type
		if p.Min != nil {
			s += " ≥ " + strconv.FormatFloat(*p.Min, 'g', -1, 64)
		}
		if p.Max != nil {
			s += " ≤ " + strconv.FormatFloat(*p.Max, 'g', -1, 64)
		}
		return s
	case TypeBoolean:
		return "true or false"
	default:
		return fmt.Sprintf("a string of at most %d bytes", p.maxLength())
	}
}

func (p Param) maxLength() int {
	if p.MaxLength <= 0 {
		return DefaultStringMax
	}
	return p.MaxLength
}

// check reads one value as p's type and applies p's bounds.
func (p Param) check(v any) (any, error) {
	switch p.Type {
	case TypeString, TypeEnum:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s, not %s", p.describe(), kindOf(v))
		}
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return nil, fmt.Errorf("not valid UTF-8 text")
		}
		if p.Type == TypeEnum {
			for _, x := range p.Values {
				if s == x {
					return s, nil
				}
			}
			return nil, fmt.Errorf("%.64q is not %s", s, p.describe())
		}
		if len(s) > p.maxLength() {
			return nil, fmt.Errorf("%d bytes, at most %d", len(s), p.maxLength())
		}
		if p.Pattern != "" {
			re, err := regexp.Compile(`^(?:` + p.Pattern + `)$`)
			if err != nil || !re.MatchString(s) {
				return nil, fmt.Errorf("%.64q does not match %s", s, p.Pattern)
			}
		}
		return s, nil
	case TypeBoolean:
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("true or false, not %s", kindOf(v))
	case TypeInteger, TypeNumber:
		f, err := number(v)
		if err != nil {
			return nil, fmt.Errorf("%s, not %s", p.describe(), kindOf(v))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s, not %v", p.describe(), f)
		}
		if p.Type == TypeInteger && (f != math.Trunc(f) || math.Abs(f) > 1<<53) {
			return nil, fmt.Errorf("%s, not %v", p.describe(), f)
		}
		if (p.Min != nil && f < *p.Min) || (p.Max != nil && f > *p.Max) {
			return nil, fmt.Errorf("%v is outside its bounds: %s", f, p.describe())
		}
		if p.Type == TypeInteger {
			return int64(f), nil
		}
		return f, nil
	}
	return nil, fmt.Errorf("unknown type %q", p.Type)
}

func number(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case json.Number:
		return strconv.ParseFloat(string(x), 64)
	case string:
		return strconv.ParseFloat(strings.TrimSpace(x), 64)
	}
	return 0, fmt.Errorf("not a number")
}

func kindOf(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%.64q", x)
	case bool:
		return strconv.FormatBool(x)
	case float64, json.Number, int, int64:
		return fmt.Sprint(x)
	case nil:
		return "null"
	default:
		return "an object or a list"
	}
}

// EnvName is the environment variable that carries parameter name to an
// executable: PERISCOPE_PARAM_ and the name upper-cased, '.' and '-' as '_'.
func EnvName(name string) string {
	return "PERISCOPE_PARAM_" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r == '.' || r == '-':
			return '_'
		}
		return r
	}, name)
}

// String renders a typed parameter value as an executable's environment or a
// query string carries it.
func String(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}
