// Package config is the manager's and the agent's configuration as plain data:
// defaults from a function, a YAML file over them, PERISCOPE_* environment
// variables over that, and flags (mapped in cmd) over everything. Validate reports
// every problem at once, each with its field path.
package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/thresholds"
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

// ByteSize is a size in bytes, written as a number or with a unit ("512MiB", "2GiB",
// "100MB", "64KiB").
type ByteSize int64

// ParseByteSize parses a size as ByteSize's YAML form.
func ParseByteSize(v string) (ByteSize, error) {
	v = strings.TrimSpace(v)
	num := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(v[len(num):])
	n, err := strconv.ParseInt(num, 10, 64)
	mult, ok := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if err != nil || !ok || n < 0 {
		return 0, fmt.Errorf("%q is not a size like 512MiB or 2GiB", v)
	}
	if n > math.MaxInt64/mult {
		// Multiplying would wrap around to some other size, maybe a plausible one.
		return 0, fmt.Errorf("%q is too large a size (at most 8EiB)", v)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML parses a size with an optional unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// Queue bounds a durable on-disk queue.
type Queue struct {
	// MaxBytes bounds what one queue keeps on disk.
	MaxBytes ByteSize `yaml:"max_bytes" env:"MAX_BYTES"`
	// MaxAge drops records older than this before sending (0 keeps them until sent).
	MaxAge Duration `yaml:"max_age" env:"MAX_AGE"`
	// OnFull is refuse (senders get 429 and retry; nothing acknowledged is lost) or
	// drop_oldest (the oldest records make room, counted as dropped).
	OnFull string `yaml:"on_full" env:"ON_FULL"`
	// Sync makes every acknowledged write reach the disk (fsync) before the sender
	// is answered, surviving power loss and not only a crash of the process.
	Sync bool `yaml:"sync" env:"SYNC"`
}

func (q Queue) validate(field string) error {
	var errs []error
	if q.MaxBytes <= 0 {
		errs = append(errs, fmt.Errorf("%s.max_bytes: must be positive", field))
	}
	if q.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("%s.max_age: must not be negative", field))
	}
	if q.OnFull != "refuse" && q.OnFull != "drop_oldest" {
		errs = append(errs, fmt.Errorf("%s.on_full: %q must be refuse or drop_oldest", field, q.OnFull))
	}
	return errors.Join(errs...)
}

func validAddr(field, addr string, offAllowed bool) error {
	if offAllowed && addr == "off" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		if offAllowed {
			return fmt.Errorf("%s: %q is not host:port or off", field, addr)
		}
		return fmt.Errorf("%s: %q is not host:port", field, addr)
	}
	return nil
}

