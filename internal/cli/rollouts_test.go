package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/rollouts"
	"github.com/periscope-dev/periscope/internal/manager/rollouts/rolloutstest"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// An operator follows a rollout from the CLI, leaves a deployment out and
// aborts it, each with a reason; the audit log has them.
func TestRolloutsFromTheCLI(t *testing.T) {
	ctx := context.Background()
	srv := rolloutstest.NewServer(t, rolloutstest.TwoWaves(), clock.NewFake(now),
		rolloutstest.Member("canary-1", "canary"), rolloutstest.Member("canary-2", "canary"), rolloutstest.Member("main-1", "main"))
	f := srv.Fleet
	ro, err := apiclient.New(srv.URL, "psk_operator").StartRollout(ctx, apitypes.NewRollout{Stack: "shop", Release: "2.0.0", Baseline: "1.0.0", Reason: "published"})
	if err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, error) {
		t.Setenv("XDG_CONFIG_HOME", t.TempDir())
		t.Setenv("PERISCOPE_MANAGER", "")
		t.Setenv("PERISCOPE_TOKEN", "")
		root := newRoot(clock.NewFake(now))
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--manager", srv.URL, "--token", "psk_operator"))
		err := root.Execute()
		return out.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("periscope %s: %v", strings.Join(args, " "), err)
		}
		return out
	}

	contains(t, mustRun("rollouts", "list"), ro.ID, "shop", "2.0.0", "running", "1/2 canary", "operator-token")
	contains(t, mustRun("rollouts", "show", ro.ID), "2.0.0 of shop (from 1.0.0)", "1 canary", "updating since", "canary-1, canary-2",
		"0/2 updated", "2 rest", "waiting", "wave canary opened: 2 deployments move to 2.0.0")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollouts", "skip", ro.ID, "canary-2"}, "--reason"},
		{[]string{"rollouts", "skip", ro.ID}, "accepts 2 arg"},
		{[]string{"rollouts", "resume", ro.ID, "--reason", "go"}, "only a halted rollout resumes"},
		{[]string{"rollouts", "show", "ro-none"}, "ro-none"},
	} {
		if _, err := run(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}

	contains(t, mustRun("rollouts", "skip", ro.ID, "canary-2", "--reason", "customer freeze"), "Skipped:", "canary-2")
	out := mustRun("rollouts", "abort", ro.ID, "--reason", "wrong build", "-o", "json")
	var got apitypes.Rollout
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("abort -o json: %v\n%s", err, out)
	}
	if got.Phase != rollouts.PhaseAborted || len(got.Skipped) != 1 {
		t.Errorf("aborted: %s, skipped %v", got.Phase, got.Skipped)
	}
	for _, m := range f.Members("shop") {
		pinned := m.Pin != nil && m.Pin.Release == "1.0.0" && m.Pin.By == "operator-token"
		if want := m.ID == "canary-1"; pinned != want {
			t.Errorf("%s pinned back %v, want %v (%+v)", m.ID, pinned, want, m.Pin)
		}
	}
	contains(t, mustRun("rollouts", "list", "--unfinished"), ro.ID, "aborted")
}

// An operator rolls a published release out through its stack's plan from
// the CLI, and again as urgent; a stack without a plan says how to get one.
func TestReleasesRolloutFromTheCLI(t *testing.T) {
	ctx := context.Background()
	lm := startManager(t)

	_, err := lm.run(t, "releases", "rollout", "2.0", "--stack", "app")
	if err == nil || !strings.Contains(err.Error(), "stack app has no rollout plan") || !strings.Contains(err.Error(), "rollout-plans/app") {
		t.Fatalf("rollout on a stack without a plan: %v; want the clear error", err)
	}
	plan := apitypes.NewRolloutPlan{Reason: "gold customers first", Waves: []rolloutplan.Wave{
		{Name: "gold", Select: rolloutplan.Selection{Labels: map[string]string{"tier": "gold"}}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "rest", Select: rolloutplan.Selection{Rest: true}}}}
	if err := lm.api.Do(ctx, "PUT", "/api/v1/rollout-plans/app", plan, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := lm.run(t, "releases", "rollout", "9.9", "--stack", "app"); err == nil || !strings.Contains(err.Error(), "9.9 of stack app is not published") {
		t.Errorf("rollout of an unpublished release: %v", err)
	}
	out := lm.mustRun(t, "releases", "rollout", "2.0", "--stack", "app", "--reason", "ship the gold tier first")
	contains(t, out, "of 2.0 to app started through 2 waves", "2.0 of app (from 1.0)", "1 gold", "acme-prod, globex")
	if _, err := lm.run(t, "releases", "rollout", "2.0", "--stack", "app", "--urgent"); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Errorf("urgent without a reason: %v", err)
	}
	lm.clk.Advance(time.Minute) // newest first: the urgent one starts later
	lm.mustRun(t, "releases", "rollout", "2.0", "--stack", "app", "--urgent", "--reason", "security fix")
	// A stack without a plan (db) publishes an urgent release as one wave of
	// everyone, which ignores the update windows.
	if _, err := lm.run(t, "releases", "create", "1.1", "--stack", "db", "--urgent"); err == nil || !strings.Contains(err.Error(), "say why the release is urgent") {
		t.Errorf("an urgent release without a reason: %v", err)
	}
	contains(t, lm.mustRun(t, "releases", "create", "1.1", "--stack", "db", "--urgent", "--reason", "CVE-2026-1234"), "Release 1.1 of db published", "Urgent")
	if db, err := lm.m.Rollouts().List(ctx, store.RolloutFilter{Stack: "db"}); err != nil || len(db) != 1 || !db[0].Urgent || db[0].Reason != "CVE-2026-1234" {
		t.Errorf("rollouts of db: %+v, %v; want the urgent one", db, err)
	}
	rs, err := lm.m.Rollouts().List(ctx, store.RolloutFilter{Stack: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || !rs[0].Urgent || rs[0].StartedBy != "release-bot" || rs[0].Reason != "security fix" || rs[1].Phase != rollouts.PhaseSuperseded {
		t.Errorf("rollouts of app: %+v; want the urgent one by release-bot superseding the first", rs)
	}
}
