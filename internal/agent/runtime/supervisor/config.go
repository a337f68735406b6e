package supervisor

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Bounds on a Config, so that a manifest cannot make the agent's memory, its
// process count or its metrics' cardinality unbounded.
const (
	// MaxWorkloads bounds the workloads of one supervisor.
	MaxWorkloads = 64
	// MaxReplicas bounds Workload.Replicas.
	MaxReplicas = 64
	// MaxNameLen bounds a workload's name, in bytes.
	MaxNameLen = 64
	// MaxArgs bounds Workload.Args and Workload.Env, each.
	MaxArgs = 256
	// MaxArgLen bounds one argument, environment entry, path or probe target, in bytes.
	MaxArgLen = 4096
)

// Defaults applied to a Workload's zero values.
const (
	DefaultReplicas         = 1
	DefaultInitialBackoff   = time.Second
	DefaultMaxBackoff       = time.Minute
	DefaultBackoffReset     = time.Minute
	DefaultStopTimeout      = 10 * time.Second
	DefaultProbePeriod      = 10 * time.Second
	DefaultProbeTimeout     = time.Second
	DefaultFailureThreshold = 3
)

// RestartPolicy says when an exited replica is started again.
type RestartPolicy string

// The restart policies; the empty policy is RestartAlways.
const (
	// RestartAlways restarts a replica whatever its exit.
	RestartAlways RestartPolicy = "always"
	// RestartOnFailure restarts a replica that exited non-zero, was killed by
	// a signal or could not start; one that exited 0 has completed.
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartNever leaves every exited replica as it ended.
	RestartNever RestartPolicy = "never"
)

// Config is the manifest of the workloads the agent runs.
type Config struct {
	Workloads []Workload `yaml:"workloads"`
}

// Workload is one program the agent runs as Replicas processes, each in a
// process group of its own, never through a shell.
type Workload struct {
	// Name identifies the workload in component names ("worker/0"), metrics
	// and errors: letters, digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Command is the executable's absolute path.
	Command string `yaml:"command"`
	// Args are its arguments, passed as they are.
	Args []string `yaml:"args"`
	// Env adds K=V entries to the environment, which is the agent's own
	// without its PERISCOPE_* variables (they hold the agent's token).
	Env []string `yaml:"env"`
	// Dir is the working directory (absolute; the agent's when empty).
	Dir string `yaml:"dir"`
	// Replicas is how many processes run (0: 1). Each gets
	// PERISCOPE_REPLICA=<index>.
	Replicas int `yaml:"replicas"`
	// Port, when set, is the first replica's port: replica i gets
	// PORT=<Port+i>, and "{port}" in a readiness target is replaced by it.
	Port int `yaml:"port"`
	// Restart is the restart policy (empty: always).
	Restart RestartPolicy `yaml:"restart"`
	// Backoff paces restarts.
	Backoff Backoff `yaml:"backoff"`
	// Readiness, when it names a target, is probed while a replica runs; a
	// replica without one is ready as soon as it runs.
	Readiness Readiness `yaml:"readiness"`
	// StopTimeout is how long a replica has to exit after SIGTERM before its
	// process group is killed (0: 10 s).
	StopTimeout time.Duration `yaml:"stop_timeout"`
}

// Backoff is the wait before restarting a replica: Initial after the first
// exit, doubling up to Max with up to a quarter taken off at random, and back to
// Initial after a run that lasted at least Reset.
type Backoff struct {
	Initial time.Duration `yaml:"initial"`
	Max     time.Duration `yaml:"max"`
	Reset   time.Duration `yaml:"reset"`
}

// Readiness is a replica's readiness probe: an HTTP GET answered 2xx or 3xx,
// or a TCP connection accepted, every Period, each within Timeout; a replica is
// not ready after FailureThreshold failures in a row. In HTTP and TCP,
// "{port}" is the replica's port (Workload.Port + index) and "{replica}" its
// index.
type Readiness struct {
	// HTTP is a URL such as "http://127.0.0.1:{port}/healthz".
	HTTP string `yaml:"http"`
	// TCP is a host:port such as "127.0.0.1:{port}".
	TCP              string        `yaml:"tcp"`
	Period           time.Duration `yaml:"period"`
	Timeout          time.Duration `yaml:"timeout"`
	FailureThreshold int           `yaml:"failure_threshold"`
}

// Validate reports every problem of c, each naming its field.
func (c Config) Validate() error {
	var errs []error
	if len(c.Workloads) > MaxWorkloads {
		errs = append(errs, fmt.Errorf("workloads: more than %d", MaxWorkloads))
	}
	seen := make(map[string]bool, len(c.Workloads))
	for i, w := range c.Workloads {
		if err := w.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("workloads[%d]: %w", i, err))
		}
		if seen[w.Name] {
			errs = append(errs, fmt.Errorf("workloads[%d]: name: duplicate %q", i, w.Name))
		}
		seen[w.Name] = true
	}
	return errors.Join(errs...)
}

