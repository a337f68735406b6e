package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// rolloutView is the part of a deployment's API view the rollout test reads.
type rolloutView struct {
	ID               string             `json:"id"`
	Status           fleet.Status       `json:"status"`
	StatusReason     string             `json:"status_reason"`
	StatusReasonCode string             `json:"status_reason_code"`
	Release          string             `json:"release"`
	DesiredRelease   string             `json:"desired_release"`
	Pinned           bool               `json:"pinned"`
	Behind           fleet.BehindReason `json:"behind"`
	NextPollExpected *time.Time         `json:"next_poll_expected"`
	Update           fleet.UpdateState  `json:"update"`
	Regression       *fleet.Regression  `json:"regression"`
}

func getView(ctx context.Context, api *apiclient.Client, id string) (rolloutView, error) {
	var v rolloutView
	err := api.Do(ctx, "GET", "/api/v1/deployments/"+id, nil, &v)
	return v, err
}

// waitFor polls deployment id until check passes, and returns the last view.
func waitFor(t *testing.T, api *apiclient.Client, id string, within time.Duration, what string, check func(v rolloutView) bool) rolloutView {
	t.Helper()
	var v rolloutView
	eventually(t, within, id+": "+what, func() error {
		var err error
		if v, err = getView(context.Background(), api, id); err != nil {
			return err
		}
		if !check(v) {
			return fmt.Errorf("now %s (%s: %s) on %s, desired %s, pinned %v, behind %q, update %+v",
				v.Status, v.StatusReasonCode, v.StatusReason, v.Release, v.DesiredRelease, v.Pinned, v.Behind, v.Update)
		}
		return nil
	})
	return v
}

func startRolloutManager(t *testing.T, dir string) *manager.Manager {
	t.Helper()
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", dir, adminToken
	cfg.HeartbeatInterval = config.Duration(time.Second)
	cfg.StaleAfter = config.Duration(3 * time.Second)
	cfg.Regression.MinRequests = 10
	cfg.Regression.CheckEvery = config.Duration(200 * time.Millisecond)
	return runManager(t, cfg)
}