// Manager is the manager's configuration.
type Manager struct {
	// Listen is the one HTTP address for dashboard, API, OpAMP and ingest.
	Listen string `yaml:"listen" env:"LISTEN"`
	// TLS, when it names a certificate, makes every listener (Listen and
	// OTLPGRPC) serve TLS only.
	TLS ServerTLS `yaml:"tls" env:"TLS_"`
	// DataDir holds the embedded database, the telemetry store and the
	// exporters' queues.
	DataDir string `yaml:"data_dir" env:"DATA_DIR"`
	// Storage is where the fleet store (deployments, releases, pins, tokens,
	// audit log, notifications, commands, rollouts, sessions) and the
	// telemetry window live: empty for the embedded stores in DataDir, or a
	// postgres:// URL of a PostgreSQL database, which several manager replicas
	// may share; DataDir then keeps only the exporters' queues and delivered
	// positions.
	Storage string `yaml:"storage" env:"STORAGE"`
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
	// Notifications POSTs deployments' status changes to webhooks.
	Notifications Notifications `yaml:"notifications" env:"NOTIFICATIONS_"`

	// OTLPGRPC, when set, also takes deployments' telemetry over OTLP/gRPC on this
	// address; OTLP/HTTP is always served on Listen.
	OTLPGRPC string `yaml:"otlp_grpc" env:"OTLP_GRPC"`
	// MaxRequestBytes bounds one telemetry request, compressed or not (413 beyond).
	MaxRequestBytes ByteSize `yaml:"max_request_bytes" env:"MAX_REQUEST_BYTES"`
	// MaxConcurrentRequests bounds telemetry requests in progress (429 beyond), which
	// with MaxRequestBytes bounds the memory ingest can hold; 0 means no bound.
	MaxConcurrentRequests int `yaml:"max_concurrent_requests" env:"MAX_CONCURRENT_REQUESTS"`
	// MaxOpAMPMessageBytes bounds one OpAMP message from an agent, after
	// decompression: 413 for a larger polling request, close code 1009 for a
	// larger WebSocket message.
	MaxOpAMPMessageBytes ByteSize `yaml:"max_opamp_message_bytes" env:"MAX_OPAMP_MESSAGE_BYTES"`
	// Exporters are the vendor's existing backends every accepted batch goes to.
	Exporters []Exporter `yaml:"exporters"`
	// ExportQueue bounds each exporter's disk queue (under DataDir/exporters).
	ExportQueue Queue `yaml:"export_queue" env:"EXPORT_QUEUE_"`
	// TelemetryStore bounds the operational telemetry window kept for queries.
	TelemetryStore TelemetryStore `yaml:"telemetry_store" env:"TELEMETRY_STORE_"`
	// Regression says when a deployment's new release counts as clearly worse
	// than its previous one, which turns it unhealthy.
	Regression Regression `yaml:"regression" env:"REGRESSION_"`
	// Redaction is the vendor's redaction policy, sent to every agent over OpAMP. An
	// agent runs the stricter of it and its customer's own policy, so it can only add
	// protection; unset, agents run the safe default.
	Redaction redactpolicy.Policy `yaml:"redaction"`
	// Thresholds are the runtime thresholds of deployments that have none of
	// their own (set through the API): per customer, else for the whole fleet.
	Thresholds thresholds.Defaults `yaml:"thresholds"`
	// Audit configures the manager's audit log.
	Audit Audit `yaml:"audit" env:"AUDIT_"`
	// Rollouts are the stacks' progressive rollout plans and the customers'
	// update windows.
	Rollouts Rollouts `yaml:"rollouts" env:"ROLLOUTS_"`
}

// Rollouts configures progressive rollouts: per stack, ordered waves with bake
// times and gates, and the update windows of customers and deployments. A
// stack without a plan takes each new release everywhere at once. Plans and
// windows have no PERISCOPE_* form: set them in the file.
type Rollouts struct {
	// CheckEvery is how often rollouts are evaluated: waves opened, gates checked.
	CheckEvery Duration `yaml:"check_every" env:"CHECK_EVERY"`
	// Plans are the stacks' rollout plans (the API can replace them).
	Plans []rolloutplan.Plan `yaml:"plans"`
	// Windows are the customers' and deployments' update windows (the API
	// can replace an owner's: its entry replaces this one for that owner).
	Windows rolloutplan.WindowSet `yaml:"windows"`
}

// Plan is the rollouts section as the rollout engine takes it.
func (r Rollouts) Plan() rolloutplan.Config {
	return rolloutplan.Config{Plans: r.Plans, Windows: r.Windows}
}

func (r Rollouts) validate() error {
	var errs []error
	if r.CheckEvery <= 0 {
		errs = append(errs, fmt.Errorf("rollouts.check_every: must be positive, got %s", time.Duration(r.CheckEvery)))
	}
	errs = append(errs, thresholds.Prefixed("rollouts.", r.Plan().Validate()))
	return errors.Join(errs...)
}

// Audit configures the audit log of operator actions, which no API changes or
// deletes.
type Audit struct {
	// Retention is how long an entry is kept; older ones are removed hourly.
	Retention Duration `yaml:"retention" env:"RETENTION"`
}

// MinAuditRetention is the shortest audit retention accepted: shorter would let
// the log lose an incident's trail before anyone looks at it.
const MinAuditRetention = 24 * time.Hour

