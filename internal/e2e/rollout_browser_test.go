package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/testenv/browser"
)

// TestRolloutViewInBrowser: release 2.0 rolls out to stack shop through a
// canary wave; one canary's update hook fails, so the rollout halts and pins
// it back. The operator finds the rollout on the releases page, reads the
// halted wave (the failed gate in red, the offender pinned back, the
// timeline), and aborts it with a reason through the page's form; the page
// then shows it aborted and links the audit entry.
func TestRolloutViewInBrowser(t *testing.T) {
	browser.Chromium(t)
	ctx := context.Background()
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), adminToken
	cfg.HeartbeatInterval = config.Duration(time.Second)
	cfg.StaleAfter = config.Duration(time.Minute)
	cfg.Rollouts.CheckEvery = config.Duration(200 * time.Millisecond)
	cfg.Rollouts.Plans = []rolloutplan.Plan{{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "canary", Select: rolloutplan.Selection{Labels: map[string]string{"ring": "canary"}}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "rest", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(time.Hour)},
	}}}
	m := runManager(t, cfg)
	api := apiclient.New(m.URL(), adminToken)
	operator := apiToken(t, api, "oncall", "operator")
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	hooks := map[string]string{"canary-good": "", "canary-bad": `echo "helm: disk full on node-3" >&2; exit 3`, "main-eu": ""}
	for _, id := range []string{"canary-good", "canary-bad", "main-eu"} {
		ring := "main"
		if strings.HasPrefix(id, "canary") {
			ring = "canary"
		}
		nd, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: id, Stack: "shop", Labels: map[string]string{"ring": ring}})
		if err != nil {
			t.Fatal(err)
		}
		hookAgent(t, m.URL(), nd.Token, "websocket", hooks[id])
	}
	for id := range hooks {
		waitFor(t, api, id, 20*time.Second, "healthy on 1.0", func(v rolloutView) bool {
			return v.Status == fleet.StatusHealthy && v.Release == "1.0"
		})
	}
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, api, "canary-bad", 20*time.Second, "pinned back to 1.0 by the halt", func(v rolloutView) bool {
		return v.Pinned && v.DesiredRelease == "1.0"
	})
	waitFor(t, api, "canary-good", 20*time.Second, "on 2.0", func(v rolloutView) bool { return v.Release == "2.0" })

	b := browser.Start(t, m.URL(), browser.Options{})
	b.Visit("/login")
	signIn(t, b, operator)
	b.Visit("/releases")
	b.WaitFor(`table.rollouts tr[data-rollout] .badge.st-unhealthy`)
	b.Click(`table.rollouts tr[data-rollout] a`)
	b.WaitFor(`#rollout-halt`)
	if got := b.Attr(`#rollout-phase`, "data-phase"); got != "halted" {
		t.Fatalf("the rollout page says %q, want halted", got)
	}
	if b.Count(`li.wave[data-wave="canary"][data-phase="halted"] li.gate.fail[data-gate="failed updates"]`) != 1 {
		t.Error("the canary wave does not show its failed-updates gate failing")
	}
	if b.Count(`li.wave[data-wave="canary"] tr.offender[data-deployment="canary-bad"] a[href="/deployments/canary-bad"]`) != 1 {
		t.Error("canary-bad is not marked as the offender with a link to its page")
	}
	if b.Count(`li.wave[data-wave="rest"][data-phase="waiting"]`) != 1 {
		t.Error("the rest wave is not waiting")
	}
	if b.Count(`#timeline li[data-kind="halted"]`) != 1 {
		t.Error("the timeline does not show the halt")
	}
	b.ReadmeShot("rollout.png")

	b.Type(`#abort-reason`, "2.0 fails to install on canary-bad's nodes")
	b.Click(`#abort-form button[type=submit]`)
	b.WaitFor(`#rollout-done`)
	if got := b.Attr(`#rollout-phase`, "data-phase"); got != "aborted" {
		t.Errorf("after the abort the page says %q, want aborted", got)
	}
	if b.Count(`#abort-form`) != 0 || b.Count(`#timeline li[data-kind="aborted"]`) != 1 {
		t.Error("after the abort the page still offers it, or its timeline lacks it")
	}
	b.Click(`#rollout-done a[href^="/audit"]`)
	b.WaitFor(`#audit`)
	if txt := b.Text(`#audit`); !strings.Contains(txt, "oncall") || !strings.Contains(txt, "2.0 fails to install on canary-bad's nodes") {
		t.Errorf("the audit page does not show the abort by oncall with its reason: %q", txt)
	}
	waitFor(t, api, "canary-good", 20*time.Second, "pinned back to 1.0 by the abort", func(v rolloutView) bool {
		return v.Pinned && v.DesiredRelease == "1.0"
	})
}
