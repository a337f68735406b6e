package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManagerTLSFromFileAndEnv reads the manager's tls: block from the file
// and the environment, and reports each inconsistent setting in words.
func TestManagerTLSFromFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte("tls:\n  cert_file: /etc/periscope/tls.crt\n  key_file: /etc/periscope/tls.key\n"), 0o600)
	cfg := DefaultManager()
	if cfg.TLS.Enabled() || cfg.TLS.MinVersion != "1.2" {
		t.Fatalf("default tls = %+v, want off with min_version 1.2", cfg.TLS)
	}
	if err := Load(&cfg, path, []string{"PERISCOPE_TLS_CLIENT_CA_FILE=/etc/periscope/agents-ca.pem", "PERISCOPE_TLS_MIN_VERSION=1.3"}); err != nil {
		t.Fatal(err)
	}
	want := ServerTLS{CertFile: "/etc/periscope/tls.crt", KeyFile: "/etc/periscope/tls.key", ClientCAFile: "/etc/periscope/agents-ca.pem", MinVersion: "1.3"}
	if cfg.TLS != want || !cfg.TLS.Enabled() {
		t.Fatalf("tls = %+v, want %+v", cfg.TLS, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tls  ServerTLS
		want string
	}{
		{ServerTLS{CertFile: "c.pem", MinVersion: "1.2"}, "tls: cert_file and key_file go together"},
		{ServerTLS{ClientCAFile: "ca.pem", MinVersion: "1.2"}, "tls.client_ca_file: asking clients for certificates needs TLS"},
		{ServerTLS{CertFile: "c.pem", KeyFile: "k.pem", MinVersion: "1.0"}, `tls.min_version: "1.0" must be 1.2 or 1.3`},
	} {
		bad := DefaultManager()
		bad.TLS = c.tls
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.tls, err, c.want)
		}
	}
}

// TestAgentManagerTLS reads manager_tls and refuses settings TLS would
// ignore.
func TestAgentManagerTLS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("manager: https://periscope.vendor.example\ntoken: pdt_x\nmanager_tls:\n  ca_file: /etc/periscope/vendor-ca.pem\n"), 0o600)
	cfg := DefaultAgent()
	if err := Load(&cfg, path, []string{"PERISCOPE_MANAGER_TLS_SERVER_NAME=manager.vendor.internal"}); err != nil {
		t.Fatal(err)
	}
	if want := (ClientTLS{CAFile: "/etc/periscope/vendor-ca.pem", ServerName: "manager.vendor.internal"}); cfg.ManagerTLS != want {
		t.Fatalf("manager_tls = %+v, want %+v", cfg.ManagerTLS, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		manager string
		tls     ClientTLS
		want    string
	}{
		{"http://10.0.0.5:7070", ClientTLS{CAFile: "ca.pem"}, "manager_tls: the manager's URL is http://, so no TLS would be used"},
		{"https://m", ClientTLS{CertFile: "c.pem"}, "manager_tls: cert_file and key_file go together"},
		{"https://m", ClientTLS{InsecureSkipVerify: true, CAFile: "ca.pem"}, "manager_tls.insecure_skip_verify: no certificate is checked"},
	} {
		bad := cfg
		bad.Manager, bad.ManagerTLS = c.manager, c.tls
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: %v, want %q", c.manager, c.tls, err, c.want)
		}
	}
}
