package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Bounds on the workloads block, so that a manifest cannot make the agent's
// memory, its process count or its metrics' cardinality unbounded.
const (
	// MaxWorkloads bounds runtime.workloads.
	MaxWorkloads = 64
	// MaxWorkloadReplicas bounds Workload.Replicas.
	MaxWorkloadReplicas = 64
	// MaxWorkloadNameLen bounds a workload's name, in bytes.
	MaxWorkloadNameLen = 64
	// MaxWorkloadArgs bounds Workload.Args and Workload.Env, each.
	MaxWorkloadArgs = 256
	// MaxWorkloadArgLen bounds one argument, environment entry, path or probe
	// target, in bytes.
	MaxWorkloadArgLen = 4096
)

// WorkloadRestart says when an exited replica is started again.
type WorkloadRestart string

// The restart policies; the empty policy is RestartAlways.
const (
	// RestartAlways restarts a replica whatever its exit.
	RestartAlways WorkloadRestart = "always"
	// RestartOnFailure restarts a replica that exited non-zero, was killed by
	// a signal or could not start; one that exited 0 has completed.
	RestartOnFailure WorkloadRestart = "on-failure"
	// RestartNever leaves every exited replica as it ended.
	RestartNever WorkloadRestart = "never"
)

// Workload is one program the agent runs as Replicas processes, each in a
// process group of its own, never through a shell (runtime.workloads).
// Durations are Go duration strings ("500ms", "1m").
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
	Restart WorkloadRestart `yaml:"restart"`
	// Backoff paces restarts.
	Backoff WorkloadBackoff `yaml:"backoff"`
	// Readiness, when it names a target, is probed while a replica runs; a
	// replica without one is ready as soon as it runs.
	Readiness WorkloadReadiness `yaml:"readiness"`
	// StopTimeout is how long a replica has to exit after SIGTERM before its
	// process group is killed (0: 10 s).
	StopTimeout time.Duration `yaml:"stop_timeout"`
}

// WorkloadBackoff is the wait before restarting a replica: Initial after the
// first exit, doubling up to Max with up to a quarter taken off at random, and
// back to Initial after a run that lasted at least Reset.
type WorkloadBackoff struct {
	Initial time.Duration `yaml:"initial"`
	Max     time.Duration `yaml:"max"`
	Reset   time.Duration `yaml:"reset"`
}

// WorkloadReadiness is a replica's readiness probe: an HTTP GET answered 2xx
// or 3xx, or a TCP connection accepted, every Period, each within Timeout; a
// replica is not ready after FailureThreshold failures in a row. In HTTP and
// TCP, "{port}" is the replica's port (Workload.Port + index) and "{replica}"
// its index.
type WorkloadReadiness struct {
	// HTTP is a URL such as "http://127.0.0.1:{port}/healthz".
	HTTP string `yaml:"http"`
	// TCP is a host:port such as "127.0.0.1:{port}".
	TCP              string        `yaml:"tcp"`
	Period           time.Duration `yaml:"period"`
	Timeout          time.Duration `yaml:"timeout"`
	FailureThreshold int           `yaml:"failure_threshold"`
}

// ExpandWorkloadTarget fills a readiness target's placeholders for replica
// index of a workload whose first port is port.
func ExpandWorkloadTarget(s string, index, port int) string {
	return strings.NewReplacer("{port}", fmt.Sprint(port+index), "{replica}", fmt.Sprint(index)).Replace(s)
}

// ValidateWorkloads reports every problem of a workloads list under field
// (runtime.workloads), each naming its field: runtime.workloads[1].command.
func ValidateWorkloads(field string, ws []Workload) error {
	var errs []error
	if len(ws) > MaxWorkloads {
		errs = append(errs, fmt.Errorf("%s: %d workloads, at most %d", field, len(ws), MaxWorkloads))
	}
	seen := make(map[string]bool, len(ws))
	for i, w := range ws {
		f := fmt.Sprintf("%s[%d]", field, i)
		errs = append(errs, w.Validate(f))
		if seen[w.Name] {
			errs = append(errs, fmt.Errorf("%s.name: duplicate %q", f, clip(w.Name, MaxWorkloadNameLen)))
		}
		seen[w.Name] = true
	}
	return errors.Join(errs...)
}

