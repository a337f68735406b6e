package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validAgent() Agent {
	cfg := DefaultAgent()
	cfg.Manager, cfg.Token = "http://127.0.0.1:7070", "pdt_x"
	return cfg
}

func TestRuntimeFromFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(`
runtime:
  interval: 1m
  queues:
    - {kind: nats, name: orders, url: "nats://127.0.0.1:4222", stream: ORDERS, consumers: [billing]}
    - {kind: redis-stream, name: jobs, url: "redis://127.0.0.1:6379/0", stream: jobs, password_env: REDIS_PASSWORD}
    - kind: rabbitmq
      name: mail
      url: amqp://127.0.0.1:5672/
      queue: mail
      management_url: http://127.0.0.1:15672
      username_env: RABBIT_USER
      password_env: RABBIT_PASSWORD
    - {kind: sqs, name: exports, queue: exports, region: eu-west-1}
`), 0o600)
	cfg := validAgent()
	if err := Load(&cfg, path, []string{"PERISCOPE_RUNTIME_TIMEOUT=5s"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := cfg.Runtime
	if time.Duration(r.Interval) != time.Minute || time.Duration(r.Timeout) != 5*time.Second || len(r.Queues) != 4 {
		t.Fatalf("runtime = %+v", r)
	}
	if r.Queues[0].SourceName() != "nats/orders" || r.Queues[0].Consumers[0] != "billing" {
		t.Errorf("nats source %+v", r.Queues[0])
	}
	user, pass := r.Queues[2].Credentials([]string{"RABBIT_USER=guest", "RABBIT_PASSWORD=secret", "OTHER=x"})
	if user != "guest" || pass != "secret" {
		t.Errorf("credentials %q %q", user, pass)
	}
	if u, p := r.Queues[0].Credentials([]string{"RABBIT_USER=guest"}); u != "" || p != "" {
		t.Errorf("credentials without names: %q %q", u, p)
	}
}

func TestRuntimeDefaults(t *testing.T) {
	r := DefaultAgent().Runtime
	if time.Duration(r.Interval) != 30*time.Second || time.Duration(r.Timeout) != 10*time.Second || len(r.Queues) != 0 {
		t.Errorf("defaults %+v", r)
	}
}

func TestRuntimeValidateNamesEachField(t *testing.T) {
	cfg := validAgent()
	cfg.Runtime.Timeout = Duration(time.Minute) // longer than the interval
	cfg.Runtime.Queues = []QueueSource{
		{Kind: "kafka", Name: "x"},
		{Kind: QueueNATS, Name: "a b", URL: "http://127.0.0.1:4222", Groups: []string{"g"}},
		{Kind: QueueRedisStream, Name: "jobs", URL: "redis://:hunter2@127.0.0.1:6379"},
		{Kind: QueueRabbitMQ, Name: "mail", URL: "amqp://127.0.0.1:5672/", ManagementURL: "ftp://x", PasswordEnv: "1BAD"},
		{Kind: QueueRabbitMQ, Name: "mail", URL: "amqp://127.0.0.1:5672/", Queue: "mail"},
		{Kind: QueueSQS, Name: "exports"},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"runtime.timeout:",
		"runtime.queues[0].kind:",
		"runtime.queues[1].name:", "runtime.queues[1].url: scheme", "runtime.queues[1].stream: must be set", "runtime.queues[1].groups: does not apply",
		"runtime.queues[2].stream: must be set", "runtime.queues[2].url: holds a password",
		"runtime.queues[3].queue: must be set", "runtime.queues[3].management_url:", "runtime.queues[3].password_env:",
		"runtime.queues[4].name: \"mail\" is used twice",
		"runtime.queues[5].queue: must be set", "runtime.queues[5].region: must be set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error echoes a password: %v", err)
	}
}
