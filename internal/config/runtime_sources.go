package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// What every runtime source's entry shares: a name, credentials named by
// environment variable, and server URLs that must not hold a password.

var (
	sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// validSource checks a source's name and the names of its credential
// variables, under field f.
func validSource(f, name, userEnv, passEnv string) []error {
	var errs []error
	if !sourceName.MatchString(name) {
		errs = append(errs, fmt.Errorf("%s.name: %q must be 1 to 100 letters, digits, '.', '_', ':' or '-'", f, clip(name, 120)))
	}
	for _, kv := range [][2]string{{"username_env", userEnv}, {"password_env", passEnv}} {
		if kv[1] != "" && !envName.MatchString(kv[1]) {
			errs = append(errs, fmt.Errorf("%s.%s: %q is not an environment variable name", f, kv[0], clip(kv[1], 140)))
		}
	}
	return errs
}

// credentials reads a source's user and password from env under the names its
// entry gives.
func credentials(env []string, userEnv, passEnv string) (user, password string) {
	return LookupEnv(env, userEnv), LookupEnv(env, passEnv)
}

// LookupEnv is the value of the variable name in env (os.Environ form), empty
// when name is empty or unset.
func LookupEnv(env []string, name string) string {
	if name == "" {
		return ""
	}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// Clip cuts s to at most n bytes without splitting a UTF-8 sequence, so a long
// value from a file or a server cannot blow up an error or an attribute.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func clip(s string, n int) string { return Clip(s, n) }

// validServerURL checks a server URL's scheme and host, and refuses a password
// written in it (as user:password@ or a password parameter): the configuration
// file is often shared, the environment is where secrets go. The URL is not
// echoed, since it may hold one.
func validServerURL(field, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" {
		return fmt.Errorf("%s: must be a URL like %s://host:port", field, schemes[0])
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return fmt.Errorf("%s: scheme %q must be %s", field, clip(u.Scheme, 32), strings.Join(schemes, " or "))
	}
	if _, set := u.User.Password(); set || u.Query().Has("password") {
		return fmt.Errorf("%s: holds a password; name its environment variable in password_env instead", field)
	}
	return nil
}

// Kinds of StorageSource.
const (
	StorageS3         = "s3"
	StorageRedis      = "redis"
	StoragePostgres   = "postgres"
	StorageFilesystem = "filesystem"
)

// Defaults and bounds of StorageSource.
const (
	// DefaultMaxKeys bounds an S3 listing when MaxKeys is unset: 100 pages of
	// 1,000 keys, a few seconds against a nearby store.
	DefaultMaxKeys = 100_000
	// DefaultMaxTables is how many of the largest PostgreSQL tables are reported
	// when MaxTables is unset.
	DefaultMaxTables = 10
	// MaxTablesLimit keeps the table list a handful of series, not a catalogue.
	MaxTablesLimit = 100
	// MaxPrefixes and MaxPaths bound a storage source's series.
	MaxPrefixes = 32
	MaxPaths    = 32
	// MaxAttrLen bounds every attribute value a source takes from the outside.
	MaxAttrLen = 256
)

// StorageSource is one storage source in the agent's runtime configuration.
// Which fields apply depends on Kind; Validate reports those set for another
// kind. Credentials come from environment variables the entry names, never
// from the file, which is often shared (the queue sources' rule).
//
//	s3:          bucket, prefixes, max_keys, url (endpoint, empty for AWS), region, path_style
//	redis:       url (redis://host:6379, rediss:// for TLS)
//	postgres:    url (postgres://user@host:5432/database?sslmode=…), max_tables
//	filesystem:  paths
type StorageSource struct {
	// Kind is s3, redis, postgres or filesystem.
	Kind string `yaml:"kind"`
	// Name identifies the source within its kind ("exports"); the source's full
	// name is kind/name ("s3/exports").
	Name string `yaml:"name"`

	// URL is the server: the endpoint of an S3-compatible store (AWS when
	// unset), or the Redis or PostgreSQL server.
	URL string `yaml:"url"`
	// UsernameEnv and PasswordEnv name the environment variables holding the
	// credentials: the user and password for redis and postgres, the access
	// key id and secret key for s3 (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
	// and AWS_SESSION_TOKEN when unset).
	UsernameEnv string `yaml:"username_env"`
	PasswordEnv string `yaml:"password_env"`

	// Bucket is the s3 bucket to measure.
	Bucket string `yaml:"bucket"`
	// Prefixes are key prefixes of the bucket measured on their own as well.
	Prefixes []string `yaml:"prefixes"`
	// MaxKeys bounds the keys listed per collection (DefaultMaxKeys when 0);
	// figures from a listing cut there are marked partial.
	MaxKeys int `yaml:"max_keys"`
	// Region is the bucket's region (us-east-1 when unset).
	Region string `yaml:"region"`
	// PathStyle addresses the bucket in the URL path, as most S3-compatible
	// stores need.
	PathStyle bool `yaml:"path_style"`

	// MaxTables is how many of the largest postgres tables are reported
	// (DefaultMaxTables when 0, at most 100).
	MaxTables int `yaml:"max_tables"`

	// Paths are the absolute filesystem paths whose volumes are measured.
	Paths []string `yaml:"paths"`
}

// SourceName is the source's name in metrics and health: "<kind>/<name>".
func (c StorageSource) SourceName() string { return c.Kind + "/" + c.Name }

// Credentials returns the user and password from env (os.Environ form) under
// the configured variable names; an unset name gives an empty value.
func (c StorageSource) Credentials(env []string) (user, password string) {
	return credentials(env, c.UsernameEnv, c.PasswordEnv)
}

// Validate reports every problem in the entry, each with its field under field
// (such as "runtime.storage[2]").
func (c StorageSource) Validate(field string) error {
	errs := validSource(field, c.Name, c.UsernameEnv, c.PasswordEnv)
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s", field, fmt.Sprintf(format, args...)))
	}
	serverURL := func(schemes ...string) {
		if err := validServerURL(field+".url", c.URL, schemes...); err != nil {
			errs = append(errs, err)
		}
	}
	// unused reports a field set for a kind that ignores it, which is a
	// misplaced line of YAML more often than not.
	unused := func(name string, set bool) {
		if set {
			bad("%s: does not apply to %s", name, c.Kind)
		}
	}
	notS3 := func() {
		unused("bucket", c.Bucket != "")
		unused("prefixes", len(c.Prefixes) > 0)
		unused("max_keys", c.MaxKeys != 0)
		unused("region", c.Region != "")
		unused("path_style", c.PathStyle)
	}
	switch c.Kind {
	case StorageS3:
		if c.URL != "" {
			serverURL("http", "https")
		}
		if c.Bucket == "" || len(c.Bucket) > MaxAttrLen {
			bad("bucket: must be 1 to %d bytes", MaxAttrLen)
		}
		if len(c.Prefixes) > MaxPrefixes {
			bad("prefixes: %d given, at most %d", len(c.Prefixes), MaxPrefixes)
		}
		for i, p := range c.Prefixes {
			if p == "" || len(p) > MaxAttrLen {
				bad("prefixes[%d]: must be 1 to %d bytes", i, MaxAttrLen)
			}
		}
		if c.MaxKeys < 0 {
			bad("max_keys: must not be negative (0 means %d)", DefaultMaxKeys)
		}
		unused("max_tables", c.MaxTables != 0)
		unused("paths", len(c.Paths) > 0)
	case StorageRedis:
		serverURL("redis", "rediss")
		notS3()
		unused("max_tables", c.MaxTables != 0)
		unused("paths", len(c.Paths) > 0)
	case StoragePostgres:
		serverURL("postgres", "postgresql")
		notS3()
		if c.MaxTables < 0 || c.MaxTables > MaxTablesLimit {
			bad("max_tables: %d must be 0 (meaning %d) to %d", c.MaxTables, DefaultMaxTables, MaxTablesLimit)
		}
		unused("paths", len(c.Paths) > 0)
	case StorageFilesystem:
		if len(c.Paths) == 0 || len(c.Paths) > MaxPaths {
			bad("paths: %d given, must be 1 to %d", len(c.Paths), MaxPaths)
		}
		for i, p := range c.Paths {
			if !filepath.IsAbs(p) || len(p) > MaxAttrLen {
				bad("paths[%d]: %q must be an absolute path of at most %d bytes", i, clip(p, 64), MaxAttrLen)
			}
		}
		unused("url", c.URL != "")
		unused("username_env", c.UsernameEnv != "")
		unused("password_env", c.PasswordEnv != "")
		notS3()
		unused("max_tables", c.MaxTables != 0)
	default:
		bad("kind: %q must be s3, redis, postgres or filesystem", clip(c.Kind, 64))
	}
	return errors.Join(errs...)
}

