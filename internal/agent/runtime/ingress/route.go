package ingress

import (
	"slices"
	"strings"

	"github.com/periscope-dev/periscope/internal/config"
)

// OtherRoute is the route recorded for a path that matches no template.
const OtherRoute = "other"

// segKind orders segments by specificity: a literal beats a parameter, which
// beats the rest-of-path wildcard.
type segKind uint8

const (
	segLiteral segKind = iota
	segParam
	segRest
)

type segment struct {
	kind segKind
	lit  string
}

// template is one parsed route template.
type template struct {
	route string
	segs  []segment
}

// parseTemplate checks (by config's rule) and splits a route template such as "/orders/{id}" or
// "/static/*".
func parseTemplate(route string) (template, error) {
	if err := config.CheckRouteTemplate(route); err != nil {
		return template{}, err
	}
	parts := strings.Split(route[1:], "/")
	t := template{route: route, segs: make([]segment, 0, len(parts))}
	for _, p := range parts {
		switch {
		case p == "*":
			t.segs = append(t.segs, segment{kind: segRest})
		case strings.HasPrefix(p, "{"):
			t.segs = append(t.segs, segment{kind: segParam})
		default:
			t.segs = append(t.segs, segment{kind: segLiteral, lit: p})
		}
	}
	return t, nil
}

// match reports whether path matches t. It allocates nothing, and its work is
// linear in the length of path.
func (t *template) match(path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	rest := path[1:]
	for i, s := range t.segs {
		if s.kind == segRest {
			return true
		}
		seg := rest
		j := strings.IndexByte(rest, '/')
		if j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			rest = ""
		}
		switch s.kind {
		case segLiteral:
			if seg != s.lit {
				return false
			}
		case segParam:
			if seg == "" {
				return false
			}
		}
		if j < 0 {
			// The path has no more segments: it matches only if the template
			// has none either, or only the wildcard.
			return i == len(t.segs)-1 || (i == len(t.segs)-2 && t.segs[i+1].kind == segRest)
		}
	}
	return false
}

// router maps a request path to the most specific matching route template.
type router struct {
	// templates are sorted most specific first, so the first match wins.
	templates []template
}

// newRouter parses routes, which Config.Validate has checked.
func newRouter(routes []string) (*router, error) {
	r := &router{templates: make([]template, 0, len(routes))}
	for _, s := range routes {
		t, err := parseTemplate(s)
		if err != nil {
			return nil, err
		}
		r.templates = append(r.templates, t)
	}
	slices.SortStableFunc(r.templates, func(a, b template) int {
		for i := 0; i < len(a.segs) && i < len(b.segs); i++ {
			if c := int(a.segs[i].kind) - int(b.segs[i].kind); c != 0 {
				return c
			}
		}
		// Longer is more specific ("/a/b" before "/a/*" is settled above;
		// "/a/b/c" before "/a/b" cannot both match, so this only orders).
		return len(b.segs) - len(a.segs)
	})
	return r, nil
}

// route returns the index of the template path matches (its position in
// r.templates) or len(r.templates) for OtherRoute.
func (r *router) route(path string) int {
	for i := range r.templates {
		if r.templates[i].match(path) {
			return i
		}
	}
	return len(r.templates)
}

// name returns the route recorded for index i from route.
func (r *router) name(i int) string {
	if i >= len(r.templates) {
		return OtherRoute
	}
	return r.templates[i].route
}