// Regression configures "unhealthy after release" detection. A release regressed
// when both releases served at least MinRequests requests and its error rate or
// its p95 latency rose past both the absolute and the relative threshold.
type Regression struct {
	// MinRequests is the least number of requests each release needs.
	MinRequests int `yaml:"min_requests" env:"MIN_REQUESTS"`
	// ErrorRateIncrease is the least absolute rise in error rate (0.05 = five points).
	ErrorRateIncrease float64 `yaml:"error_rate_increase" env:"ERROR_RATE_INCREASE"`
	// ErrorRateRatio is the least factor by which the error rate rose.
	ErrorRateRatio float64 `yaml:"error_rate_ratio" env:"ERROR_RATE_RATIO"`
	// P95Increase is the least rise in p95 latency.
	P95Increase Duration `yaml:"p95_increase" env:"P95_INCREASE"`
	// P95Ratio is the least factor by which p95 latency rose.
	P95Ratio float64 `yaml:"p95_ratio" env:"P95_RATIO"`
	// Window is how much of each release is compared: the new release's first
	// Window against the previous release's last.
	Window Duration `yaml:"window" env:"WINDOW"`
	// CheckEvery is how often the fleet is checked.
	CheckEvery Duration `yaml:"check_every" env:"CHECK_EVERY"`
}

// TelemetryStore configures the manager's operational telemetry window
// (DataDir/telemetry.duckdb, or PostgreSQL with Storage). Full-fidelity
// telemetry belongs in the exporters' backends.
type TelemetryStore struct {
	// MaxAge drops records older than this.
	MaxAge Duration `yaml:"max_age" env:"MAX_AGE"`
	// MaxBytes bounds the data the window keeps; the oldest records go first.
	MaxBytes ByteSize `yaml:"max_bytes" env:"MAX_BYTES"`
	// MemoryLimit bounds the embedded database's memory, e.g. "2GB" ("" means
	// DuckDB's default, 80% of RAM).
	MemoryLimit string `yaml:"memory_limit" env:"MEMORY_LIMIT"`
	// PartitionWidth is the time range of one partition of the telemetry
	// tables on PostgreSQL (storage: postgres://…): a whole number of hours
	// that divides a day. Narrower partitions let retention drop data sooner,
	// at the cost of more tables. The embedded store ignores it.
	PartitionWidth Duration `yaml:"partition_width" env:"PARTITION_WIDTH"`
}

func (r Regression) validate() error {
	var errs []error
	if r.MinRequests < 1 {
		errs = append(errs, errors.New("regression.min_requests: must be at least 1"))
	}
	if r.ErrorRateIncrease <= 0 || r.ErrorRateIncrease > 1 {
		errs = append(errs, fmt.Errorf("regression.error_rate_increase: %g is not a rate rise between 0 and 1 (0.05 = five points)", r.ErrorRateIncrease))
	}
	if r.ErrorRateRatio < 1 || r.P95Ratio < 1 {
		errs = append(errs, errors.New("regression.error_rate_ratio and p95_ratio: must be at least 1 (a factor of worsening)"))
	}
	if r.P95Increase <= 0 || r.Window <= 0 || r.CheckEvery <= 0 {
		errs = append(errs, errors.New("regression.p95_increase, window and check_every: must be positive"))
	}
	return errors.Join(errs...)
}

