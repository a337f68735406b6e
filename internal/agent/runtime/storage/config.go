package storage

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
)

// The kinds of storage source.
const (
	KindS3         = "s3"
	KindRedis      = "redis"
	KindPostgres   = "postgres"
	KindFilesystem = "filesystem"
)

// Defaults and bounds of Config.
const (
	// DefaultMaxKeys bounds an S3 listing when MaxKeys is unset: 100 pages of
	// 1,000 keys, a few seconds against a nearby store.
	DefaultMaxKeys = 100_000
	// DefaultMaxTables is how many of the largest PostgreSQL tables are reported
	// when MaxTables is unset.
	DefaultMaxTables = 10
	// maxTablesLimit keeps the table list a handful of series, not a catalogue.
	maxTablesLimit = 100
	// maxPrefixes and maxPaths bound a source's series.
	maxPrefixes = 32
	maxPaths    = 32
	// MaxAttrLen bounds every attribute value a source takes from the outside.
	MaxAttrLen = 256
)

// Config is one storage source in the agent's runtime configuration. Which
// fields apply depends on Kind; Validate reports those set for another kind.
// Credentials come from environment variables the entry names, never from the
// file, which is often shared (the queue sources' rule).
//
//	s3:          bucket, prefixes, max_keys, url (endpoint, empty for AWS), region, path_style
//	redis:       url (redis://host:6379, rediss:// for TLS)
//	postgres:    url (postgres://user@host:5432/database?sslmode=…), max_tables
//	filesystem:  paths
type Config struct {
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

var (
	sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// Validate reports every problem in the configuration, each with its field
// under field (such as "runtime.storage[2]").
func (c Config) Validate(field string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s", field, fmt.Sprintf(format, args...)))
	}
	if !sourceName.MatchString(c.Name) {
		bad("name: %q must be 1 to 100 letters, digits, '.', '_', ':' or '-'", Clip(c.Name, 120))
	}
	for _, kv := range [][2]string{{"username_env", c.UsernameEnv}, {"password_env", c.PasswordEnv}} {
		if kv[1] != "" && !envName.MatchString(kv[1]) {
			bad("%s: %q is not an environment variable name", kv[0], Clip(kv[1], 140))
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
	case KindS3:
		if c.URL != "" {
			validURL(bad, c.URL, "http", "https")
		}
		if c.Bucket == "" || len(c.Bucket) > MaxAttrLen {
			bad("bucket: must be 1 to %d bytes", MaxAttrLen)
		}
		if len(c.Prefixes) > maxPrefixes {
			bad("prefixes: %d given, at most %d", len(c.Prefixes), maxPrefixes)
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
	case KindRedis:
		validURL(bad, c.URL, "redis", "rediss")
		notS3()
		unused("max_tables", c.MaxTables != 0)
		unused("paths", len(c.Paths) > 0)
	case KindPostgres:
		validURL(bad, c.URL, "postgres", "postgresql")
		notS3()
		if c.MaxTables < 0 || c.MaxTables > maxTablesLimit {
			bad("max_tables: %d must be 0 (meaning %d) to %d", c.MaxTables, DefaultMaxTables, maxTablesLimit)
		}
		unused("paths", len(c.Paths) > 0)
	case KindFilesystem:
		if len(c.Paths) == 0 || len(c.Paths) > maxPaths {
			bad("paths: %d given, must be 1 to %d", len(c.Paths), maxPaths)
		}
		for i, p := range c.Paths {
			if !filepath.IsAbs(p) || len(p) > MaxAttrLen {
				bad("paths[%d]: %q must be an absolute path of at most %d bytes", i, Clip(p, 64), MaxAttrLen)
			}
		}
		unused("url", c.URL != "")
		unused("username_env", c.UsernameEnv != "")
		unused("password_env", c.PasswordEnv != "")
		notS3()
		unused("max_tables", c.MaxTables != 0)
	default:
		bad("kind: %q must be s3, redis, postgres or filesystem", Clip(c.Kind, 64))
	}
	return errors.Join(errs...)
}

// validURL checks a server URL's scheme and host and refuses a password written
// in it (as user:password@ or a password parameter). The URL is not echoed,
// since it may hold one.
func validURL(bad func(string, ...any), raw string, schemes ...string) {
	u, err := url.Parse(raw)
	switch {
	case raw == "" || err != nil || u.Host == "":
		bad("url: must be a URL like %s://host:port", schemes[0])
	case u.Scheme != schemes[0] && u.Scheme != schemes[1]:
		bad("url: scheme %q must be %s or %s", Clip(u.Scheme, 32), schemes[0], schemes[1])
	case u.Query().Has("password"):
		bad("url: holds a password; name its environment variable in password_env instead")
	default:
		if _, set := u.User.Password(); set {
			bad("url: holds a password; name its environment variable in password_env instead")
		}
	}
}

// Credentials returns the user and password from env (os.Environ form) under
// the configured variable names; an unset name gives an empty value.
func (c Config) Credentials(env []string) (user, password string) {
	return LookupEnv(env, c.UsernameEnv), LookupEnv(env, c.PasswordEnv)
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

// New builds the redis or filesystem source c describes, with credentials
// from env (os.Environ form); it validates c and starts nothing. The s3 and
// postgres sources are built by the packages s3bucket and postgresdb, apart,
// because they link the AWS SDK and pgx, which internal/archtest keeps out of
// the agent binary until that rule changes.
func New(c Config, env []string) (runtime.Source, error) {
	if err := c.Validate(c.Kind + "/" + c.Name); err != nil {
		return nil, err
	}
	switch c.Kind {
	case KindRedis:
		return newRedis(c, env)
	case KindFilesystem:
		return newFilesystem(c), nil
	}
	return nil, fmt.Errorf("%s/%s: kind %s is built by package storage/%s", c.Kind, c.Name, c.Kind, map[string]string{KindS3: "s3bucket", KindPostgres: "postgresdb"}[c.Kind])
}

// Check validates c as a source of the given kind, for the packages that build
// the kinds New does not.
func Check(c Config, kind string) error {
	if c.Kind != kind {
		return fmt.Errorf("%s/%s: kind %q, want %s", kind, c.Name, c.Kind, kind)
	}
	return c.Validate(c.Kind + "/" + c.Name)
}
