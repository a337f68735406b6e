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

func TestRuntimeStorageAndIngressFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(`
runtime:
  storage:
    - {kind: filesystem, name: data, paths: [/var/lib/app]}
    - {kind: redis, name: cache, url: "redis://127.0.0.1:6379", password_env: REDIS_PASSWORD}
    - {kind: s3, name: exports, bucket: exports, url: "http://127.0.0.1:9000", path_style: true, max_keys: 5000}
    - {kind: postgres, name: main, url: "postgres://app@127.0.0.1:5432/app", max_tables: 5}
  ingress:
    - name: shop
      listen: 127.0.0.1:8080
      upstream: http://127.0.0.1:3000
      routes: ["/orders/{id}", "/static/*"]
      dial_timeout: 2s
`), 0o600)
	cfg := validAgent()
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := cfg.Runtime
	if len(r.Storage) != 4 || r.Storage[1].SourceName() != "redis/cache" || r.Storage[2].MaxKeys != 5000 || !r.Storage[2].PathStyle {
		t.Errorf("storage %+v", r.Storage)
	}
	if _, pass := r.Storage[1].Credentials([]string{"REDIS_PASSWORD=s=cret"}); pass != "s=cret" {
		t.Errorf("redis password %q", pass)
	}
	if len(r.Ingress) != 1 || r.Ingress[0].Upstream != "http://127.0.0.1:3000" || r.Ingress[0].DialTimeout != 2*time.Second || len(r.Ingress[0].Routes) != 2 {
		t.Errorf("ingress %+v", r.Ingress)
	}
}

func TestRuntimeStorageAndIngressValidateNameTheirFields(t *testing.T) {
	cfg := validAgent()
	cfg.Runtime.Storage = []StorageSource{
		{Kind: StorageFilesystem, Name: "data", Paths: []string{"/"}},
		{Kind: StorageFilesystem, Name: "data", Paths: []string{"relative"}},
		{Kind: StorageS3, Name: "exports", URL: "http://u:hunter2@127.0.0.1:9000"},
		{Kind: StorageRedis, Name: "cache", URL: "redis://127.0.0.1:6379?password=hunter2", PasswordEnv: "NOT-A-NAME"},
	}
	cfg.Runtime.Ingress = []IngressProxy{
		{Name: "shop", Listen: "127.0.0.1:8080", Upstream: "http://127.0.0.1:3000"},
		{Name: "shop", Listen: "127.0.0.1:8080", Upstream: "ftp://x", Routes: []string{"orders"}},
		{Listen: "8080", Upstream: "http://127.0.0.1:3000", IdleTimeout: -time.Second},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"runtime.storage[1].name: \"data\" is used twice", "runtime.storage[1].paths[0]:",
		"runtime.storage[2].bucket: must be", "runtime.storage[2].url: holds a password",
		"runtime.storage[3].url: holds a password", "runtime.storage[3].password_env:",
		"runtime.ingress[1].name: \"shop\" is used twice", "runtime.ingress[1].listen: \"127.0.0.1:8080\" is used twice",
		"runtime.ingress[1].upstream: scheme", "runtime.ingress[1].routes[0]:",
		"runtime.ingress[2].name: required", "runtime.ingress[2].listen:", "runtime.ingress[2].idle_timeout: negative",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error echoes a password: %v", err)
	}
}
