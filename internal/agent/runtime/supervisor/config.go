package supervisor

import (
	"time"

	"github.com/periscope-dev/periscope/internal/config"
)

// The manifest's types and bounds live in internal/config, where the agent's
// configuration file (runtime.workloads) is read and validated; these aliases
// keep the supervisor's own names.
type (
	// Workload is one program the supervisor runs (config.Workload).
	Workload = config.Workload
	// Backoff paces a workload's restarts (config.WorkloadBackoff).
	Backoff = config.WorkloadBackoff
	// Readiness is a replica's readiness probe (config.WorkloadReadiness).
	Readiness = config.WorkloadReadiness
	// RestartPolicy says when an exited replica is started again (config.WorkloadRestart).
	RestartPolicy = config.WorkloadRestart
)

// The restart policies, as config defines them.
const (
	RestartAlways    = config.RestartAlways
	RestartOnFailure = config.RestartOnFailure
	RestartNever     = config.RestartNever
)

// Bounds on a Config, as config defines them.
const (
	MaxWorkloads = config.MaxWorkloads
	MaxReplicas  = config.MaxWorkloadReplicas
	MaxNameLen   = config.MaxWorkloadNameLen
	MaxArgs      = config.MaxWorkloadArgs
	MaxArgLen    = config.MaxWorkloadArgLen
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

// Config is the manifest of the workloads the supervisor runs: the agent's
// runtime.workloads.
type Config struct {
	Workloads []Workload `yaml:"workloads"`
}

// Validate reports every problem of c, each naming its field
// (workloads[1].command).
func (c Config) Validate() error { return config.ValidateWorkloads("workloads", c.Workloads) }

// withDefaults returns w with its zero values replaced by the defaults.
func withDefaults(w Workload) Workload {
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