// Validate reports every problem of w, each naming its field.
func (w Workload) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("workload %q: %s: %s", w.Name, field, fmt.Sprintf(format, a...)))
	}
	switch {
	case w.Name == "":
		bad("name", "required")
	case len(w.Name) > MaxNameLen:
		bad("name", "longer than %d bytes", MaxNameLen)
	case strings.IndexFunc(w.Name, func(r rune) bool { return !nameRune(r) }) >= 0:
		bad("name", "only letters, digits, '.', '_' and '-'")
	}
	switch {
	case w.Command == "":
		bad("command", "required")
	case !filepath.IsAbs(w.Command):
		bad("command", "must be an absolute path (no shell, no PATH lookup), not %q", w.Command)
	case len(w.Command) > MaxArgLen:
		bad("command", "longer than %d bytes", MaxArgLen)
	}
	if len(w.Args) > MaxArgs {
		bad("args", "more than %d", MaxArgs)
	}
	for i, a := range w.Args {
		if len(a) > MaxArgLen || strings.IndexByte(a, 0) >= 0 {
			bad(fmt.Sprintf("args[%d]", i), "longer than %d bytes or holds a NUL", MaxArgLen)
		}
	}
	if len(w.Env) > MaxArgs {
		bad("env", "more than %d", MaxArgs)
	}
	for i, kv := range w.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || len(kv) > MaxArgLen || strings.IndexByte(kv, 0) >= 0 {
			bad(fmt.Sprintf("env[%d]", i), "want K=V within %d bytes", MaxArgLen)
		}
	}
	if w.Dir != "" && (!filepath.IsAbs(w.Dir) || len(w.Dir) > MaxArgLen) {
		bad("dir", "must be an absolute path")
	}
	if w.Replicas < 0 || w.Replicas > MaxReplicas {
		bad("replicas", "must be between 0 and %d", MaxReplicas)
	}
	if w.Port < 0 || w.Port+max(w.Replicas, 1)-1 > 65535 {
		bad("port", "replicas' ports must be between 1 and 65535")
	}
	switch w.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		bad("restart", "want always, on-failure or never, not %q", w.Restart)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"backoff.initial", w.Backoff.Initial}, {"backoff.max", w.Backoff.Max}, {"backoff.reset", w.Backoff.Reset},
		{"readiness.period", w.Readiness.Period}, {"readiness.timeout", w.Readiness.Timeout}, {"stop_timeout", w.StopTimeout},
	} {
		if d.v < 0 {
			bad(d.field, "negative")
		}
	}
	if w.Backoff.Max > 0 && w.Backoff.Initial > w.Backoff.Max {
		bad("backoff.initial", "longer than backoff.max")
	}
	r := w.Readiness
	if r.HTTP != "" && r.TCP != "" {
		bad("readiness", "http and tcp are exclusive")
	}
	placeholders := strings.Contains(r.HTTP+r.TCP, "{port}")
	if placeholders && w.Port == 0 {
		bad("readiness", "{port} needs port")
	}
	if r.HTTP != "" {
		u, err := url.Parse(expand(r.HTTP, 0, 1))
		switch {
		case len(r.HTTP) > MaxArgLen:
			bad("readiness.http", "longer than %d bytes", MaxArgLen)
		case err != nil:
			bad("readiness.http", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			bad("readiness.http", "want an http or https URL with a host, not %q", r.HTTP)
		}
	}
	if r.TCP != "" {
		if _, _, err := net.SplitHostPort(expand(r.TCP, 0, 1)); err != nil || len(r.TCP) > MaxArgLen {
			bad("readiness.tcp", "want host:port: %v", err)
		}
	}
	if r.FailureThreshold < 0 || r.FailureThreshold > 1000 {
		bad("readiness.failure_threshold", "must be between 0 and 1000")
	}
	return errors.Join(errs...)
}

func nameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// withDefaults returns w with its zero values replaced by the defaults.
func (w Workload) withDefaults() Workload {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if w.Replicas == 0 {
		w.Replicas = DefaultReplicas
	}
	if w.Restart == "" {
		w.Restart = RestartAlways
	}
	def(&w.Backoff.Initial, DefaultInitialBackoff)
	def(&w.Backoff.Max, max(DefaultMaxBackoff, w.Backoff.Initial))
	def(&w.Backoff.Reset, DefaultBackoffReset)
	def(&w.StopTimeout, DefaultStopTimeout)
	def(&w.Readiness.Period, DefaultProbePeriod)
	def(&w.Readiness.Timeout, DefaultProbeTimeout)
	if w.Readiness.FailureThreshold == 0 {
		w.Readiness.FailureThreshold = DefaultFailureThreshold
	}
	return w
}

// expand fills a readiness target's placeholders for replica index of a
// workload whose first port is port.
func expand(s string, index, port int) string {
	return strings.NewReplacer("{port}", fmt.Sprint(port+index), "{replica}", fmt.Sprint(index)).Replace(s)
}
