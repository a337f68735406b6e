package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// An operator rotates the token of a running agent: the agent gets the new token
// over OpAMP, keeps it on disk and checks in with it without a restart, and the
// old token is refused from then on; a restarted agent uses the kept token.
// Revoking disconnects the agent, and deleting a deployment refuses its token.
func TestTokenRotationRevocationAndDeletion(t *testing.T) {
	m := startManager(t, "127.0.0.1:0", t.TempDir())
	defer m.Shutdown(context.Background())
	ctx := context.Background()
	api := apiclient.New(m.URL(), adminToken)
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			id := "rot-" + transport
			d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: "acme", Stack: "app"})
			if err != nil {
				t.Fatal(err)
			}
			old, dir := d.Token, t.TempDir()
			a := startAgent(t, m.URL(), old, transport, "1.0.0", config.Agent{DataDir: dir}, nil)
			eventually(t, 10*time.Second, "the agent checks in", func() error {
				if v, err := api.Deployment(ctx, id); err != nil || v.LastCheckin == nil {
					return fmt.Errorf("not yet: %v", err)
				}
				return nil
			})

			rot, err := api.RotateToken(ctx, id, apitypes.TokenRotation{Reason: "e2e rotation"})
			if err != nil {
				t.Fatal(err)
			}
			rotatedAt := time.Now()
			eventually(t, 15*time.Second, "the agent checks in with the new token and the old one is retired", func() error {
				v, err := api.Deployment(ctx, id)
				switch {
				case err != nil:
					return err
				case a.Token() != rot.Token:
					return fmt.Errorf("the agent still uses the old token")
				case v.TokenState != apitypes.TokenActive:
					return fmt.Errorf("token_state %s", v.TokenState)
				case v.LastCheckin == nil || !v.LastCheckin.After(rotatedAt):
					return fmt.Errorf("no check-in since the rotation")
				}
				return nil
			})
			if s := opampPost(t, m.URL(), old, &protobufs.AgentToServer{InstanceUid: uuidBytes()}); s != 401 {
				t.Errorf("check-in with the old token after the agent moved: %d, want 401", s)
			}
			path := filepath.Join(dir, opamp.TokenFile)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
			}
			var kept struct{ Token string }
			if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &kept) != nil || kept.Token != rot.Token {
				t.Errorf("the token file does not hold the new token: %v", err)
			}

			// A restart with the old token still configured uses the kept one.
			if err := a.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			restarted := time.Now()
			a = startAgent(t, m.URL(), old, transport, "1.0.0", config.Agent{DataDir: dir}, nil)
			eventually(t, 10*time.Second, "the restarted agent checks in with the kept token", func() error {
				if v, err := api.Deployment(ctx, id); err != nil || v.LastCheckin == nil || !v.LastCheckin.After(restarted) {
					return fmt.Errorf("no check-in since the restart: %v", err)
				}
				return nil
			})

			if _, err := api.RevokeToken(ctx, id, apitypes.TokenRevocation{Reason: "e2e revocation"}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the revoked agent is disconnected", func() error {
				if a.Connected() {
					return fmt.Errorf("the agent is still connected")
				}
				return nil
			})
			if s := opampPost(t, m.URL(), rot.Token, &protobufs.AgentToServer{InstanceUid: uuidBytes()}); s != 401 {
				t.Errorf("check-in with a revoked token: %d, want 401", s)
			}
		})
	}

	// Deleting a deployment disconnects its agent and refuses its token.
	d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: "doomed", Customer: "acme", Stack: "app"})
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, m.URL(), d.Token, "websocket", "1.0.0", config.Agent{}, nil)
	eventually(t, 10*time.Second, "the agent connects", func() error {
		if v, err := api.Deployment(ctx, "doomed"); err != nil || !v.Connected {
			return fmt.Errorf("not connected: %v", err)
		}
		return nil
	})
	if err := api.DeleteDeployment(ctx, "doomed", "e2e deletion"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the deleted deployment's agent is disconnected", func() error {
		if a.Connected() {
			return fmt.Errorf("the agent is still connected")
		}
		return nil
	})
	if s := opampPost(t, m.URL(), d.Token, &protobufs.AgentToServer{InstanceUid: uuidBytes()}); s != 401 {
		t.Errorf("check-in of a deleted deployment: %d, want 401", s)
	}
}
