package docker

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers"
	"github.com/periscope-dev/periscope/internal/config"
)

// State is what the engine says of one container, as the source reports it.
type State struct {
	ID    string
	Name  string
	Image string
	// Status is the engine's: created, running, paused, restarting, removing,
	// exited or dead.
	Status string
	// Health is the health check's status (starting, healthy, unhealthy), ""
	// when the container has no health check.
	Health string
	// HealthOutput is the last health check's output, when it failed.
	HealthOutput string
	Restarts     int64
	ExitCode     int64
	OOMKilled    bool
	// Error is the engine's error for the container ("starting container
	// process caused: …").
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	// RestartPolicy is the container's (no, always, unless-stopped,
	// on-failure).
	RestartPolicy string
	// Tty means its log is one raw stream rather than framed.
	Tty bool
	// Lines are its last log lines, redacted; read only when it is not
	// healthy.
	Lines []string
}

// inspected is the inspect answer, the fields used (Docker Engine API,
// ContainerInspect).
type inspected struct {
	ID           string `json:"Id"`
	Name         string `json:"Name"`
	RestartCount int64  `json:"RestartCount"`
	State        struct {
		Status     string `json:"Status"`
		Running    bool   `json:"Running"`
		Restarting bool   `json:"Restarting"`
		OOMKilled  bool   `json:"OOMKilled"`
		ExitCode   int64  `json:"ExitCode"`
		Error      string `json:"Error"`
		StartedAt  string `json:"StartedAt"`
		FinishedAt string `json:"FinishedAt"`
		Health     *struct {
			Status string `json:"Status"`
			Log    []struct {
				ExitCode int64  `json:"ExitCode"`
				Output   string `json:"Output"`
			} `json:"Log"`
		} `json:"Health"`
	} `json:"State"`
	Config struct {
		Image string `json:"Image"`
		Tty   bool   `json:"Tty"`
	} `json:"Config"`
	HostConfig struct {
		RestartPolicy struct {
			Name string `json:"Name"`
		} `json:"RestartPolicy"`
	} `json:"HostConfig"`
}

// decodeInspect decodes an inspect answer; every string kept is bounded, since
// it becomes an attribute or a last error.
func decodeInspect(body []byte) (State, error) {
	var in inspected
	if err := json.Unmarshal(body, &in); err != nil {
		return State{}, fmt.Errorf("docker engine: inspect: %w", err)
	}
	if !validID(in.ID) {
		return State{}, fmt.Errorf("docker engine: inspect: bad container id %q", runtime.Bounded(in.ID, 80))
	}
	b := func(s string) string { return runtime.Bounded(strings.ToValidUTF8(s, "\uFFFD"), config.MaxAttrLen) }
	st := State{
		ID: b(in.ID), Name: b(strings.TrimPrefix(in.Name, "/")), Image: b(in.Config.Image),
		Status: b(in.State.Status), Restarts: max(in.RestartCount, 0), ExitCode: in.State.ExitCode,
		OOMKilled: in.State.OOMKilled, Error: b(in.State.Error), RestartPolicy: b(in.HostConfig.RestartPolicy.Name),
		Tty: in.Config.Tty, StartedAt: engineTime(in.State.StartedAt), FinishedAt: engineTime(in.State.FinishedAt),
	}
	if st.Name == "" {
		st.Name = st.ID[:min(12, len(st.ID))]
	}
	if h := in.State.Health; h != nil && h.Status != "none" {
		st.Health = b(h.Status)
		if n := len(h.Log); n > 0 && h.Log[n-1].ExitCode != 0 {
			st.HealthOutput = b(strings.TrimSpace(h.Log[n-1].Output))
		}
	}
	return st, nil
}

// engineTime parses an engine's timestamp; the zero time it writes for "never"
// ("0001-01-01T00:00:00Z") and anything unreadable are the zero time.
func engineTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// Completed reports a container that exited 0 and that its restart policy
// does not start again: a one-shot job that did its work.
func (s State) Completed() bool {
	return s.Status == "exited" && s.ExitCode == 0 && s.RestartPolicy != "always" && s.RestartPolicy != "unless-stopped"
}

