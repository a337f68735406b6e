package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestManagerPrecedenceFileThenEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte("listen: 0.0.0.0:9000\nheartbeat_interval: 10s\ndata_dir: /var/lib/periscope\n"), 0o600)
	cfg := DefaultManager()
	if err := Load(&cfg, path, []string{"PERISCOPE_LISTEN=127.0.0.1:7171", "PERISCOPE_STALE_AFTER=45s", "HOME=/root"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7171" || cfg.DataDir != "/var/lib/periscope" || time.Duration(cfg.HeartbeatInterval) != 10*time.Second || cfg.EffectiveStaleAfter() != 45*time.Second {
		t.Fatalf("cfg = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.StaleAfter = 0
	if cfg.EffectiveStaleAfter() != 30*time.Second {
		t.Fatalf("default stale-after = %v, want three heartbeats", cfg.EffectiveStaleAfter())
	}
}

func TestManagerValidateReportsEveryProblem(t *testing.T) {
	cfg := Manager{Listen: "nope", HeartbeatInterval: Duration(time.Minute), StaleAfter: Duration(time.Second), LogLevel: "loud"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"listen:", "data_dir:", "stale_after:", "log_level:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestManagerStorage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte("storage: postgres://periscope@db.internal:5432/periscope?sslmode=verify-full\n"), 0o600)
	cfg := DefaultManager()
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil || cfg.Storage != "postgres://periscope@db.internal:5432/periscope?sslmode=verify-full" {
		t.Fatalf("a PostgreSQL URL from the file: storage %q, %v", cfg.Storage, err)
	}
	// The password usually comes from the environment, and an error never
	// repeats it.
	if err := Load(&cfg, "", []string{"PERISCOPE_STORAGE=mysql://periscope:hunter2@db/periscope"}); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "storage:") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Validate() with a MySQL URL = %v, want a storage error that does not repeat the URL", err)
	}
}

func TestLoadRejectsUnknownKeysAndBadValues(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("listn: 1.2.3.4:5\n"), 0o600)
	cfg := DefaultManager()
	if err := Load(&cfg, typo, nil); err == nil || !strings.Contains(err.Error(), "listn") {
		t.Fatalf("unknown key: err = %v", err)
	}
	cfg = DefaultManager()
	if err := Load(&cfg, "", []string{"PERISCOPE_HEARTBEAT_INTERVAL=soon"}); err == nil || !strings.Contains(err.Error(), "PERISCOPE_HEARTBEAT_INTERVAL") {
		t.Fatalf("bad env duration: err = %v", err)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o600)
	if err := Load(&cfg, empty, nil); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestAgentValidate(t *testing.T) {
	cfg := DefaultAgent()
	cfg.Manager, cfg.Token = "http://127.0.0.1:7070", "pdt_x"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Manager, cfg.Token, cfg.Transport = "127.0.0.1:7070", "", "carrier-pigeon"
	err := cfg.Validate()
	for _, want := range []string{"manager:", "token:", "transport:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestAgentTelemetrySettingsFromFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(`manager: http://127.0.0.1:7070
token: pdt_x
otlp_grpc: "off"
queue:
  max_bytes: 2GiB
  on_full: drop_oldest
`), 0o600)
	cfg := DefaultAgent()
	env := []string{"PERISCOPE_QUEUE_MAX_AGE=6h", "PERISCOPE_QUEUE_SYNC=true", "PERISCOPE_MAX_PROCS=2", "PERISCOPE_MAX_REQUEST_BYTES=4MiB"}
	if err := Load(&cfg, path, env); err != nil {
		t.Fatal(err)
	}
	if cfg.OTLPGRPC != "off" || cfg.OTLPHTTP != "127.0.0.1:4318" || cfg.Queue.MaxBytes != 2<<30 || cfg.Queue.OnFull != "drop_oldest" ||
		time.Duration(cfg.Queue.MaxAge) != 6*time.Hour || !cfg.Queue.Sync || cfg.MaxProcs != 2 || cfg.MaxRequestBytes != 4<<20 {
		t.Fatalf("cfg = %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Queue.OnFull, cfg.OTLPHTTP, cfg.Compression = "block", "localhost", "brotli"
	err := cfg.Validate()
	for _, want := range []string{"queue.on_full", "otlp_http", "compression"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a %s problem", err, want)
		}
	}
	if err := Load(&cfg, "", []string{"PERISCOPE_QUEUE_MAX_BYTES=lots"}); err == nil {
		t.Error("a size without a number was accepted")
	}
}

func TestManagerExportersAreValidated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte(`exporters:
  - {name: grafana, type: otlphttp, endpoint: "https://otlp.example/otlp", headers: {Authorization: "Basic x"}, compression: gzip, timeout: 10s}
  - {name: grafana, type: s3}
  - {name: odd, type: kafka}
`), 0o600)
	cfg := DefaultManager()
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Exporters) != 3 || cfg.Exporters[0].Headers["Authorization"] != "Basic x" || time.Duration(cfg.Exporters[0].Timeout) != 10*time.Second {
		t.Fatalf("exporters = %+v", cfg.Exporters)
	}
	err := cfg.Validate()
	for _, want := range []string{`name "grafana" is used twice`, "bucket", "kafka"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestManagerTelemetryStoreFromFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte("telemetry_store:\n  max_age: 48h\n  max_bytes: 2GiB\n  partition_width: 12h\n"), 0o600)
	cfg := DefaultManager()
	if time.Duration(cfg.TelemetryStore.PartitionWidth) != 24*time.Hour {
		t.Fatalf("default partition_width = %s, want 24h", time.Duration(cfg.TelemetryStore.PartitionWidth))
	}
	if err := Load(&cfg, path, []string{"PERISCOPE_TELEMETRY_STORE_MAX_BYTES=512MiB", "PERISCOPE_TELEMETRY_STORE_PARTITION_WIDTH=6h"}); err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.TelemetryStore.MaxAge) != 48*time.Hour || cfg.TelemetryStore.MaxBytes != 512<<20 ||
		time.Duration(cfg.TelemetryStore.PartitionWidth) != 6*time.Hour {
		t.Fatalf("telemetry_store = %+v", cfg.TelemetryStore)
	}
	for _, w := range []time.Duration{time.Hour, 8 * time.Hour, 24 * time.Hour} {
		cfg.TelemetryStore.PartitionWidth = Duration(w)
		if err := cfg.Validate(); err != nil {
			t.Errorf("partition_width %s: %v", w, err)
		}
	}
	for _, w := range []time.Duration{0, 30 * time.Minute, 5 * time.Hour, 90 * time.Minute, 48 * time.Hour} {
		cfg.TelemetryStore.PartitionWidth = Duration(w)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "telemetry_store.partition_width") {
			t.Errorf("partition_width %s: Validate() = %v, want it refused", w, err)
		}
	}
	cfg.TelemetryStore = TelemetryStore{}
	err := cfg.Validate()
	for _, want := range []string{"telemetry_store.max_age", "telemetry_store.max_bytes", "telemetry_store.partition_width"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestManagerRegressionFromFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte("regression:\n  min_requests: 50\n  p95_increase: 250ms\n"), 0o600)
	cfg := DefaultManager()
	if err := Load(&cfg, path, []string{"PERISCOPE_REGRESSION_ERROR_RATE_INCREASE=0.1", "PERISCOPE_REGRESSION_P95_RATIO=2.5"}); err != nil {
		t.Fatal(err)
	}
	r := cfg.Regression
	if r.MinRequests != 50 || time.Duration(r.P95Increase) != 250*time.Millisecond || r.ErrorRateIncrease != 0.1 || r.P95Ratio != 2.5 || r.ErrorRateRatio != 2 {
		t.Fatalf("regression = %+v", r)
	}
	if err := Load(&cfg, "", []string{"PERISCOPE_REGRESSION_P95_RATIO=lots"}); err == nil || !strings.Contains(err.Error(), "PERISCOPE_REGRESSION_P95_RATIO") {
		t.Fatalf("a non-number ratio: err = %v", err)
	}
	cfg.Regression.ErrorRateIncrease, cfg.Regression.P95Ratio = 5, 0.5
	err := cfg.Validate()
	for _, want := range []string{"regression.error_rate_increase", "p95_ratio"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestAgentUpdateFromFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(`manager: http://127.0.0.1:7070
token: pdt_x
update:
  webhook: https://ci.example/hooks/deploy
  webhook_headers: {Authorization: "Bearer ci-secret"}
`), 0o600)
	cfg := DefaultAgent()
	if time.Duration(cfg.Update.Timeout) != 10*time.Minute || cfg.Update.Enabled() {
		t.Fatalf("default update = %+v, want a 10m timeout and no hook", cfg.Update)
	}
	if err := Load(&cfg, path, []string{"PERISCOPE_UPDATE_TIMEOUT=90s"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Update.Webhook != "https://ci.example/hooks/deploy" || cfg.Update.WebhookHeaders["Authorization"] != "Bearer ci-secret" ||
		time.Duration(cfg.Update.Timeout) != 90*time.Second || !cfg.Update.Enabled() {
		t.Fatalf("update = %+v", cfg.Update)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	cfg = DefaultAgent()
	cfg.Manager, cfg.Token = "http://127.0.0.1:7070", "pdt_x"
	if err := Load(&cfg, "", []string{"PERISCOPE_UPDATE_COMMAND=helm upgrade app vendor/app --version {{.Release}}"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("command %q: %v", cfg.Update.Command, err)
	}
}

func TestAgentUpdateValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		update AgentUpdate
		want   []string
	}{
		{"command and webhook", AgentUpdate{Command: "deploy", Webhook: "https://ci.example/x", Timeout: Duration(time.Minute)}, []string{"update: set command or webhook, not both"}},
		{"unparsable template", AgentUpdate{Command: "deploy {{.Release", Timeout: Duration(time.Minute)}, []string{"update.command:"}},
		{"misspelt field", AgentUpdate{Command: "deploy {{.Relase}}", Timeout: Duration(time.Minute)}, []string{"update.command:", "Relase"}},
		{"webhook not http", AgentUpdate{Webhook: "ftp://ci.example/x?token=s3cret", Timeout: Duration(time.Minute)}, []string{"update.webhook: is not an http(s) URL"}},
		{"headers without webhook", AgentUpdate{WebhookHeaders: map[string]string{"X-Token": "t"}, Timeout: Duration(time.Minute)}, []string{"update.webhook_headers"}},
		{"no timeout", AgentUpdate{Command: "deploy"}, []string{"update.timeout: must be positive"}},
	} {
		cfg := DefaultAgent()
		cfg.Manager, cfg.Token, cfg.Update = "http://127.0.0.1:7070", "pdt_x", tc.update
		err := cfg.Validate()
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: Validate() = %v, want it to mention %s", tc.name, err, want)
			}
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: Validate() = %v repeats the webhook's token", tc.name, err)
		}
	}
	ok := DefaultAgent()
	ok.Manager, ok.Token = "http://127.0.0.1:7070", "pdt_x"
	ok.Update.Command = `deploy --release {{.Release}} --from {{.PreviousRelease}} --stack {{.Stack}} --expect {{.ConfigHash}}`
	if err := ok.Validate(); err != nil {
		t.Errorf("every documented field: %v", err)
	}
}

// The agent's token has its own variable: the CLI's PERISCOPE_TOKEN (an operator
// token) in the same shell must not become the agent's.
func TestAgentTokenVariable(t *testing.T) {
	cfg := DefaultAgent()
	if err := Load(&cfg, "", []string{"PERISCOPE_TOKEN=psk_operator", "PERISCOPE_AGENT_TOKEN=pdt_agent"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "pdt_agent" {
		t.Errorf("token = %q, want pdt_agent from PERISCOPE_AGENT_TOKEN", cfg.Token)
	}
	cfg = DefaultAgent()
	if err := Load(&cfg, "", []string{"PERISCOPE_TOKEN=psk_operator"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "" {
		t.Errorf("token = %q from PERISCOPE_TOKEN, want the agent not to read the CLI's variable", cfg.Token)
	}
}

// The audit log keeps a year by default; audit.retention comes from the file
// or PERISCOPE_AUDIT_RETENTION, and one shorter than a day is refused.
func TestManagerAuditRetention(t *testing.T) {
	cfg := DefaultManager()
	if time.Duration(cfg.Audit.Retention) != 8760*time.Hour {
		t.Errorf("default audit retention %s, want 8760h", time.Duration(cfg.Audit.Retention))
	}
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte("audit:\n  retention: 2160h\n"), 0o600)
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if time.Duration(cfg.Audit.Retention) != 2160*time.Hour {
		t.Errorf("audit retention from the file %s, want 2160h", time.Duration(cfg.Audit.Retention))
	}
	if err := Load(&cfg, path, []string{"PERISCOPE_AUDIT_RETENTION=1h"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "audit.retention") {
		t.Errorf("Validate() with a retention of 1h = %v, want it to mention audit.retention", err)
	}
}

// The customer's command rule comes from the agent's YAML; unset, commands are
// on; a name that cannot be a command is refused with its field.
func TestAgentCommandRule(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte("manager: http://127.0.0.1:7070\ntoken: pdt_x\ncommands:\n  allow: [db.rows, cache-flush]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultAgent()
	if cfg.Commands.Disabled || len(cfg.Commands.Allow) != 0 {
		t.Fatalf("default rule %+v, want every declared command allowed", cfg.Commands)
	}
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := cfg.Commands.Permits("db.rows"); !ok {
		t.Error("an allowed command is not permitted")
	}
	if ok, why := cfg.Commands.Permits("drop"); ok || why == "" {
		t.Error("a command off the allow-list is permitted")
	}
	cfg.Commands.Allow = []string{"Rm -rf"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "commands.allow") {
		t.Errorf("Validate() = %v, want a commands.allow problem", err)
	}
	if err := os.WriteFile(path, []byte("manager: http://127.0.0.1:7070\ntoken: pdt_x\ncommands: {disabled: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = DefaultAgent()
	if err := Load(&cfg, path, nil); err != nil || !cfg.Commands.Disabled {
		t.Errorf("disabled: %v %+v", err, cfg.Commands)
	}
}

func TestLoadReportsEveryUnknownKeyWithItsPathAndTheNearestKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	doc := `heartbeat_intervall: 30s
listen: 127.0.0.1:7070
max_request_bytes: lots
telemetry_store:
  max_agee: 24h
exporters:
  - name: backend
    kind: otlphttp
    endpont: http://collector:4318
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultManager()
	err := Load(&cfg, path, nil)
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	for _, want := range []string{
		"line 1: heartbeat_intervall: unknown key (did you mean heartbeat_interval?)",
		"line 5: telemetry_store.max_agee: unknown key (did you mean telemetry_store.max_age?)",
		"line 9: exporters[0].endpont: unknown key (did you mean exporters[0].endpoint?)",
		"line 3: max_request_bytes: \"lots\" is not a size",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "config.Manager") {
		t.Errorf("error names a Go type, which tells a user nothing:\n%s", msg)
	}
}

// A file with an unknown key and an invalid value reports both in one run, for
// the manager and for the agent, and a flag that fixes a value (applied between
// Load and Finish) takes that problem away.
func TestFinishReportsFileAndValueProblemsTogether(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mpath := write("manager.yaml", "heartbeat_intervall: 10s\nlog_level: verbose\n")
	m := DefaultManager()
	loadErr := Load(&m, mpath, nil)
	err := Finish(loadErr, mpath, &m)
	var pe *ProblemsError
	if !errors.As(err, &pe) || len(pe.Problems) != 2 {
		t.Fatalf("manager: %v, want 2 problems", err)
	}
	for _, want := range []string{"2 problems", "line 1: heartbeat_intervall: unknown key (did you mean heartbeat_interval?)", `log_level: "verbose" must be debug`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("manager: %q lacks %q", err, want)
		}
	}
	m.LogLevel = "debug" // as --log-level debug does
	if err := Finish(loadErr, mpath, &m); err == nil || strings.Contains(err.Error(), "log_level") || !strings.Contains(err.Error(), "1 problem:") {
		t.Errorf("with the level fixed by a flag: %v, want the unknown key alone", err)
	}

	apath := write("agent.yaml", "manager: http://127.0.0.1:7070\ntoken: pdt_x\nrelease: \"1\"\ntokn: y\nqueue:\n  max_byts: 10\nlog_level: loud\n")
	a := DefaultAgent()
	err = Finish(Load(&a, apath, nil), apath, &a)
	for _, want := range []string{"3 problems", "line 4: tokn: unknown key (did you mean token?)", "line 6: queue.max_byts: unknown key (did you mean queue.max_bytes?)", `log_level: "loud"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("agent: %v lacks %q", err, want)
		}
	}
	if a.Manager != "http://127.0.0.1:7070" {
		t.Errorf("the known keys of a file with problems were not decoded: manager %q", a.Manager)
	}

	good := DefaultManager()
	if err := Finish(Load(&good, write("ok.yaml", "log_level: warn\n"), nil), "", &good); err != nil {
		t.Errorf("a clean file: %v", err)
	}
	if err := Finish(Load(&good, filepath.Join(dir, "missing.yaml"), nil), "", &good); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("an unreadable file: %v", err)
	}
}