// Validate reports every problem of w under field (runtime.workloads[1]),
// each naming its field.
func (w Workload) Validate(field string) error {
	var errs []error
	bad := func(f, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, f, fmt.Sprintf(format, a...)))
	}
	switch {
	case w.Name == "":
		bad("name", "required")
	case len(w.Name) > MaxWorkloadNameLen:
		bad("name", "longer than %d bytes", MaxWorkloadNameLen)
	case strings.IndexFunc(w.Name, func(r rune) bool { return !workloadNameRune(r) }) >= 0:
		bad("name", "%q: only letters, digits, '.', '_' and '-'", w.Name)
	}
	switch {
	case w.Command == "":
		bad("command", "required")
	case len(w.Command) > MaxWorkloadArgLen:
		bad("command", "longer than %d bytes", MaxWorkloadArgLen)
	case !filepath.IsAbs(w.Command):
		bad("command", "must be an absolute path (no shell, no PATH lookup), not %q", w.Command)
	}
	if len(w.Args) > MaxWorkloadArgs {
		bad("args", "more than %d", MaxWorkloadArgs)
	}
	for i, a := range w.Args {
		if len(a) > MaxWorkloadArgLen || strings.IndexByte(a, 0) >= 0 {
			bad(fmt.Sprintf("args[%d]", i), "longer than %d bytes or holds a NUL", MaxWorkloadArgLen)
		}
	}
	if len(w.Env) > MaxWorkloadArgs {
		bad("env", "more than %d", MaxWorkloadArgs)
	}
	for i, kv := range w.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || len(kv) > MaxWorkloadArgLen || strings.IndexByte(kv, 0) >= 0 {
			bad(fmt.Sprintf("env[%d]", i), "want K=V within %d bytes", MaxWorkloadArgLen)
		}
	}
	if w.Dir != "" && (!filepath.IsAbs(w.Dir) || len(w.Dir) > MaxWorkloadArgLen) {
		bad("dir", "must be an absolute path")
	}
	if w.Replicas < 0 || w.Replicas > MaxWorkloadReplicas {
		bad("replicas", "must be between 0 and %d", MaxWorkloadReplicas)
	}
	if w.Port < 0 || w.Port+max(w.Replicas, 1)-1 > 65535 {
		bad("port", "replicas' ports must be between 1 and 65535")
	}
	switch w.Restart {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		bad("restart", "want always, on-failure or never, not %q", clip(string(w.Restart), 64))
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
	if strings.Contains(r.HTTP+r.TCP, "{port}") && w.Port == 0 {
		bad("readiness", "{port} needs port")
	}
	if r.HTTP != "" {
		u, err := url.Parse(ExpandWorkloadTarget(r.HTTP, 0, 1))
		switch {
		case len(r.HTTP) > MaxWorkloadArgLen:
			bad("readiness.http", "longer than %d bytes", MaxWorkloadArgLen)
		case err != nil:
			bad("readiness.http", "%v", err)
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			bad("readiness.http", "want an http or https URL with a host, not %q", r.HTTP)
		}
	}
	if r.TCP != "" {
		if _, _, err := net.SplitHostPort(ExpandWorkloadTarget(r.TCP, 0, 1)); err != nil || len(r.TCP) > MaxWorkloadArgLen {
			bad("readiness.tcp", "want host:port: %v", err)
		}
	}
	if r.FailureThreshold < 0 || r.FailureThreshold > 1000 {
		bad("readiness.failure_threshold", "must be between 0 and 1000")
	}
	return errors.Join(errs...)
}

func workloadNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}