// Up reports a running container (a paused one is not).
func (s State) Up() bool { return s.Status == "running" }

// Ready reports a running container whose health check passes, or that has
// none.
func (s State) Ready() bool { return s.Up() && (s.Health == "" || s.Health == "healthy") }

// Healthy reports a container the deployment can count on: running and not
// failing its health check (one still "starting" it is), or completed.
func (s State) Healthy() bool { return s.Up() && s.Health != "unhealthy" || s.Completed() }

// StatusWord is the container's status as its component says it: the
// engine's status, with the health check's when it has one, or "completed".
func (s State) StatusWord() string {
	switch {
	case s.Completed():
		return "completed"
	case s.Status == "exited":
		return "exited (" + strconv.FormatInt(s.ExitCode, 10) + ")"
	case s.Up() && s.Health != "":
		return "running (" + s.Health + ")"
	}
	return s.Status
}

// Component is the container's health as the Collector reports it: "container
// NAME", with the exit reason and its last log lines as the last error.
func (s State) Component(now time.Time) runtime.Component {
	c := runtime.Component{Name: "container " + s.Name, Healthy: s.Healthy(), Status: s.StatusWord(), Restarts: s.Restarts, Since: s.since(now)}
	if !c.Healthy {
		c.LastError = runtime.LastError(s.reason(), s.Lines, containers.MaxLastError)
	}
	return c
}

// since is when it entered its present state, as far as the engine says.
func (s State) since(now time.Time) time.Time {
	t := s.StartedAt
	if !s.Up() && !s.FinishedAt.IsZero() {
		t = s.FinishedAt
	}
	if t.IsZero() || t.After(now) {
		return now
	}
	return t
}

// reason says why the container is not healthy, in one line.
func (s State) reason() string {
	var parts []string
	switch {
	case s.Status == "exited" || s.Status == "restarting" || s.Status == "dead":
		r := "exit code " + strconv.FormatInt(s.ExitCode, 10)
		if s.OOMKilled {
			r += " (OOM killed)"
		}
		parts = append(parts, r)
	case s.Health == "unhealthy":
		r := "health check failing"
		if s.HealthOutput != "" {
			r += ": " + s.HealthOutput
		}
		parts = append(parts, r)
	default:
		parts = append(parts, s.Status)
	}
	if s.Error != "" {
		parts = append(parts, s.Error)
	}
	return strings.Join(parts, "; ")
}

// write appends the containers' figures to ms.
func write(ms pmetric.MetricSlice, now time.Time, states []State) {
	if len(states) == 0 {
		return
	}
	up := runtime.Gauge(ms, containers.MetricUp, "1", "Whether the container is running (1) or not (0).")
	ready := runtime.Gauge(ms, containers.MetricReady, "1", "Whether the container is running and passes its health check, or has none (1), or not (0).")
	restarts := runtime.Sum(ms, containers.MetricRestarts, "{restart}", "Times the platform restarted the container, as it counts them.", false)
	var exits pmetric.NumberDataPointSlice
	anyExit := false
	for _, s := range states {
		kv := []string{AttrID, s.ID, AttrName, s.Name, AttrImage, s.Image}
		runtime.Point(up, now, b2i(s.Up()), append(kv, containers.AttrState, s.Status)...)
		health := s.Health
		if health == "" {
			health = "none"
		}
		runtime.Point(ready, now, b2i(s.Ready()), append(kv, containers.AttrHealth, health)...)
		runtime.Point(restarts, now, s.Restarts, kv...)
		if !s.FinishedAt.IsZero() {
			if !anyExit {
				anyExit = true
				exits = runtime.Gauge(ms, containers.MetricLastExitCode, "1", "The container's last exit code; only once it has exited.")
			}
			runtime.Point(exits, now, s.ExitCode, kv...)
		}
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
