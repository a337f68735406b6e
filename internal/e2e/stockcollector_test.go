package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestStockCollectorChecksIn proves that an OpAMP client nobody here wrote — the
// OpenTelemetry Collector's OpAMP extension — shows up as a deployment, over
// both polling and WebSocket.
func TestStockCollectorChecksIn(t *testing.T) {
	bin := testenv.Peer(t, "otelcol-opamp")
	cfgPath, _ := filepath.Abs("../../scripts/peers/otelcol-opamp.yaml")
	ctx := context.Background()
	m := startManager(t, "127.0.0.1:0", t.TempDir())
	defer m.Shutdown(ctx)
	api := apiclient.New(m.URL(), adminToken)

	for _, tc := range []struct{ id, scheme string }{{"stock-http", "http"}, {"stock-ws", "ws"}} {
		t.Run(tc.scheme, func(t *testing.T) {
			d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: tc.id, Customer: "contoso", Stack: "analytics"})
			if err != nil {
				t.Fatal(err)
			}
			endpoint := tc.scheme + "://" + m.Addr() + "/v1/opamp"
			cfg := cfgPath
			if tc.scheme == "ws" {
				// The extension takes ws: instead of http: for WebSocket.
				b, _ := os.ReadFile(cfgPath)
				cfg = filepath.Join(t.TempDir(), "ws.yaml")
				s := strings.Replace(string(b), "      http:\n", "      ws:\n", 1)
				s = strings.Replace(s, "        polling_interval: 1s\n", "", 1)
				os.WriteFile(cfg, []byte(s), 0o600)
			}
			cmd := exec.Command(bin, "--config", cfg)
			cmd.Env = append(os.Environ(), "OPAMP_ENDPOINT="+endpoint, "OPAMP_TOKEN="+d.Token, "COL_GRPC="+freePort(t))
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
				if t.Failed() {
					t.Logf("collector output:\n%s", out.String())
				}
			}()
			wantMode := map[string]fleet.Mode{"http": fleet.ModePull, "ws": fleet.ModePush}[tc.scheme]
			eventually(t, 30*time.Second, "stock collector shows up as "+tc.id, func() error {
				got, err := api.Deployment(ctx, tc.id)
				if err != nil {
					return err
				}
				if got.Status != fleet.StatusHealthy || got.Release != "2.0.0" || got.Cloud != "gcp" || got.Region != "europe-west1" ||
					got.Mode != wantMode || !strings.HasPrefix(got.AgentVersion, "otelcol-opamp/") {
					return fmt.Errorf("status %s release %q cloud %q region %q mode %q agent %q", got.Status, got.Release, got.Cloud, got.Region, got.Mode, got.AgentVersion)
				}
				return nil
			})
		})
	}
}