// DefaultManager returns the manager defaults.
func DefaultManager() Manager {
	return Manager{Listen: "127.0.0.1:7070", DataDir: "./periscope-data", HeartbeatInterval: Duration(30 * time.Second), LogLevel: "info",
		MaxRequestBytes: 16 << 20, MaxConcurrentRequests: 64, MaxOpAMPMessageBytes: 4 << 20,
		Notifications:  DefaultNotifications(),
		ExportQueue:    Queue{MaxBytes: 1 << 30, MaxAge: Duration(24 * time.Hour), OnFull: "drop_oldest"},
		TelemetryStore: TelemetryStore{MaxAge: Duration(7 * 24 * time.Hour), MaxBytes: 10 << 30, PartitionWidth: Duration(24 * time.Hour)},
		Regression: Regression{MinRequests: 20, ErrorRateIncrease: 0.05, ErrorRateRatio: 2, P95Increase: Duration(100 * time.Millisecond),
			P95Ratio: 1.5, Window: Duration(30 * time.Minute), CheckEvery: Duration(30 * time.Second)},
		Audit:    Audit{Retention: Duration(365 * 24 * time.Hour)},
		Rollouts: Rollouts{CheckEvery: Duration(30 * time.Second)}, TLS: ServerTLS{MinVersion: "1.2"}}
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
	errs = append(errs, validStorage(c.Storage))
	errs = append(errs, c.TLS.validate("tls"))
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat_interval: must be positive, got %s", time.Duration(c.HeartbeatInterval)))
	}
	if c.StaleAfter != 0 && c.StaleAfter < c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("stale_after: %s is shorter than heartbeat_interval %s: every deployment would flap to stale",
			time.Duration(c.StaleAfter), time.Duration(c.HeartbeatInterval)))
	}
	errs = append(errs, validLogLevel(c.LogLevel))
	if c.OTLPGRPC != "" {
		errs = append(errs, validAddr("otlp_grpc", c.OTLPGRPC, false))
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, errors.New("max_request_bytes: must be positive"))
	}
	if c.MaxConcurrentRequests < 0 {
		errs = append(errs, errors.New("max_concurrent_requests: must not be negative (0 means no bound)"))
	}
	if c.MaxOpAMPMessageBytes <= 0 {
		errs = append(errs, errors.New("max_opamp_message_bytes: must be positive"))
	}
	errs = append(errs, c.ExportQueue.validate("export_queue"))
	if c.TelemetryStore.MaxAge <= 0 {
		errs = append(errs, errors.New("telemetry_store.max_age: must be positive"))
	}
	if c.TelemetryStore.MaxBytes <= 0 {
		errs = append(errs, errors.New("telemetry_store.max_bytes: must be positive"))
	}
	// The partitions' names and bounds follow the hours of a UTC day (pgtel).
	if w := time.Duration(c.TelemetryStore.PartitionWidth); w < time.Hour || w > 24*time.Hour || w%time.Hour != 0 || (24*time.Hour)%w != 0 {
		errs = append(errs, fmt.Errorf("telemetry_store.partition_width: %s; want whole hours that divide a day, from 1h to 24h (1h, 2h, 3h, 4h, 6h, 8h, 12h, 24h)", w))
	}
	errs = append(errs, c.Regression.validate())
	names := map[string]bool{}
	for i, e := range c.Exporters {
		if err := e.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("exporters[%d]: %w", i, err))
		}
		if names[e.Name] {
			errs = append(errs, fmt.Errorf("exporters[%d]: name %q is used twice", i, e.Name))
		}
		names[e.Name] = true
	}
	errs = append(errs, c.Notifications.validate("notifications"))
	if c.Audit.Retention < Duration(MinAuditRetention) {
		errs = append(errs, fmt.Errorf("audit.retention: %s is shorter than the least of %s", time.Duration(c.Audit.Retention), MinAuditRetention))
	}
	if err := c.Redaction.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("redaction: %w", err))
	}
	if c.Redaction.HashKey != "" {
		errs = append(errs, errors.New("redaction.hash_key: the hash key is the customer's secret; set it in the agent's configuration, not the manager's"))
	}
	errs = append(errs, thresholds.Prefixed("thresholds.", c.Thresholds.Validate()))
	errs = append(errs, c.Rollouts.validate())
	return errors.Join(errs...)
}

