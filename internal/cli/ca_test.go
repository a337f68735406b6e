package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/tlsconfig/tlstest"
)

// TestCATrustsAManagerWithAPrivateCA: against a manager serving TLS with a
// certificate of a private CA, the CLI refuses the connection until told to
// trust that CA, by --ca, PERISCOPE_CA or 'ca' in its config file, and says
// what is wrong with a CA file that is not one or trusts another CA.
func TestCATrustsAManagerWithAPrivateCA(t *testing.T) {
	ca := tlstest.NewCA(t, "vendor private CA")
	pair := ca.Server(t, t.TempDir())
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), "psk_cli-ca-admin"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = pair.CertFile, pair.KeyFile
	m, err := manager.New(cfg, manager.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	if !strings.HasPrefix(m.URL(), "https://") {
		t.Fatalf("manager URL %s, want https://", m.URL())
	}
	other := tlstest.NewCA(t, "someone else's CA")
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(env map[string]string, cliYAML string, args ...string) (string, error) {
		t.Helper()
		home := t.TempDir()
		t.Setenv("XDG_CONFIG_HOME", home)
		for _, k := range []string{"PERISCOPE_MANAGER", "PERISCOPE_TOKEN", "PERISCOPE_CA"} {
			t.Setenv(k, env[k])
		}
		if cliYAML != "" {
			if err := os.MkdirAll(filepath.Join(home, "periscope"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, "periscope", "cli.yaml"), []byte(cliYAML), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		root := newRoot(clock.Real{})
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"deployments", "list", "--manager", m.URL(), "--token", cfg.AdminToken}, args...))
		err := root.Execute()
		return out.String(), err
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		cliYAML string
		args    []string
		wantErr string // "" for success
	}{
		{name: "system roots only", wantErr: "certificate"},
		{name: "--ca", args: []string{"--ca", ca.File}},
		{name: "PERISCOPE_CA", env: map[string]string{"PERISCOPE_CA": ca.File}},
		{name: "config file", cliYAML: "ca: " + ca.File + "\n"},
		{name: "the flag over the environment", env: map[string]string{"PERISCOPE_CA": other.File}, args: []string{"--ca", ca.File}},
		{name: "another CA", args: []string{"--ca", other.File}, wantErr: "certificate"},
		{name: "not a CA file", args: []string{"--ca", notPEM}, wantErr: "--ca " + notPEM},
		{name: "a missing file", args: []string{"--ca", notPEM + ".gone"}, wantErr: "--ca " + notPEM + ".gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.env, tc.cliYAML, tc.args...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("deployments: %v\n%s", err, out)
				}
				if !strings.Contains(out, "ID") {
					t.Fatalf("deployments printed %q, want the table", out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("deployments: %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}