// runManager starts a manager with cfg, evaluating and flushing every 100 ms,
// and stops it when the test ends.
func runManager(t *testing.T, cfg config.Manager) *manager.Manager {
	t.Helper()
	m, err := manager.New(cfg, manager.Settings{Logger: logger(t), EvalInterval: 100 * time.Millisecond, FlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

// hookAgent runs a periscope-agent whose update hook takes a second (so the
// manager sees it updating) and appends each release it applies to a file.
func hookAgent(t *testing.T, managerURL, token, transport, hook string) (*agentProc, string) {
	t.Helper()
	dir := t.TempDir()
	applied := filepath.Join(dir, "applied")
	if hook == "" {
		hook = "sleep 1; echo {{.Release}} >> " + applied
	}
	p := runAgent(t, "off", freePort(t), "--manager", managerURL, "--token", token, "--release", "1.0",
		"--transport", transport, "--heartbeat-interval", "1s", "--data-dir", filepath.Join(dir, "data"), "--update-command", hook)
	return p, applied
}

// statusesOf returns a deployment's status history, oldest first, as
// "status@release" strings.
func statusesOf(t *testing.T, api *apiclient.Client, id string) []string {
	t.Helper()
	evs, err := api.Events(context.Background(), id, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(evs) - 1; i >= 0; i-- {
		out = append(out, fmt.Sprintf("%s@%s", evs[i].To, evs[i].Release))
	}
	return out
}

// inOrder reports whether want appears in got as a subsequence.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

type pinResult struct {
	ChangeID  string            `json:"change_id"`
	Changed   []fleet.PinChange `json:"changed"`
	Unchanged int               `json:"unchanged"`
}

// TestReleaseRolloutEndToEnd is issue 5's story with real agent processes: a
// release reaches push and pull deployments through their update hooks, one
// regresses and is rolled back, the fleet is pinned and unpinned, a failing hook
// shows as failed, and a pull deployment that stops polling goes behind, then stale.
func TestReleaseRolloutEndToEnd(t *testing.T) {
	ctx := context.Background()
	m := startRolloutManager(t, t.TempDir())
	api := apiclient.New(m.URL(), adminToken)
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, id := range []string{"acme-prod", "globex-prod", "initech-eu", "umbrella-dr"} {
		d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: strings.Split(id, "-")[0], Stack: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[id] = d.Token
	}
	acme, acmeApplied := hookAgent(t, m.URL(), tokens["acme-prod"], "websocket", "")
	globex, globexApplied := hookAgent(t, m.URL(), tokens["globex-prod"], "http", "")
	hookAgent(t, m.URL(), tokens["initech-eu"], "http", `echo "helm: release {{.Release}}: disk full on node-3" >&2; exit 3`)
	umbrella, _ := hookAgent(t, m.URL(), tokens["umbrella-dr"], "http", "")
	for id := range tokens {
		waitFor(t, api, id, 15*time.Second, "healthy on 1.0", func(v rolloutView) bool {
			return v.Status == fleet.StatusHealthy && v.Release == "1.0" && v.Behind == ""
		})
	}

	// Release 1.0 serves well on both: 30 requests each, no errors, two minutes
	// ago; each batch of requests lies within one minute, as rollups count them.
	minute := time.Now().Truncate(time.Minute)
	before := minute.Add(-2*time.Minute + time.Second)
	for _, p := range []*agentProc{acme, globex} {
		a := newApp(t, p.http)
		a.requests(before, 30, 0, 20*time.Millisecond, false)
		a.shutdown(t)
	}

	// Umbrella's agent hangs: it stops polling before the release is published.
	if err := umbrella.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer umbrella.cmd.Process.Signal(syscall.SIGCONT)

	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	v := waitFor(t, api, "umbrella-dr", 2*time.Second, "behind: pull-pending", func(v rolloutView) bool {
		return v.Behind == fleet.BehindPullPending && v.DesiredRelease == "2.0" && v.NextPollExpected != nil
	})
	if v.Status == fleet.StatusStale {
		t.Fatalf("umbrella-dr stale already: %+v", v)
	}
	for _, id := range []string{"acme-prod", "globex-prod"} {
		waitFor(t, api, id, 15*time.Second, "healthy on 2.0", func(v rolloutView) bool {
			return v.Status == fleet.StatusHealthy && v.Release == "2.0" && v.Behind == "" && v.Update.Phase == fleet.UpdateApplied
		})
		if h := statusesOf(t, api, id); !inOrder(h, []string{"healthy@1.0", "updating@1.0", "healthy@2.0"}) {
			t.Fatalf("%s status history %v: want healthy on 1.0, updating, healthy on 2.0", id, h)
		}
	}
	for path, want := range map[string]string{acmeApplied: "2.0\n", globexApplied: "2.0\n"} {
		if b, _ := os.ReadFile(path); string(b) != want {
			t.Fatalf("hook ran with %q, want %q", b, want)
		}
	}
	v = waitFor(t, api, "initech-eu", 10*time.Second, "failed with the hook's error", func(v rolloutView) bool {
		return v.Status == fleet.StatusFailed && v.Behind == fleet.BehindUpdateFailed
	})
	if !strings.Contains(v.StatusReason, "disk full on node-3") || !strings.Contains(v.StatusReason, "exit status 3") {
		t.Fatalf("failed reason %q: want the hook's stderr and exit status", v.StatusReason)
	}
	waitFor(t, api, "umbrella-dr", 10*time.Second, "stale and still behind: pull-pending", func(v rolloutView) bool {
		return v.Status == fleet.StatusStale && v.Behind == fleet.BehindPullPending && v.Release == "1.0"
	})

	// Release 2.0 breaks globex: half its requests fail; acme stays clean.
	after := minute.Add(time.Second)
	ga := newApp(t, globex.http)
	ga.requests(after, 30, 15, 20*time.Millisecond, false)
	ga.shutdown(t)
	aa := newApp(t, acme.http)
	aa.requests(after, 30, 0, 20*time.Millisecond, false)
	aa.shutdown(t)
	v = waitFor(t, api, "globex-prod", 15*time.Second, "unhealthy: regressed-after-release", func(v rolloutView) bool {
		return v.Status == fleet.StatusUnhealthy && v.StatusReasonCode == fleet.ReasonRegressed
	})
	if r := v.Regression; r == nil || r.Release != "2.0" || r.Previous != "1.0" || r.Requests != 30 || r.PreviousRequests != 30 ||
		r.ErrorRate != 0.5 || r.PreviousErrorRate != 0 {
		t.Fatalf("regression evidence %+v: want 15/30 errors on 2.0 against 0/30 on 1.0", v.Regression)
	}
	if !strings.Contains(v.StatusReason, "error rate 50.0% vs 0.0%") {
		t.Fatalf("reason %q does not give the figures", v.StatusReason)
	}
	if v, _ := getView(ctx, api, "acme-prod"); v.Status != fleet.StatusHealthy {
		t.Fatalf("acme-prod %s (%s): the clean deployment was flagged", v.Status, v.StatusReason)
	}

	// Roll globex back: it applies 1.0 and is healthy, pinned.
	var res pinResult
	if err := api.Do(ctx, "POST", "/api/v1/deployments/globex-prod/rollback", map[string]string{"reason": "errors on 2.0 (INC-7)"}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 1 || res.Changed[0].To != "1.0" || res.Changed[0].From != "2.0" || res.Changed[0].Reason != "errors on 2.0 (INC-7)" {
		t.Fatalf("rollback answered %+v", res)
	}
	waitFor(t, api, "globex-prod", 15*time.Second, "healthy on 1.0, pinned", func(v rolloutView) bool {
		return v.Status == fleet.StatusHealthy && v.Release == "1.0" && v.Pinned && v.DesiredRelease == "1.0" && v.Behind == ""
	})
	if b, _ := os.ReadFile(globexApplied); string(b) != "2.0\n1.0\n" {
		t.Fatalf("globex hook ran with %q, want 2.0 then 1.0", b)
	}

	// Pin everything to 1.0: acme (push) follows at once; then unpin all.
	if err := api.Do(ctx, "POST", "/api/v1/pins", map[string]any{"action": "pin", "all": true, "release": "1.0", "reason": "freeze for INC-7"}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 3 || res.Unchanged != 1 {
		t.Fatalf("pin all: %d changed, %d unchanged; want 3 (globex already pinned to 1.0)", len(res.Changed), res.Unchanged)
	}
	waitFor(t, api, "acme-prod", 15*time.Second, "healthy on 1.0, pinned", func(v rolloutView) bool {
		return v.Status == fleet.StatusHealthy && v.Release == "1.0" && v.Pinned
	})
	if err := api.Do(ctx, "POST", "/api/v1/pins", map[string]any{"action": "unpin", "all": true, "reason": "INC-7 resolved"}, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 4 {
		t.Fatalf("unpin all changed %d, want 4", len(res.Changed))
	}
	waitFor(t, api, "acme-prod", 15*time.Second, "back on 2.0, unpinned", func(v rolloutView) bool {
		return v.Status == fleet.StatusHealthy && v.Release == "2.0" && !v.Pinned
	})
	waitFor(t, api, "globex-prod", 15*time.Second, "back on 2.0, unpinned", func(v rolloutView) bool {
		return v.Release == "2.0" && !v.Pinned && v.DesiredRelease == "2.0"
	})
	if b, _ := os.ReadFile(acmeApplied); string(b) != "2.0\n1.0\n2.0\n" {
		t.Fatalf("acme hook ran with %q, want 2.0, 1.0, 2.0", b)
	}
}