// validStorage checks the storage setting without repeating it: the URL may
// hold a password.
func validStorage(s string) error {
	if s == "" {
		return nil
	}
	if _, err := url.Parse(s); err != nil || !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		return errors.New("storage: want a postgres:// URL, or nothing for the embedded store in data_dir")
	}
	return nil
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
	// ManagerTLS is how the agent trusts an https:// manager (and proves
	// itself to one that asks for client certificates): by default the
	// system's CAs and the URL's host name.
	ManagerTLS ClientTLS `yaml:"manager_tls" env:"MANAGER_TLS_"`
	// Token is the deployment token issued when the deployment was created. Its
	// variable is PERISCOPE_AGENT_TOKEN, not the CLI's PERISCOPE_TOKEN: a shell
	// set up for the CLI holds an operator token, which the manager refuses
	// from an agent.
	Token string `yaml:"token" env:"AGENT_TOKEN"`
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

	// OTLPGRPC and OTLPHTTP are where the local application sends OTLP; "off"
	// disables one, and distinct addresses let several agents share a host.
	OTLPGRPC string `yaml:"otlp_grpc" env:"OTLP_GRPC"`
	OTLPHTTP string `yaml:"otlp_http" env:"OTLP_HTTP"`
	// MaxRequestBytes bounds one OTLP request, compressed or not.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes" env:"MAX_REQUEST_BYTES"`
	// Queue bounds each signal's disk queue (under DataDir) between receive and send.
	Queue Queue `yaml:"queue" env:"QUEUE_"`
	// Compression is how telemetry travels to the manager: gzip, zstd or none.
	Compression string `yaml:"compression" env:"COMPRESSION"`
	// SelfMetricsInterval is how often the agent sends its own counters with the
	// deployment's telemetry (0 disables; they stay on the local /metrics).
	SelfMetricsInterval Duration `yaml:"self_metrics_interval" env:"SELF_METRICS_INTERVAL"`
	// MaxProcs caps the CPUs the agent runs on (GOMAXPROCS); 0 means all. One CPU
	// handles well over 100,000 records/s and keeps the agent's footprint in the
	// customer's cloud small, because idle Go threads spinning for work are not free.
	MaxProcs int `yaml:"max_procs" env:"MAX_PROCS"`
	// Update is how the agent applies a release the manager offers; with neither a
	// command nor a webhook the deployment must be redeployed by hand.
	Update AgentUpdate `yaml:"update" env:"UPDATE_"`
	// Redaction is the customer's redaction policy: what the agent removes from
	// telemetry before queueing it. The vendor's policy can make it stricter, never
	// looser; unset, the safe default runs (every detector masks).
	Redaction redactpolicy.Policy `yaml:"redaction"`
	// Commands is the customer's rule for remote commands: unset, every command
	// the release declares may run; {disabled: true} refuses them all; {allow:
	// [name, …]} lets only the named ones run. It always wins over the vendor.
	Commands command.Rule `yaml:"commands"`
	// Runtime is the runtime signals the agent collects itself: queue depth and
	// lag, and the other families of docs/signals.md.
	Runtime Runtime `yaml:"runtime" env:"RUNTIME_"`
}

// AgentUpdate is the vendor's hook that moves a deployment to another release.
type AgentUpdate struct {
	// Command is a Go text/template run with /bin/sh -c, with {{.Release}},
	// {{.PreviousRelease}}, {{.Stack}} and {{.ConfigHash}}; the same values are in
	// its environment as PERISCOPE_DESIRED_RELEASE, PERISCOPE_CURRENT_RELEASE,
	// PERISCOPE_STACK and PERISCOPE_EXPECTED_CONFIG_HASH.
	Command string `yaml:"command" env:"COMMAND"`
	// Webhook is an http(s) URL the agent POSTs the offer to as JSON; any 2xx
	// answer means the release is applied.
	Webhook string `yaml:"webhook" env:"WEBHOOK"`
	// WebhookHeaders are sent with the webhook request. They often hold secrets,
	// so the agent never logs or reports them. A map has no PERISCOPE_* form, as
	// with exporter headers: set them in the file.
	WebhookHeaders map[string]string `yaml:"webhook_headers"`
	// Timeout bounds one run of the hook; a command still running is killed.
	Timeout Duration `yaml:"timeout" env:"TIMEOUT"`
}

// Enabled reports whether a hook is configured, that is whether the agent can
// apply offered releases itself.
func (u AgentUpdate) Enabled() bool { return u.Command != "" || u.Webhook != "" }

