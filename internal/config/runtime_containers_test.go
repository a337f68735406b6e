package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRuntimeContainersFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(`
runtime:
  containers:
    - {kind: docker, name: shop, labels: {app: shop, com.example.tier: ""}}
    - {kind: docker, name: edge, socket: /run/podman/podman.sock}
    - {kind: kubernetes, name: checkout, namespace: prod, selector: "app=checkout", kubeconfig: /etc/periscope/kubeconfig}
    - {kind: kubernetes, name: all}
`), 0o600)
	cfg := validAgent()
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := cfg.Runtime.Containers
	if len(c) != 4 {
		t.Fatalf("containers %+v", c)
	}
	if c[0].SourceName() != "docker/shop" || c[0].SocketPath() != DefaultDockerSocket {
		t.Errorf("docker defaults: %q %q", c[0].SourceName(), c[0].SocketPath())
	}
	if got := c[0].LabelFilters(); !slices.Equal(got, []string{"app=shop", "com.example.tier"}) {
		t.Errorf("label filters %q", got)
	}
	if c[1].SocketPath() != "/run/podman/podman.sock" || len(c[1].LabelFilters()) != 0 {
		t.Errorf("docker socket %q, filters %q", c[1].SocketPath(), c[1].LabelFilters())
	}
	if c[2].NamespaceOrDefault() != "prod" || c[2].Selector != "app=checkout" || c[2].Kubeconfig != "/etc/periscope/kubeconfig" {
		t.Errorf("kubernetes %+v", c[2])
	}
	if c[3].NamespaceOrDefault() != DefaultKubeNamespace || c[3].SourceName() != "kubernetes/all" {
		t.Errorf("kubernetes defaults %+v", c[3])
	}
}

func TestRuntimeContainersValidateNameTheirFields(t *testing.T) {
	cfg := validAgent()
	many := map[string]string{}
	for i := range MaxContainerLabels + 1 {
		many["l"+strings.Repeat("x", i)] = "v"
	}
	cfg.Runtime.Containers = []ContainerSource{
		{Kind: "nomad", Name: "x"},
		{Kind: ContainersDocker, Name: "shop", Socket: "docker.sock", Namespace: "prod", Labels: map[string]string{"a=b": "c", "ok": "line\nbreak"}},
		{Kind: ContainersDocker, Name: "shop", Labels: many},
		{Kind: ContainersKubernetes, Name: "k", Namespace: "Prod_1", Selector: "app=x\n", Kubeconfig: "kube/config", Socket: "/s", Labels: map[string]string{"a": "b"}},
		{Kind: ContainersKubernetes, Name: "bad name"},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"runtime.containers[0].kind: \"nomad\" must be docker or kubernetes",
		"runtime.containers[1].socket: \"docker.sock\" must be an absolute path",
		"runtime.containers[1].namespace: does not apply to docker",
		"runtime.containers[1].labels: key \"a=b\"",
		"runtime.containers[1].labels.ok: value",
		"runtime.containers[2].name: \"shop\" is used twice",
		"runtime.containers[2].labels: 17 labels, at most 16",
		"runtime.containers[3].namespace: \"Prod_1\" must be a DNS label",
		"runtime.containers[3].selector: must be at most",
		"runtime.containers[3].kubeconfig: \"kube/config\" must be an absolute path",
		"runtime.containers[3].socket: does not apply to kubernetes",
		"runtime.containers[3].labels: does not apply to kubernetes",
		"runtime.containers[4].name:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}