// Bounds on an IngressProxy, so that a configuration cannot make the proxy's
// memory or its metrics' cardinality unbounded.
const (
	// MaxIngressRoutes bounds the route templates of one proxy.
	MaxIngressRoutes = 128
	// MaxRouteLen bounds one route template, in bytes.
	MaxRouteLen = 256
	// MaxIngressNameLen bounds a proxy's name, in bytes.
	MaxIngressNameLen = 64
	// MaxIngressHeaderBytes bounds IngressProxy.MaxHeaderBytes.
	MaxIngressHeaderBytes = 1 << 20
)

// IngressProxy is one ingress-facing service the agent proxies: where the
// proxy listens, the service it forwards to, and the route templates its
// metrics are recorded under.
type IngressProxy struct {
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

// Validate reports every problem of the entry, each naming its field under
// field (such as "runtime.ingress[0]").
func (c IngressProxy) Validate(field string) error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, name, fmt.Sprintf(format, a...)))
	}
	switch {
	case c.Name == "":
		bad("name", "required")
	case len(c.Name) > MaxIngressNameLen:
		bad("name", "longer than %d bytes", MaxIngressNameLen)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "want host:port: %v", err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("listen", "bad port %q", clip(port, 16))
	}
	if u, err := url.Parse(c.Upstream); err != nil {
		bad("upstream", "not a URL")
	} else {
		if u.Scheme != "http" && u.Scheme != "https" {
			bad("upstream", "scheme must be http or https, not %q", clip(u.Scheme, 32))
		}
		if u.Host == "" {
			bad("upstream", "no host")
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			bad("upstream", "must not carry a query, fragment or user info")
		}
	}
	if len(c.Routes) > MaxIngressRoutes {
		bad("routes", "more than %d templates", MaxIngressRoutes)
	}
	seen := make(map[string]bool, len(c.Routes))
	for i, r := range c.Routes {
		if err := CheckRouteTemplate(r); err != nil {
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
	if c.MaxHeaderBytes < 0 || c.MaxHeaderBytes > MaxIngressHeaderBytes {
		bad("max_header_bytes", "must be between 0 and %d", MaxIngressHeaderBytes)
	}
	return errors.Join(errs...)
}

// CheckRouteTemplate checks a route template such as "/orders/{id}" or
// "/static/*": it starts with /, and {param} and * are whole segments, * only
// the last.
func CheckRouteTemplate(route string) error {
	switch {
	case route == "":
		return errors.New("empty route template")
	case len(route) > MaxRouteLen:
		return fmt.Errorf("route template longer than %d bytes", MaxRouteLen)
	case route[0] != '/':
		return fmt.Errorf("route template %q does not start with /", route)
	}
	parts := strings.Split(route[1:], "/")
	for i, p := range parts {
		switch {
		case p == "*":
			if i != len(parts)-1 {
				return fmt.Errorf("route template %q: * must be the last segment", route)
			}
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			if name := p[1 : len(p)-1]; name == "" || strings.ContainsAny(name, "{}*") {
				return fmt.Errorf("route template %q: bad parameter %q", route, p)
			}
		case strings.ContainsAny(p, "{}*"):
			return fmt.Errorf("route template %q: {param} and * must be whole segments, not %q", route, p)
		}
	}
	return nil
}