func (u AgentUpdate) validate(field string) error {
	var errs []error
	if u.Command != "" && u.Webhook != "" {
		errs = append(errs, fmt.Errorf("%s: set command or webhook, not both", field))
	}
	if u.Command != "" {
		// Running the template against sample values catches a misspelt field
		// now rather than at the first update, when it would fail the rollout.
		t, err := template.New("command").Option("missingkey=error").Parse(u.Command)
		if err == nil {
			sample := struct{ Release, PreviousRelease, Stack, ConfigHash string }{"1.2.3", "1.2.2", "app", "0123456789abcdef"}
			err = t.Execute(io.Discard, sample)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.command: %w", field, err))
		}
	}
	if u.Webhook != "" {
		// The URL is not echoed: CI trigger URLs often carry a token.
		if w, err := url.Parse(u.Webhook); err != nil || (w.Scheme != "http" && w.Scheme != "https") || w.Host == "" {
			errs = append(errs, fmt.Errorf("%s.webhook: is not an http(s) URL", field))
		}
	}
	if len(u.WebhookHeaders) > 0 && u.Webhook == "" {
		errs = append(errs, fmt.Errorf("%s.webhook_headers: set without %s.webhook", field, field))
	}
	if u.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: must be positive, got %s", field, time.Duration(u.Timeout)))
	}
	return errors.Join(errs...)
}

// DefaultAgent returns the agent defaults.
func DefaultAgent() Agent {
	return Agent{Transport: "websocket", DataDir: "./periscope-agent-data", HeartbeatInterval: Duration(30 * time.Second), LogLevel: "info",
		OTLPGRPC: "127.0.0.1:4317", OTLPHTTP: "127.0.0.1:4318", MaxRequestBytes: 16 << 20,
		Queue:       Queue{MaxBytes: 512 << 20, MaxAge: Duration(72 * time.Hour), OnFull: "refuse"},
		Compression: "gzip", SelfMetricsInterval: Duration(time.Minute), MaxProcs: 1,
		Update: AgentUpdate{Timeout: Duration(10 * time.Minute)}, Runtime: DefaultRuntime()}
}

// Validate reports every problem in the configuration.
func (c *Agent) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Manager); c.Manager == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("manager: %q is not an http(s) URL like http://127.0.0.1:7070", c.Manager))
	} else {
		errs = append(errs, c.ManagerTLS.validate("manager_tls", u.Scheme == "https"))
	}
	switch {
	case c.Token == "":
		errs = append(errs, errors.New("token: must be set (the deployment token from 'periscope deployments create', as --token or PERISCOPE_AGENT_TOKEN)"))
	case strings.HasPrefix(c.Token, auth.PrefixAPI):
		errs = append(errs, fmt.Errorf("token: %s… is an operator API token, for the CLI; the agent needs its deployment's %s… token (from 'periscope deployments create')",
			auth.PrefixAPI, auth.PrefixDeployment))
	}
	if c.Transport != "websocket" && c.Transport != "http" {
		errs = append(errs, fmt.Errorf("transport: %q must be websocket or http", c.Transport))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat_interval: must be positive, got %s", time.Duration(c.HeartbeatInterval)))
	}
	errs = append(errs, validLogLevel(c.LogLevel))
	errs = append(errs, validAddr("otlp_grpc", c.OTLPGRPC, true), validAddr("otlp_http", c.OTLPHTTP, true))
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, errors.New("max_request_bytes: must be positive"))
	}
	errs = append(errs, c.Queue.validate("queue"))
	if c.Compression != "gzip" && c.Compression != "zstd" && c.Compression != "none" {
		errs = append(errs, fmt.Errorf("compression: %q must be gzip, zstd or none", c.Compression))
	}
	if c.MaxProcs < 0 {
		errs = append(errs, errors.New("max_procs: must not be negative (0 means all CPUs)"))
	}
	if c.SelfMetricsInterval < 0 {
		errs = append(errs, errors.New("self_metrics_interval: must not be negative"))
	}
	errs = append(errs, c.Update.validate("update"))
	if err := c.Redaction.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("redaction: %w", err))
	}
	if err := c.Commands.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Runtime.validate("runtime"))
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
//
// When the file is readable YAML but has problems (unknown keys, values of the
// wrong type), Load still decodes what it can and applies env, and returns a
// *ProblemsError: the caller applies its flags and passes it to Finish, which
// adds what Validate finds, so one run reports every problem.
func Load(cfg any, path string, env []string) error {
	var problems error
	if path != "" {
		if err := loadFile(cfg, path); err != nil {
			var pe *ProblemsError
			if !errors.As(err, &pe) {
				return err
			}
			problems = err
		}
	}
	if err := applyEnv(cfg, env); err != nil {
		return errors.Join(problems, err)
	}
	return problems
}

