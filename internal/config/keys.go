package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/periscope-dev/periscope/internal/suggest"
)

// maxKeyProblems bounds how many unknown keys one load reports, so a file that
// is not a Periscope config at all answers with a screenful, not thousands.
const maxKeyProblems = 20

// checkKeys walks a decoded YAML document against the configuration type t
// and returns every problem: each key that t does not have (with the nearest
// key that exists) and each value that does not decode, each with its line and
// path. yaml.v3's own checks stop at the first and name a Go type, which tells
// a user nothing.
func checkKeys(n *yaml.Node, t reflect.Type) []string {
	var out []string
	walkKeys(n, t, "", &out)
	return out
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func walkKeys(n *yaml.Node, t reflect.Type, path string, out *[]string) {
	if n == nil || len(*out) >= maxKeyProblems {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// A type that decodes itself (Duration, ByteSize, policies) checks its own
	// contents, and a plain value its type: decoding each alone reports every
	// bad value with its path, where decoding the whole document stops at the
	// first.
	k := t.Kind()
	if reflect.PointerTo(t).Implements(unmarshalerType) || (k != reflect.Struct && k != reflect.Slice && k != reflect.Array && k != reflect.Map && k != reflect.Interface) {
		if len(*out) < maxKeyProblems {
			if err := n.Decode(reflect.New(t).Interface()); err != nil {
				*out = append(*out, valueProblem(n, t, path, err))
			}
		}
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			walkKeys(c, t, path, out)
		}
	case yaml.AliasNode:
		walkKeys(n.Alias, t, path, out)
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return
		}
		for i, c := range n.Content {
			walkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), out)
			}
		case reflect.Struct:
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Value == "<<" { // a merge key: its mapping holds this struct's keys
					walkKeys(n.Content[i+1], t, path, out)
					continue
				}
				ft, ok := fields[k.Value]
				if !ok {
					if len(*out) >= maxKeyProblems {
						return
					}
					msg := fmt.Sprintf("line %d: %s: unknown key", k.Line, join(path, k.Value))
					if near := nearest(k.Value, fields); near != "" {
						msg += fmt.Sprintf(" (did you mean %s?)", join(path, near))
					}
					*out = append(*out, msg)
					continue
				}
				walkKeys(n.Content[i+1], ft, join(path, k.Value), out)
			}
		}
	}
}

// valueProblem says what is wrong with the value at path, led by its line.
func valueProblem(n *yaml.Node, t reflect.Type, path string, err error) string {
	var msgs []string
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te) && n.Kind == yaml.ScalarNode:
		// yaml.v3 says "cannot unmarshal !!str `abc` into int": say it in
		// the user's words.
		msgs = []string{fmt.Sprintf("%q is not %s", bounded(n.Value, 60), kindWords(t))}
	case errors.As(err, &te):
		msgs = te.Errors
	default:
		msgs = []string{err.Error()}
	}
	for i, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		if rest, ok := strings.CutPrefix(m, fmt.Sprintf("line %d: ", n.Line)); ok {
			m = rest
		}
		msgs[i] = m
	}
	return fmt.Sprintf("line %d: %s: %s", n.Line, path, strings.Join(msgs, "; "))
}

// kindWords names what a value of type t must look like.
func kindWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return "a " + t.Kind().String()
}

func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps each YAML key of struct type t (inline structs flattened)
// to its field's type.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					m[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default
		}
		m[name] = f.Type
	}
	return m
}

// nearest returns the key of fields closest to k, if it is close enough to be
// a likely typo; keys are tried in order so ties always answer the same.
func nearest(k string, fields map[string]reflect.Type) string {
	near, ok := suggest.Nearest(strings.ToLower(k), slices.Sorted(maps.Keys(fields)))
	if !ok {
		return ""
	}
	return near
}
