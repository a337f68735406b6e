package ingress

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRouteMatch(t *testing.T) {
	r, err := newRouter([]string{"/static/*", "/orders/{id}", "/orders/new", "/orders/{id}/items/{item}", "/", "/v1/*"})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/":                    "/",
		"/orders/42":           "/orders/{id}",
		"/orders/new":          "/orders/new",
		"/orders/42/items/7":   "/orders/{id}/items/{item}",
		"/orders/":             OtherRoute,
		"/orders/42/items":     OtherRoute,
		"/orders/42/items/7/x": OtherRoute,
		"/static":              "/static/*",
		"/static/":             "/static/*",
		"/static/css/app.css":  "/static/*",
		"/v1/anything/at/all":  "/v1/*",
		"/users/9":             OtherRoute,
		"":                     OtherRoute,
		"orders/42":            OtherRoute,
		"//orders/42":          OtherRoute,
	} {
		if got := r.name(r.route(path)); got != want {
			t.Errorf("%q → %q, want %q", path, got, want)
		}
	}
}

// FuzzRouteMatch: any path maps to a configured template or "other" without
// panicking, in time linear in the path; a template that matches the path is
// never passed over for "other".
func FuzzRouteMatch(f *testing.F) {
	for _, s := range []string{"/orders/42", "/static/a/b", "/", "", "//", "/orders/", "/a/b/c/d/e", "/%2F/x", "/orders/{id}"} {
		f.Add(s)
	}
	routes := []string{"/orders/{id}", "/orders/{id}/items/*", "/static/*", "/", "/health", "/a/{b}/c"}
	r, err := newRouter(routes)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		i := r.route(path)
		name := r.name(i)
		if name != OtherRoute && !contains(routes, name) {
			t.Fatalf("%q → %q, not a configured route", path, name)
		}
		if len(name) > MaxRouteLen || !utf8.ValidString(name) {
			t.Fatalf("unbounded route name %q", name)
		}
		if name == OtherRoute {
			for k := range r.templates {
				if r.templates[k].match(path) {
					t.Fatalf("%q matches %q but was recorded as other", path, r.templates[k].route)
				}
			}
		} else if !r.templates[i].match(path) {
			t.Fatalf("%q recorded as %q, which it does not match", path, name)
		}
		// A literal-only template built from the path itself must match it.
		if strings.HasPrefix(path, "/") && len(path) <= MaxRouteLen && !strings.ContainsAny(path, "{}*") {
			own, err := newRouter([]string{path})
			if err == nil && own.name(own.route(path)) != path {
				t.Fatalf("%q does not match its own template", path)
			}
		}
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