// ProblemsError lists every problem found in a configuration, each a line led
// by its line number in the file (when it has one) and its key's path.
type ProblemsError struct {
	// Path is the configuration file ("" when only flags and env were read).
	Path     string
	Problems []string
}

// Error implements error: the file, then one problem per indented line.
func (e *ProblemsError) Error() string {
	what := "configuration"
	if e.Path != "" {
		what = "config " + e.Path
	}
	return fmt.Sprintf("%s: %s:\n  %s", what, plural(len(e.Problems), "problem"), strings.Join(e.Problems, "\n  "))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Finish joins what Load returned with what v's Validate finds once flags are
// applied: nil when both are clean, Load's error alone when the file could not
// be read at all, and otherwise one *ProblemsError listing the file's problems
// and then the invalid values, each on its own line.
func Finish(loadErr error, path string, v interface{ Validate() error }) error {
	var pe *ProblemsError
	if loadErr != nil && !errors.As(loadErr, &pe) {
		return loadErr
	}
	verr := v.Validate()
	if pe == nil && verr == nil {
		return nil
	}
	out := &ProblemsError{Path: path}
	if pe != nil {
		out.Problems = append(out.Problems, pe.Problems...)
	}
	if verr != nil {
		for _, l := range strings.Split(verr.Error(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out.Problems = append(out.Problems, l)
			}
		}
	}
	return out
}

// maxConfigBytes bounds the configuration file read into memory.
const maxConfigBytes = 8 << 20

// loadFile decodes the YAML file at path over cfg, reporting every unknown key
// (with its path and the nearest real one) and every value of the wrong type
// at once, rather than the first only.
func loadFile(cfg any, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if len(data) > maxConfigBytes {
		return fmt.Errorf("config %s: larger than %d MiB", path, maxConfigBytes>>20)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if doc.Kind == 0 { // an empty file simply changes nothing
		return nil
	}
	if problems := checkKeys(&doc, reflect.TypeOf(cfg).Elem()); len(problems) > 0 {
		// Decode the rest anyway (unknown keys are skipped, a wrong value
		// leaves its default), so Finish can validate what the file meant.
		_ = doc.Decode(cfg)
		return &ProblemsError{Path: path, Problems: problems}
	}
	if err := doc.Decode(cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// applyEnv sets each field tagged env:"X" from PERISCOPE_X when present. A struct
// field tagged env:"P_" takes its fields from PERISCOPE_P_X.
func applyEnv(cfg any, env []string) error {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "PERISCOPE_") {
			vars[strings.TrimPrefix(k, "PERISCOPE_")] = v
		}
	}
	return applyEnvStruct(reflect.ValueOf(cfg).Elem(), "", vars)
}

func applyEnvStruct(rv reflect.Value, prefix string, vars map[string]string) error {
	var errs []error
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		tag := f.Tag.Get("env")
		if tag == "" {
			continue
		}
		name := prefix + tag
		fv := rv.Field(i)
		if fv.Kind() == reflect.Struct && strings.HasSuffix(tag, "_") {
			errs = append(errs, applyEnvStruct(fv, name, vars))
			continue
		}
		v, ok := vars[name]
		if !ok {
			continue
		}
		switch fv.Interface().(type) {
		case Duration:
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("PERISCOPE_%s: %q is not a duration like 30s", name, v))
				continue
			}
			fv.Set(reflect.ValueOf(Duration(d)))
		case ByteSize:
			b, err := ParseByteSize(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("PERISCOPE_%s: %w", name, err))
				continue
			}
			fv.Set(reflect.ValueOf(b))
		case int:
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("PERISCOPE_%s: %q is not a whole number", name, v))
				continue
			}
			fv.SetInt(int64(n))
		case float64:
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("PERISCOPE_%s: %q is not a number", name, v))
				continue
			}
			fv.SetFloat(x)
		case bool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("PERISCOPE_%s: %q is not true or false", name, v))
				continue
			}
			fv.SetBool(b)
		case string:
			fv.SetString(v)
		}
	}
	return errors.Join(errs...)
}
