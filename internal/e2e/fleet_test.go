// Package e2e runs the manager and real agents together over loopback.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

const adminToken = "psk_e2e-admin-token"

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

func startManager(t *testing.T, listen, dir string) *manager.Manager {
	t.Helper()
	return startManagerWith(t, listen, dir, nil)
}

// startManagerWith is startManager with configure adjusting the configuration.
func startManagerWith(t *testing.T, listen, dir string, configure func(*config.Manager)) *manager.Manager {
	t.Helper()
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = listen, dir, adminToken
	cfg.HeartbeatInterval = config.Duration(time.Second)
	cfg.StaleAfter = config.Duration(3 * time.Second)
	if configure != nil {
		configure(&cfg)
	}
	m, err := manager.New(cfg, manager.Settings{Logger: logger(t), EvalInterval: 100 * time.Millisecond, FlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

func startAgent(t *testing.T, managerURL, token, transport, release string, flags config.Agent, env []string) *opamp.Agent {
	t.Helper()
	cfg := config.DefaultAgent()
	cfg.Manager, cfg.Token, cfg.Transport, cfg.Release = managerURL, token, transport, release
	cfg.Cloud, cfg.Region, cfg.Platform = flags.Cloud, flags.Region, flags.Platform
	cfg.DataDir, cfg.Redaction = flags.DataDir, flags.Redaction
	if flags.Update.Command != "" {
		cfg.Update.Command = flags.Update.Command
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.HeartbeatInterval = config.Duration(time.Second)
	if env == nil {
		env = []string{}
	}
	a, err := opamp.New(cfg, opamp.Settings{Logger: logger(t), Env: env})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	return a
}

// eventually polls cond until it returns nil or the deadline passes. These tests
// watch separate parts (agents in other processes, collectors, the manager) through
// their public APIs, where nothing can be waited on but the answer changing, so a
// poll is the synchronisation here; each condition names the state it waits for.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counter sums the series of the counter name whose labels include labels (say
// `reason="bad_token"`, or "" for all) on the Prometheus text page at url.
func counter(t *testing.T, url, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	for s := bufio.NewScanner(resp.Body); s.Scan(); {
		series, value, ok := strings.Cut(s.Text(), " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) || !strings.Contains(series, labels) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("%s: %v", s.Text(), err)
		}
		sum += v
	}
	return sum
}

func TestFleetEndToEnd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := startManager(t, "127.0.0.1:0", dir)
	defer func() { m.Shutdown(ctx) }()
	addr := m.Addr()
	api := apiclient.New(m.URL(), adminToken)

	for _, v := range []string{"1.7.2", "1.8.0"} {
		if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "analytics", Version: v, Notes: "release " + v}); err != nil {
			t.Fatal(err)
		}
	}
	specs := []apitypes.NewDeployment{
		{ID: "acme-prod", Customer: "acme", Stack: "analytics"},
		{ID: "globex-prod", Customer: "globex", Stack: "analytics"},
		{ID: "initech-eu", Customer: "initech", Stack: "analytics"},
		{ID: "umbrella-dr", Customer: "umbrella", Stack: "analytics", Cloud: "azure", Region: "westeurope"},
	}
	tokens := map[string]string{}
	for _, s := range specs {
		d, err := api.CreateDeployment(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if d.Token == "" || d.Status != fleet.StatusPending || d.LastCheckin != nil {
			t.Fatalf("new deployment %+v: want a token, pending, no check-in", d)
		}
		tokens[d.ID] = d.Token
	}

	// One push agent, two polling agents; cloud and region from flags or detected.
	startAgent(t, m.URL(), tokens["acme-prod"], "websocket", "1.8.0", config.Agent{Cloud: "aws", Region: "eu-west-1", Platform: "aws_eks"}, nil)
	startAgent(t, m.URL(), tokens["globex-prod"], "http", "1.8.0", config.Agent{}, []string{"K_SERVICE=api", "K_CONFIGURATION=api", "GOOGLE_CLOUD_REGION=us-central1"})
	initech := startAgent(t, m.URL(), tokens["initech-eu"], "http", "1.7.2", config.Agent{Cloud: "aws", Region: "eu-central-1"}, nil)

	want := map[string]struct {
		release, cloud, region string
		mode                   fleet.Mode
		behind                 fleet.BehindReason
	}{
		"acme-prod":   {"1.8.0", "aws", "eu-west-1", fleet.ModePush, ""},
		"globex-prod": {"1.8.0", "gcp", "us-central1", fleet.ModePull, ""},
		"initech-eu":  {"1.7.2", "aws", "eu-central-1", fleet.ModePull, fleet.BehindManualApply},
	}
	eventually(t, 10*time.Second, "three agents healthy with their release, cloud and region", func() error {
		for id, w := range want {
			d, err := api.Deployment(ctx, id)
			if err != nil {
				return err
			}
			if d.Status != fleet.StatusHealthy || d.Release != w.release || d.Cloud != w.cloud || d.Region != w.region ||
				d.Mode != w.mode || d.Behind != w.behind || d.LastCheckin == nil || d.DesiredRelease != "1.8.0" {
				return fmt.Errorf("%s = status %s release %s cloud %s region %s mode %s behind %q", id, d.Status, d.Release, d.Cloud, d.Region, d.Mode, d.Behind)
			}
		}
		return nil
	})
	acme, _ := api.Deployment(ctx, "acme-prod")
	if !acme.Connected || acme.AgentVersion != "periscope-agent/"+opamp.Version || acme.ConfigHash == "" || !acme.Health.Reported {
		t.Fatalf("push deployment details: %+v", acme)
	}

	// The filters and the summary see the same fleet.
	pending, err := api.Deployments(ctx, apiclient.Filter{Status: "pending"})
	if err != nil || len(pending) != 1 || pending[0].ID != "umbrella-dr" {
		t.Fatalf("pending deployments = %v, %v; want only umbrella-dr", pending, err)
	}
	onOld, _ := api.Deployments(ctx, apiclient.Filter{Release: "1.7.2", Cloud: "aws"})
	if len(onOld) != 1 || onOld[0].ID != "initech-eu" {
		t.Fatalf("deployments on 1.7.2 in aws = %v", onOld)
	}
	sum, _ := api.Summary(ctx, apiclient.Filter{})
	if sum.Total != 4 || sum.ByStatus[fleet.StatusHealthy] != 3 || sum.ByStatus[fleet.StatusPending] != 1 ||
		sum.ByRelease["1.8.0"] != 2 || sum.ByRelease["1.7.2"] != 1 || sum.Behind[fleet.BehindManualApply] != 1 {
		t.Fatalf("summary = %+v", sum)
	}

	t.Run("BadTokenIsRefusedAndCreatesNothing", func(t *testing.T) {
		resp := opampPost(t, m.URL(), "pdt_not-a-real-token", &protobufs.AgentToServer{InstanceUid: uuidBytes(), AgentDescription: describe("7.7.7", "")})
		if resp != http.StatusUnauthorized {
			t.Fatalf("OpAMP with a bad token answered %d, want 401", resp)
		}
		refusals := func() float64 {
			return counter(t, m.URL()+"/metrics", "periscope_checkins_rejected_total", `reason="bad_token"`)
		}
		before := refusals()
		bad := startAgent(t, m.URL(), "pdt_wrong", "websocket", "7.7.7", config.Agent{}, nil)
		eventually(t, 10*time.Second, "the bad-token agent refused", func() error {
			if n := refusals(); n <= before {
				return fmt.Errorf("%v bad-token refusals, none yet of the agent", n)
			}
			return nil
		})
		if bad.Connected() {
			t.Fatal("an agent with a bad token reports connected")
		}
		all, _ := api.Deployments(ctx, apiclient.Filter{})
		if len(all) != 4 {
			t.Fatalf("%d deployments after bad-token attempts, want 4", len(all))
		}
		for _, d := range all {
			if d.Release == "7.7.7" {
				t.Fatalf("bad token changed deployment %s", d.ID)
			}
		}
	})

	t.Run("ClaimedIdentityIsIgnored", func(t *testing.T) {
		// umbrella-dr's token, but the message claims to be acme-prod.
		claim := &protobufs.AgentToServer{InstanceUid: mustUUID(t, acme.AgentInstanceUID), AgentDescription: describe("6.6.6", "acme-prod")}
		if code := opampPost(t, m.URL(), tokens["umbrella-dr"], claim); code != http.StatusOK {
			t.Fatalf("OpAMP answered %d", code)
		}
		um, _ := api.Deployment(ctx, "umbrella-dr")
		if um.Release != "6.6.6" || um.Status != fleet.StatusHealthy || um.Cloud != "azure" {
			t.Fatalf("umbrella-dr after its check-in: release %s status %s cloud %s; want 6.6.6 healthy azure", um.Release, um.Status, um.Cloud)
		}
		ac, _ := api.Deployment(ctx, "acme-prod")
		if ac.Release != "1.8.0" {
			t.Fatalf("acme-prod's release became %s through another deployment's token", ac.Release)
		}
	})

	// Stop one polling agent: it turns stale after the 3 s threshold.
	initech.Shutdown(ctx)
	stoppedAt := time.Now()
	eventually(t, 8*time.Second, "stopped agent turns stale", func() error {
		d, err := api.Deployment(ctx, "initech-eu")
		if err != nil {
			return err
		}
		if d.Status != fleet.StatusStale {
			return fmt.Errorf("status %s", d.Status)
		}
		return nil
	})
	if waited := time.Since(stoppedAt); waited < 2*time.Second {
		t.Fatalf("turned stale %v after its agent stopped, before the 3 s threshold could pass", waited)
	}
	evs, err := api.Events(ctx, "initech-eu", 10)
	if err != nil || len(evs) != 3 || evs[0].To != fleet.StatusStale || evs[0].From != fleet.StatusHealthy ||
		evs[1].To != fleet.StatusHealthy || evs[2].To != fleet.StatusPending {
		t.Fatalf("initech-eu history = %+v, %v; want pending → healthy → stale", evs, err)
	}

	// Restart the manager on the same port and data directory.
	before, _ := api.Deployments(ctx, apiclient.Filter{})
	allEvents, _ := api.Events(ctx, "", 1000)
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	m = startManager(t, addr, dir)
	after, err := api.Deployments(ctx, apiclient.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d deployments after restart, %d before", len(after), len(before))
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.ID != b.ID || a.Release != b.Release || a.Cloud != b.Cloud || a.Region != b.Region || a.Customer != b.Customer ||
			a.AgentInstanceUID != b.AgentInstanceUID || (b.LastCheckin != nil && a.LastCheckin == nil) {
			t.Fatalf("deployment changed across restart:\nbefore %+v\nafter  %+v", b, a)
		}
	}
	rels, _ := api.Releases(ctx, "analytics")
	if len(rels) != 2 || rels[0].Version != "1.8.0" || !rels[0].Latest || rels[0].Deployments != 2 {
		t.Fatalf("releases after restart = %+v", rels)
	}
	eventsAfter, _ := api.Events(ctx, "", 1000)
	if len(eventsAfter) < len(allEvents) {
		t.Fatalf("%d events after restart, %d before", len(eventsAfter), len(allEvents))
	}
	for i := range allEvents {
		// The newest events come first; those from before the restart are at the end, unchanged.
		b, a := allEvents[len(allEvents)-1-i], eventsAfter[len(eventsAfter)-1-i]
		if a.DeploymentID != b.DeploymentID || a.To != b.To || !a.At.Equal(b.At) {
			t.Fatalf("event %d changed across restart: %+v → %+v", i, b, a)
		}
	}
	// The agents still running reconnect to the restarted manager on their own.
	eventually(t, 15*time.Second, "running agents check in with the restarted manager", func() error {
		for _, id := range []string{"acme-prod", "globex-prod"} {
			d, err := api.Deployment(ctx, id)
			if err != nil {
				return err
			}
			if d.Status != fleet.StatusHealthy || d.LastCheckin == nil || d.LastCheckin.Before(time.Now().Add(-2*time.Second)) {
				return fmt.Errorf("%s: %s, last check-in %v", id, d.Status, d.LastCheckin)
			}
		}
		if d, _ := api.Deployment(ctx, "acme-prod"); !d.Connected {
			return fmt.Errorf("acme-prod push connection not re-established")
		}
		return nil
	})
	if d, _ := api.Deployment(ctx, "initech-eu"); d.Status != fleet.StatusStale {
		t.Fatalf("initech-eu after restart: %s, want still stale", d.Status)
	}
}

func uuidBytes() []byte { u := uuid.New(); return u[:] }

func mustUUID(t *testing.T, s string) []byte {
	u, err := uuid.Parse(s)
	if err != nil {
		t.Fatalf("instance uid %q: %v", s, err)
	}
	return u[:]
}

func describe(release, claimedID string) *protobufs.AgentDescription {
	kv := func(k, v string) *protobufs.KeyValue {
		return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
	}
	d := &protobufs.AgentDescription{
		IdentifyingAttributes:    []*protobufs.KeyValue{kv("service.name", "impostor"), kv("service.version", "1")},
		NonIdentifyingAttributes: []*protobufs.KeyValue{kv("periscope.release.version", release)},
	}
	if claimedID != "" {
		d.IdentifyingAttributes = append(d.IdentifyingAttributes, kv("periscope.deployment.id", claimedID))
	}
	return d
}

// opampPost sends one OpAMP message over plain HTTP, as a polling agent does.
func opampPost(t *testing.T, base, token string, msg *protobufs.AgentToServer) int {
	t.Helper()
	body, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base+"/v1/opamp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
