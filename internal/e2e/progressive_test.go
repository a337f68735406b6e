package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
)

// waveView is the part of a deployment's API view a progressive rollout
// changes.
type waveView struct {
	rolloutView
	Wave     string     `json:"wave"`
	Expected *time.Time `json:"expected"`
	Pin      *fleet.Pin `json:"pin"`
}

func getWaveView(t *testing.T, api *apiclient.Client, id string) waveView {
	t.Helper()
	var v waveView
	if err := api.Do(context.Background(), "GET", "/api/v1/deployments/"+id, nil, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// rolloutOf waits for the rollout of release to reach phase and returns it.
func rolloutOf(t *testing.T, api *apiclient.Client, release string, phase rollouts.Phase, within time.Duration) apitypes.Rollout {
	t.Helper()
	var got apitypes.Rollout
	eventually(t, within, "rollout of "+release+" "+string(phase), func() error {
		rs, err := api.Rollouts(context.Background(), "shop", false, 10)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Release == release {
				got = r
				if r.Phase == phase {
					return nil
				}
				return fmt.Errorf("rollout %s is %s at wave %d", r.ID, r.Phase, r.Wave)
			}
		}
		return fmt.Errorf("no rollout of %s among %d", release, len(rs))
	})
	return got
}

// TestProgressiveRolloutEndToEnd is issue 23's story with real agent
// processes, push and pull, applying releases through their update hooks, and
// traffic sent through the OpenTelemetry SDK: six deployments in three waves;
// release 2.0 passes the canaries, regresses on one deployment of the second
// wave, which halts the rollout and pins that deployment back while the last
// wave never sees 2.0; the fixed 2.1 then goes through all three waves.
func TestProgressiveRolloutEndToEnd(t *testing.T) {
	ctx := context.Background()
	notes := make(chan apitypes.NotificationEvent, 32)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev apitypes.NotificationEvent
		if json.NewDecoder(r.Body).Decode(&ev) == nil {
			select {
			case notes <- ev:
			default:
			}
		}
	}))
	defer hook.Close()

	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), adminToken
	cfg.HeartbeatInterval = config.Duration(time.Second)
	cfg.StaleAfter = config.Duration(5 * time.Second)
	cfg.Regression.MinRequests = 10
	cfg.Regression.CheckEvery = config.Duration(200 * time.Millisecond)
	cfg.Notifications.Webhooks = []config.Webhook{{Name: "ops", URL: hook.URL, Statuses: []string{"rollout"}}}
	cfg.Rollouts.CheckEvery = config.Duration(200 * time.Millisecond)
	cfg.Rollouts.Plans = []rolloutplan.Plan{{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "canary", Select: rolloutplan.Selection{Labels: map[string]string{"ring": "canary"}}, Bake: rolloutplan.Duration(2 * time.Second)},
		// Long enough for the regression detector to see the second wave's traffic.
		{Name: "early", Select: rolloutplan.Selection{Labels: map[string]string{"ring": "early"}}, Bake: rolloutplan.Duration(20 * time.Second)},
		{Name: "rest", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(time.Second)},
	}}}
	m := runManager(t, cfg)
	api := apiclient.New(m.URL(), adminToken)

	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	type dep struct{ id, ring, transport string }
	deps := []dep{{"canary-ws", "canary", "websocket"}, {"canary-http", "canary", "http"}, {"early-ws", "early", "websocket"},
		{"early-http", "early", "http"}, {"rest-ws", "rest", "websocket"}, {"rest-http", "rest", "http"}}
	agents, applied := map[string]*agentProc{}, map[string]string{}
	for _, d := range deps {
		nd, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: d.id, Customer: d.id, Stack: "shop", Labels: map[string]string{"ring": d.ring}})
		if err != nil {
			t.Fatal(err)
		}
		agents[d.id], applied[d.id] = hookAgent(t, m.URL(), nd.Token, d.transport, "")
	}
	for _, d := range deps {
		waitFor(t, api, d.id, 20*time.Second, "healthy on 1.0", func(v rolloutView) bool {
			return v.Status == fleet.StatusHealthy && v.Release == "1.0" && v.Behind == ""
		})
	}
	// early-ws serves cleanly on 1.0: the regression detector's baseline.
	minute := time.Now().Truncate(time.Minute)
	a := newApp(t, agents["early-ws"].http)
	a.requests(minute.Add(-2*time.Minute+time.Second), 30, 0, 20*time.Millisecond, false)
	a.shutdown(t)

	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	// The last wave waits, and says for which wave.
	if v := getWaveView(t, api, "rest-ws"); v.DesiredRelease != "1.0" || v.Behind != fleet.BehindWaitingForWave || v.Wave != "rest" || v.Expected == nil {
		t.Fatalf("rest-ws right after 2.0 was published: desired %s, behind %q, wave %q, expected %v", v.DesiredRelease, v.Behind, v.Wave, v.Expected)
	}
	for _, id := range []string{"canary-ws", "canary-http"} {
		waitFor(t, api, id, 20*time.Second, "healthy on 2.0", func(v rolloutView) bool {
			return v.Status == fleet.StatusHealthy && v.Release == "2.0"
		})
	}
	if v := getWaveView(t, api, "early-http"); v.Release != "1.0" {
		t.Fatalf("early-http runs %s while the canaries bake", v.Release)
	}
	for _, id := range []string{"early-ws", "early-http"} {
		waitFor(t, api, id, 20*time.Second, "on 2.0 once the canaries baked", func(v rolloutView) bool { return v.Release == "2.0" })
	}

	// Release 2.0 breaks early-ws: half its requests fail.
	a = newApp(t, agents["early-ws"].http)
	a.requests(minute.Add(time.Second), 30, 15, 20*time.Millisecond, false)
	a.shutdown(t)

	ro := rolloutOf(t, api, "2.0", rollouts.PhaseHalted, 20*time.Second)
	if ro.Halt == nil || ro.Halt.Wave != "early" || !strings.Contains(ro.Halt.Reason, "gate regressed failed") ||
		!strings.Contains(ro.Halt.Reason, "early-ws (error rate 50.0% vs 0.0%") {
		t.Fatalf("halt %+v: want the regressed gate in wave early, naming early-ws with its figures", ro.Halt)
	}
	waitFor(t, api, "early-ws", 20*time.Second, "pinned back to 1.0 and healthy", func(v rolloutView) bool {
		return v.Status == fleet.StatusHealthy && v.Release == "1.0" && v.Pinned && v.DesiredRelease == "1.0"
	})
	if b, _ := os.ReadFile(applied["early-ws"]); string(b) != "2.0\n1.0\n" {
		t.Fatalf("early-ws hook ran with %q, want 2.0 then 1.0", b)
	}
	if wv := getWaveView(t, api, "early-ws"); wv.Pin == nil || wv.Pin.By != "rollout:"+ro.ID || !strings.Contains(wv.Pin.Reason, "gate regressed failed") {
		t.Fatalf("early-ws pin %+v: want the rollout's, saying which gate", wv.Pin)
	}
	if wv := getWaveView(t, api, "early-http"); wv.Release != "2.0" || wv.Pinned {
		t.Fatalf("early-http (clean) on %s, pinned %v: want 2.0, unpinned", wv.Release, wv.Pinned)
	}
	for _, id := range []string{"rest-ws", "rest-http"} {
		wv := getWaveView(t, api, id)
		if wv.Release != "1.0" || wv.DesiredRelease != "1.0" || wv.Behind != fleet.BehindWaitingForWave || wv.Expected != nil {
			t.Fatalf("%s: on %s, desired %s, behind %q, expected %v; want 1.0, waiting for a wave with no expected time while halted",
				id, wv.Release, wv.DesiredRelease, wv.Behind, wv.Expected)
		}
		if b, _ := os.ReadFile(applied[id]); len(b) != 0 {
			t.Fatalf("%s applied %q during a halted rollout", id, b)
		}
	}
	halts, err := api.Audit(ctx, apitypes.AuditQuery{Action: "rollout.halt"})
	if err != nil || len(halts.Items) != 1 || !strings.Contains(halts.Items[0].Reason, "early-ws") || halts.Items[0].Actor != "rollout:"+ro.ID {
		t.Fatalf("halt audit %+v, %v: want one entry by the rollout naming early-ws", halts.Items, err)
	}
	pins, err := api.Audit(ctx, apitypes.AuditQuery{Action: "pin.", Deployment: "early-ws"})
	if err != nil || len(pins.Items) != 1 || pins.Items[0].Actor != "rollout:"+ro.ID || !strings.Contains(pins.Items[0].Reason, "regressed") {
		t.Fatalf("pin audit of early-ws %+v, %v: want the rollout's pin-back with its reason", pins.Items, err)
	}
	select {
	case n := <-notes:
		if n.Kind != "rollout" || n.State != "entered" || !strings.Contains(n.Reason, "halted") || !strings.Contains(n.Reason, "pinned back early-ws") {
			t.Fatalf("notification %+v: want a rollout halt naming the deployment pinned back", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification of the halt")
	}

	// The fixed 2.1 goes through every wave; the rollout's pin on early-ws
	// is lifted when 2.1 reaches its wave.
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "2.1"}); err != nil {
		t.Fatal(err)
	}
	rolloutOf(t, api, "2.1", rollouts.PhaseCompleted, 60*time.Second)
	for _, d := range deps {
		waitFor(t, api, d.id, 20*time.Second, "healthy on 2.1, unpinned", func(v rolloutView) bool {
			return v.Status == fleet.StatusHealthy && v.Release == "2.1" && !v.Pinned && v.Behind == ""
		})
	}
	for id, want := range map[string]string{"rest-ws": "2.1\n", "rest-http": "2.1\n", "early-ws": "2.0\n1.0\n2.1\n", "canary-ws": "2.0\n2.1\n"} {
		if b, _ := os.ReadFile(applied[id]); string(b) != want {
			t.Fatalf("%s hook ran with %q, want %q", id, b, want)
		}
	}
	select {
	case n := <-notes:
		if n.Kind != "rollout" || n.State != "resolved" || !strings.Contains(n.Reason, "2.1") || !strings.Contains(n.Reason, "completed") {
			t.Fatalf("notification %+v: want the completion of 2.1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification of the completion")
	}
}
