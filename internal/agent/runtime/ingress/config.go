package ingress

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"
)

// Bounds on a Config, so that a configuration cannot make the proxy's memory or its
// metrics' cardinality unbounded.
const (
	// MaxRoutes bounds the route templates of one proxy.
	MaxRoutes = 128
	// MaxRouteLen bounds one route template, in bytes.
	MaxRouteLen = 256
	// MaxNameLen bounds a proxy's name, in bytes.
	MaxNameLen = 64
	// MaxHeaderBytesLimit bounds Config.MaxHeaderBytes.
	MaxHeaderBytesLimit = 1 << 20
)

// Defaults applied by New to the zero values of a Config's limits.
const (
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout           = 120 * time.Second
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultMaxHeaderBytes        = 64 << 10
)

// Config is one ingress-facing service: where the proxy listens, the service it
// forwards to, and the route templates its metrics are recorded under.
type Config struct {
	// Name identifies the service in metrics (periscope.ingress.name) and errors.
	Name string `yaml:"name"`
	// Listen is the proxy's host:port, e.g. ":8080" or "127.0.0.1:0".
	Listen string `yaml:"listen"`
	// Upstream is the service's base URL, http or https; a path in it prefixes
	// every forwarded path.
	Upstream string `yaml:"upstream"`
	// Routes are route templates such as "/orders/{id}" or "/static/*": a
	// "{name}" segment matches one non-empty path segment, a final "*" matches
	// the rest of the path. A path matching none is recorded as route "other",
	// so ids in paths never explode the metrics' cardinality. When several
	// match, the more specific wins (literal before {param} before *, segment by
	// segment from the left).
	Routes []string `yaml:"routes"`
	// ReadHeaderTimeout bounds reading a client's request headers (0: 10 s).
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes a client's keep-alive connection idle this long (0: 120 s).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DialTimeout bounds connecting to the upstream (0: 5 s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ResponseHeaderTimeout bounds waiting for the upstream's response headers
	// after the request is sent (0: 60 s); bodies stream with no deadline, so
	// long downloads and event streams are not cut.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// MaxHeaderBytes bounds a client's request headers (0: 64 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// Validate reports every problem of c, each naming its field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("ingress %q: %s: %s", c.Name, field, fmt.Sprintf(format, a...)))
	}
	switch {
	case c.Name == "":
		bad("name", "required")
	case len(c.Name) > MaxNameLen:
		bad("name", "longer than %d bytes", MaxNameLen)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port: %v", err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("listen", "bad port %q", port)
	}
	if u, err := url.Parse(c.Upstream); err != nil {
		bad("upstream", "%v", err)
	} else {
		if u.Scheme != "http" && u.Scheme != "https" {
			bad("upstream", "scheme must be http or https, not %q", u.Scheme)
		}
		if u.Host == "" {
			bad("upstream", "no host in %q", c.Upstream)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("upstream", "must not carry a query, fragment or user info")
		}
	}
	if len(c.Routes) > MaxRoutes {
		bad("routes", "more than %d templates", MaxRoutes)
	}
	seen := make(map[string]bool, len(c.Routes))
	for i, r := range c.Routes {
		if _, err := parseTemplate(r); err != nil {
			bad(fmt.Sprintf("routes[%d]", i), "%v", err)
		} else if seen[r] {
			bad(fmt.Sprintf("routes[%d]", i), "duplicate %q", r)
		}
		seen[r] = true
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"idle_timeout", c.IdleTimeout},
		{"dial_timeout", c.DialTimeout},
		{"response_header_timeout", c.ResponseHeaderTimeout},
	} {
		if d.v < 0 {
			bad(d.field, "negative")
		}
	}
	if c.MaxHeaderBytes < 0 || c.MaxHeaderBytes > MaxHeaderBytesLimit {
		bad("max_header_bytes", "must be between 0 and %d", MaxHeaderBytesLimit)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with its zero limits replaced by the defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return c
}
