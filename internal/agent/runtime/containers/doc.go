// Package containers holds the runtime sources that watch containers run by
// a platform rather than by the agent: a Docker-compatible engine through its
// API socket (containers/docker) and Kubernetes pods through client-go
// (containers/kube). Each is a runtime.Watcher whose containers are
// components, like the supervisor's replicas; their metrics share the names
// here.
package containers

// Metric and attribute names both container sources use where the OpenTelemetry
// semantic conventions have none (docs/signals.md, "Containers").
const (
	MetricUp           = "periscope.container.up"
	MetricReady        = "periscope.container.ready"
	MetricRestarts     = "periscope.container.restarts"
	MetricLastExitCode = "periscope.container.last_exit_code"

	AttrState  = "periscope.container.state"
	AttrHealth = "periscope.container.health"
)

// MaxLastError bounds a container's last error, in bytes, so that with its
// status and restart count it fits the runtime Collector's
// runtime.MaxErrorBytes whole (as the supervisor's replicas do).
const MaxLastError = 448

// MaxContainers bounds the containers one source watches: each is a few
// series and a component, and a source matching thousands is a mistake in
// its labels or selector. Past it the first by name are kept and the
// collection reports the cut as its error.
const MaxContainers = 200
