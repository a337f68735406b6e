package kube

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/periscope-dev/periscope/internal/config"
)

// TestKubeconfigClientListsThroughTheCoreAPI checks the client the agent
// builds itself (kubeconfig, the core-only REST client) against an HTTP server
// answering over TLS as an API server's pod list does (client-go sends a
// bearer token over TLS only): the path, the selector and
// limit parameters, and the decoding of its answer.
func TestKubeconfigClientListsThroughTheCoreAPI(t *testing.T) {
	pods, err := cluster().CoreV1().Pods("prod").List(context.Background(), metav1.ListOptions{LabelSelector: "app=checkout"})
	if err != nil {
		t.Fatal(err)
	}
	pods.Kind, pods.APIVersion = "PodList", "v1"
	body, _ := json.Marshal(pods)
	var asked string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = r.URL.Path + "?" + r.URL.RawQuery
		if r.Header.Get("Authorization") != "Bearer t0ken" {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer srv.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+srv.URL+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t0ken}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600)
	s, err := New(config.ContainerSource{Kind: config.ContainersKubernetes, Name: "checkout", Namespace: "prod", Selector: "app=checkout", Kubeconfig: kubeconfig},
		Settings{Redact: strings.TrimSpace})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Collect(context.Background(), now, pmetric.NewMetricSlice()); err != nil {
		t.Fatal(err)
	}
	if asked != "/api/v1/namespaces/prod/pods?labelSelector=app%3Dcheckout&limit=200" {
		t.Errorf("asked %s", asked)
	}
	if n := len(s.Components()); n != 5 {
		t.Errorf("%d components, want 5", n)
	}
	for _, c := range s.Components() {
		if c.Name == "pod checkout-7d9f-abcde/api" && (c.Healthy || c.Restarts != 3) {
			t.Errorf("decoded %+v", c)
		}
	}
}
