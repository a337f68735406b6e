// Package config is the manager's and the agent's configuration as plain data:
// defaults from a function, a YAML file over them, PERISCOPE_* environment
// variables over that, and flags (mapped in cmd) over everything. Validate reports
// every problem at once, each with its field path.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 30s or 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Manager is the manager's configuration.
type Manager struct {
	// Listen is the one HTTP address for dashboard, API, OpAMP and ingest.
	Listen string `yaml:"listen" env:"LISTEN"`
	// DataDir holds the embedded database.
	DataDir string `yaml:"data_dir" env:"DATA_DIR"`
	// HeartbeatInterval is how often agents are expected to check in.
	HeartbeatInterval Duration `yaml:"heartbeat_interval" env:"HEARTBEAT_INTERVAL"`
	// StaleAfter is how long without a check-in before a deployment is stale
	// (three heartbeats when unset).
	StaleAfter Duration `yaml:"stale_after" env:"STALE_AFTER"`
	// AdminToken, when set, is accepted as an admin API token; otherwise one is
	// generated and printed once on first start.
	AdminToken string `yaml:"admin_token" env:"ADMIN_TOKEN"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" env:"LOG_LEVEL"`
}

// DefaultManager returns the manager defaults.
func DefaultManager() Manager {
	return Manager{Listen: "127.0.0.1:7070", DataDir: "./periscope-data", HeartbeatInterval: Duration(30 * time.Second), LogLevel: "info"}
}

// Validate reports every problem in the configuration.
func (c *Manager) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q is not host:port", c.Listen))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must be set"))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat_interval: must be positive, got %s", time.Duration(c.HeartbeatInterval)))
	}
	if c.StaleAfter != 0 && c.StaleAfter < c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("stale_after: %s is shorter than heartbeat_interval %s: every deployment would flap to stale",
			time.Duration(c.StaleAfter), time.Duration(c.HeartbeatInterval)))
	}
	errs = append(errs, validLogLevel(c.LogLevel))
	return errors.Join(errs...)
}

// EffectiveStaleAfter is StaleAfter, or three heartbeats when unset.
func (c *Manager) EffectiveStaleAfter() time.Duration {
	if c.StaleAfter > 0 {
		return time.Duration(c.StaleAfter)
	}
	return 3 * time.Duration(c.HeartbeatInterval)
}

// Agent is the agent's configuration.
type Agent struct {
	// Manager is the manager's base URL (http:// or https://).
	Manager string `yaml:"manager" env:"MANAGER"`
	// Token is the deployment token issued when the deployment was created.
	Token string `yaml:"token" env:"TOKEN"`
	// Release is the vendor release this deployment runs.
	Release string `yaml:"release" env:"RELEASE"`
	// Cloud, Region and Platform override what the agent detects.
	Cloud    string `yaml:"cloud" env:"CLOUD"`
	Region   string `yaml:"region" env:"REGION"`
	Platform string `yaml:"platform" env:"PLATFORM"`
	// Transport is websocket (push) or http (polling).
	Transport string `yaml:"transport" env:"TRANSPORT"`
	// DataDir keeps the agent's identity across restarts.
	DataDir string `yaml:"data_dir" env:"DATA_DIR"`
	// HeartbeatInterval is how often the agent checks in.
	HeartbeatInterval Duration `yaml:"heartbeat_interval" env:"HEARTBEAT_INTERVAL"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" env:"LOG_LEVEL"`
}

// DefaultAgent returns the agent defaults.
func DefaultAgent() Agent {
	return Agent{Transport: "websocket", DataDir: "./periscope-agent-data", HeartbeatInterval: Duration(30 * time.Second), LogLevel: "info"}
}

// Validate reports every problem in the configuration.
func (c *Agent) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Manager); c.Manager == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("manager: %q is not an http(s) URL like http://127.0.0.1:7070", c.Manager))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("token: must be set (the deployment token from 'periscope deployments create')"))
	}
	if c.Transport != "websocket" && c.Transport != "http" {
		errs = append(errs, fmt.Errorf("transport: %q must be websocket or http", c.Transport))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat_interval: must be positive, got %s", time.Duration(c.HeartbeatInterval)))
	}
	errs = append(errs, validLogLevel(c.LogLevel))
	return errors.Join(errs...)
}

func validLogLevel(l string) error {
	switch l {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("log_level: %q must be debug, info, warn or error", l)
}

// Load fills cfg (already holding defaults) from the YAML file at path, if path
// is not empty, and then from PERISCOPE_* variables in env (os.Environ form).
// Unknown keys in the file are errors, so a typo does not pass silently.
func Load(cfg any, path string, env []string) error {
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		defer f.Close()
		dec := yaml.NewDecoder(f)
		dec.KnownFields(true)
		// An empty file decodes as io.EOF: it simply changes nothing.
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	return applyEnv(cfg, env)
}

// applyEnv sets each field tagged env:"X" from PERISCOPE_X when present.
func applyEnv(cfg any, env []string) error {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "PERISCOPE_") {
			vars[strings.TrimPrefix(k, "PERISCOPE_")] = v
		}
	}
	rv := reflect.ValueOf(cfg).Elem()
	var errs []error
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		name := f.Tag.Get("env")
		v, ok := vars[name]
		if name == "" || !ok {
			continue
		}
		switch fv := rv.Field(i); fv.Interface().(type) {
		case Duration:
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("PERISCOPE_%s: %q is not a duration like 30s", name, v))
				continue
			}
			fv.Set(reflect.ValueOf(Duration(d)))
		case string:
			fv.SetString(v)
		}
	}
	return errors.Join(errs...)
}
