// Package demo runs a manager with a dozen simulated customer deployments, each a
// real agent checking in over OpAMP, so a newcomer can explore the fleet view on
// a laptop: healthy, behind, unhealthy, stale and pending deployments included.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/periscope-dev/periscope/internal/agent"
	"github.com/periscope-dev/periscope/internal/apiclient"
	"github.com/periscope-dev/periscope/internal/apitypes"
	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager"
)

// Options configure the demo.
type Options struct {
	Listen  string
	DataDir string // a temporary directory when empty
	Out     io.Writer
	Logger  *slog.Logger
	// Ready, when set, receives the manager URL and admin token once the fleet runs.
	Ready func(url, token string)
}

// Stack is the demo vendor's product.
const Stack = "lighthouse"

type sim struct {
	id, customer, cloud, region, platform, transport, release string
	// unhealthy names a component the agent reports down.
	unhealthy string
	// stopAfter stops the agent after a while, so the deployment turns stale.
	stopAfter time.Duration
	// noAgent leaves the deployment registered but never checked in.
	noAgent bool
}

// Fleet is the demo's simulated fleet.
var fleetSpec = []sim{
	{id: "acme-prod", customer: "acme", cloud: "aws", region: "us-east-1", platform: "aws_eks", transport: "websocket", release: "1.8.0"},
	{id: "acme-staging", customer: "acme", cloud: "aws", region: "us-east-1", platform: "aws_eks", transport: "websocket", release: "1.8.0"},
	{id: "globex-prod", customer: "globex", cloud: "gcp", region: "europe-west4", platform: "gcp_kubernetes_engine", transport: "http", release: "1.8.0",
		unhealthy: "error rate 14% since upgrade to 1.8.0 (was 0.3%)"},
	{id: "initech-eu", customer: "initech", cloud: "azure", region: "westeurope", platform: "azure_aks", transport: "http", release: "1.7.2"},
	{id: "umbrella-prod", customer: "umbrella", cloud: "aws", region: "eu-central-1", platform: "aws_ecs", transport: "websocket", release: "1.8.0"},
	{id: "hooli-prod", customer: "hooli", cloud: "gcp", region: "us-central1", platform: "gcp_cloud_run", transport: "http", release: "1.8.0"},
	{id: "stark-prod", customer: "stark", cloud: "aws", region: "us-west-2", platform: "aws_eks", transport: "websocket", release: "1.7.2"},
	{id: "wayne-prod", customer: "wayne", cloud: "azure", region: "eastus", platform: "azure_aks", transport: "http", release: "1.8.0", stopAfter: 8 * time.Second},
	{id: "wonka-prod", customer: "wonka", cloud: "gcp", region: "asia-northeast1", platform: "gcp_kubernetes_engine", transport: "websocket", release: "1.8.0"},
	{id: "cyberdyne-prod", customer: "cyberdyne", cloud: "aws", region: "ap-southeast-2", platform: "aws_ecs", transport: "http", release: "1.7.2"},
	{id: "tyrell-prod", customer: "tyrell", cloud: "azure", region: "northeurope", platform: "azure_container_apps", transport: "websocket", release: "1.8.0"},
	{id: "soylent-onprem", customer: "soylent", cloud: "", region: "", platform: "kubernetes", noAgent: true},
}

// Run starts the demo and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	dir := o.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "periscope-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	token, err := auth.NewToken(auth.PrefixAPI, nil)
	if err != nil {
		return err
	}
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = o.Listen, filepath.Join(dir, "manager"), token
	cfg.HeartbeatInterval = config.Duration(2 * time.Second)
	cfg.StaleAfter = config.Duration(6 * time.Second)
	m, err := manager.New(cfg, manager.Settings{Logger: o.Logger})
	if err != nil {
		return err
	}
	if err := m.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Shutdown(sctx)
	}()
	api := apiclient.New(m.URL(), token)

	var agents []*agent.Agent
	defer func() {
		for _, a := range agents {
			a.Shutdown(context.Background())
		}
	}()
	tokens, err := seed(ctx, api)
	if err != nil {
		return err
	}
	for _, s := range fleetSpec {
		if s.noAgent {
			continue
		}
		ac := config.DefaultAgent()
		ac.Manager, ac.Token, ac.Release, ac.Transport = m.URL(), tokens[s.id], s.release, s.transport
		ac.Cloud, ac.Region, ac.Platform = s.cloud, s.region, s.platform
		ac.DataDir = filepath.Join(dir, "agents", s.id)
		ac.HeartbeatInterval = cfg.HeartbeatInterval
		a, err := agent.New(ac, agent.Settings{Logger: o.Logger, Env: []string{}})
		if err != nil {
			return err
		}
		if s.unhealthy != "" {
			a.SetComponentHealth("checkout-api", false, s.unhealthy)
		}
		if err := a.Start(ctx); err != nil {
			return err
		}
		agents = append(agents, a)
		if s.stopAfter > 0 {
			go func() {
				select {
				case <-time.After(s.stopAfter):
					a.Shutdown(context.Background())
				case <-ctx.Done():
				}
			}()
		}
	}
	fmt.Fprintf(o.Out, `
Periscope demo is running: a manager and %d simulated customer deployments.

  Manager:   %s
  API token: %s   (admin)
  Data:      %s

Try, in another terminal:

  export PERISCOPE_MANAGER=%s PERISCOPE_TOKEN=%s
  go run ./cmd/periscope status
  go run ./cmd/periscope deployments list
  go run ./cmd/periscope deployments show globex-prod     # unhealthy: a component is failing
  go run ./cmd/periscope deployments list --status stale  # wayne-prod stops checking in after ~15s
  go run ./cmd/periscope releases list
  curl -s -H "Authorization: Bearer $PERISCOPE_TOKEN" %s/api/v1/deployments | head -c 600

Press Ctrl-C to stop.
`, len(fleetSpec), m.URL(), token, dir, m.URL(), token, m.URL())
	if o.Ready != nil {
		o.Ready(m.URL(), token)
	}
	err = m.Wait(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func seed(ctx context.Context, api *apiclient.Client) (map[string]string, error) {
	for _, r := range []apitypes.NewRelease{
		{Stack: Stack, Version: "1.7.2", Notes: "Stable; batch export fixes"},
		{Stack: Stack, Version: "1.8.0", Notes: "New checkout pipeline"},
	} {
		if _, err := api.CreateRelease(ctx, r); err != nil {
			return nil, fmt.Errorf("seed release %s: %w", r.Version, err)
		}
	}
	nds := make([]apitypes.NewDeployment, len(fleetSpec))
	for i, s := range fleetSpec {
		nds[i] = apitypes.NewDeployment{ID: s.id, Customer: s.customer, Stack: Stack, Platform: s.platform, Labels: map[string]string{"tier": "enterprise"}}
	}
	created, err := api.CreateDeployments(ctx, nds)
	if err != nil {
		return nil, fmt.Errorf("seed deployments: %w", err)
	}
	tokens := map[string]string{}
	for _, d := range created {
		tokens[d.ID] = d.Token
	}
	return tokens, nil
}
