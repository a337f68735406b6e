package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func TestStorageAndIngressSourcesAreBuiltAndTheProxyRunsWithTheAgent(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream saw "+r.URL.Path)
	}))
	defer upstream.Close()
	cfg := testConfig(t)
	cfg.Runtime.Storage = []config.StorageSource{
		{Kind: config.StorageFilesystem, Name: "data", Paths: []string{t.TempDir()}},
		{Kind: config.StorageRedis, Name: "cache", URL: "redis://" + testenv.ClosedAddr(t), PasswordEnv: "CACHE_PASSWORD"},
	}
	cfg.Runtime.Ingress = []config.IngressProxy{{Name: "shop", Listen: "127.0.0.1:0", Upstream: upstream.URL, Routes: []string{"/orders/{id}"}}}
	a, err := New(cfg, Settings{Env: []string{"CACHE_PASSWORD=s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range a.sources {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, " "); got != "filesystem/data redis/cache ingress/shop" {
		t.Fatalf("sources %q", got)
	}
	if len(a.proxies) != 1 || a.proxies[0].Addr() != "" {
		t.Fatalf("New bound the proxy or lost it: %d proxies", len(a.proxies))
	}
	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	addr := a.proxies[0].Addr()
	resp, err := http.Get("http://" + addr + "/orders/7")
	if err != nil {
		t.Fatalf("the proxy does not serve once the agent started: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "upstream saw /orders/7" {
		t.Errorf("through the proxy: %q", body)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("the proxy still accepts at %s after Shutdown", addr)
	}
}

func TestAnIngressAddressInUseIsAStartupError(t *testing.T) {
	cfg := testConfig(t)
	cfg.OTLPHTTP = testenv.ClosedAddr(t)
	cfg.Runtime.Ingress = []config.IngressProxy{
		{Name: "first", Listen: "127.0.0.1:0", Upstream: "http://127.0.0.1:1"},
		{Name: "shop", Listen: takenAddr(t), Upstream: "http://127.0.0.1:1"},
	}
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), `ingress "shop"`) {
		t.Fatalf("Start with the ingress address taken = %v, want address already in use for shop", err)
	}
	// The proxy started before the failure is stopped again.
	if c, err := net.Dial("tcp", a.proxies[0].Addr()); err == nil {
		c.Close()
		t.Errorf("the proxy started before the failure still accepts")
	}
	again, err := net.Listen("tcp", cfg.OTLPHTTP)
	if err != nil {
		t.Fatalf("the OTLP/HTTP port stayed bound after a failed start: %v", err)
	}
	again.Close()
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed start: %v", err)
	}
}

func TestABadRuntimeSourceIsRefusedNamingItsField(t *testing.T) {
	cfg := testConfig(t)
	cfg.Runtime.Storage = []config.StorageSource{
		{Kind: config.StorageFilesystem, Name: "data", Paths: []string{"/"}},
		{Kind: config.StorageS3, Name: "exports"},
	}
	cfg.Runtime.Ingress = []config.IngressProxy{{Name: "shop", Listen: "127.0.0.1:0", Upstream: "ftp://x"}}
	_, err := New(cfg, Settings{Env: []string{}})
	for _, want := range []string{"runtime.storage[1].bucket:", "runtime.ingress[0].upstream:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New = %v, want it to name %s", err, want)
		}
	}
}

func TestContainerSourcesAreBuiltWithoutConnecting(t *testing.T) {
	cfg := testConfig(t)
	cfg.Runtime.Containers = []config.ContainerSource{
		{Kind: config.ContainersDocker, Name: "shop", Socket: "/nonexistent/docker.sock", Labels: map[string]string{"app": "shop"}},
		{Kind: config.ContainersKubernetes, Name: "checkout", Namespace: "prod", Selector: "app=checkout"},
	}
	a, err := New(cfg, Settings{Env: []string{}})
	if err != nil {
		t.Fatalf("New with an engine and a cluster that are not there: %v", err)
	}
	var names []string
	for _, s := range a.sources {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, " "); got != "docker/shop kubernetes/checkout" {
		t.Fatalf("sources %q", got)
	}
	cfg.Runtime.Containers[1].Selector = "app in (checkout"
	if _, err := New(cfg, Settings{Env: []string{}}); err == nil || !strings.Contains(err.Error(), "runtime.containers: kubernetes/checkout: selector") {
		t.Errorf("New with a bad selector: %v", err)
	}
}
