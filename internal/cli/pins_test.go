package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// The release verbs run against a real manager in-process (its registry on its
// DuckDB store), the clock fixed at now, as the operator token "release-bot".

const day = 24 * time.Hour

type liveManager struct {
	m   *manager.Manager
	clk *clock.Fake
	// token is the operator token "release-bot"; api is a client holding it.
	token string
	api   *apiclient.Client
}

func checkin(t *testing.T, m *manager.Manager, id, release string, accepts bool) {
	t.Helper()
	rep := registry.Report{Mode: fleet.ModePull, AcceptsReleases: &accepts}
	if release != "" {
		rep.Description = &registry.Description{Release: release}
	}
	if _, err := m.Registry().Checkin(id, rep); err != nil {
		t.Fatal(err)
	}
}

// startManager runs a manager with this fleet, the clock at now:
//
//	acme-prod  acme    app  tier=gold  runs 1.0
//	acme-dr    acme    app             runs 1.0
//	globex     globex  app  tier=gold  runs 2.0, ran 1.0 before
//	initech    initech app             runs 1.0, cannot apply releases itself
//	acme-db    acme    db              runs 1.0, the latest of db
//
// app 1.0 and db 1.0 were published at now-10d, app 2.0 at now-3d.
func startManager(t *testing.T) *liveManager {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(now.Add(-10 * day))
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", t.TempDir(), "psk_cli-pins-admin"
	m, err := manager.New(cfg, manager.Settings{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	admin := apiclient.New(m.URL(), cfg.AdminToken)
	var tok apitypes.Token
	if err := admin.Do(ctx, "POST", "/api/v1/tokens", apitypes.NewToken{Name: "release-bot", Role: "operator"}, &tok); err != nil {
		t.Fatal(err)
	}
	lm := &liveManager{m: m, clk: clk, token: tok.Secret, api: apiclient.New(m.URL(), tok.Secret)}
	if _, err := lm.api.CreateDeployments(ctx, []apitypes.NewDeployment{
		{ID: "acme-prod", Customer: "acme", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "acme-dr", Customer: "acme", Stack: "app"},
		{ID: "globex", Customer: "globex", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "initech", Customer: "initech", Stack: "app"},
		{ID: "acme-db", Customer: "acme", Stack: "db"},
	}); err != nil {
		t.Fatal(err)
	}
	publish := func(stack, version string) {
		if _, err := lm.api.CreateRelease(ctx, apitypes.NewRelease{Stack: stack, Version: version}); err != nil {
			t.Fatal(err)
		}
	}
	publish("app", "1.0")
	publish("db", "1.0")
	for _, id := range []string{"acme-prod", "acme-dr", "globex", "initech", "acme-db"} {
		checkin(t, m, id, "1.0", id != "initech")
	}
	clk.Set(now.Add(-3 * day))
	publish("app", "2.0")
	clk.Set(now.Add(-1 * day))
	checkin(t, m, "globex", "2.0", true)
	clk.Set(now)
	for _, id := range []string{"acme-prod", "acme-dr", "globex", "initech", "acme-db"} {
		checkin(t, m, id, "", id != "initech")
	}
	return lm
}

// run executes the periscope command with args against the manager.
func (lm *liveManager) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("PERISCOPE_MANAGER", "")
	t.Setenv("PERISCOPE_TOKEN", "")
	root := newRoot(clock.NewFake(now))
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(append(args, "--manager", lm.m.URL(), "--token", lm.token))
	err := root.Execute()
	return stdout.String(), err
}

// mustRun is run that fails the test on an error.
func (lm *liveManager) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := lm.run(t, args...)
	if err != nil {
		t.Fatalf("periscope %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (lm *liveManager) pin(t *testing.T, id string) *apitypes.Deployment {
	t.Helper()
	d, err := lm.api.Deployment(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

func contains(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// inOrder checks that the lines containing each of want come in that order.
func inOrder(t *testing.T, out string, want ...string) {
	t.Helper()
	at := -1
	for _, w := range want {
		i := strings.Index(out, w)
		if i <= at {
			t.Fatalf("want %q in this order:\n%s", want, out)
		}
		at = i
	}
}

func TestPinVerbs(t *testing.T) {
	lm := startManager(t)
	out := lm.mustRun(t, "pin", "acme-prod", "--release", "1.0", "--reason", "hold for the SOC 2 audit")
	contains(t, out, "DEPLOYMENT", "FROM", "TO", "RUNNING", "1 changed, 0 already as asked (change chg-")
	if !strings.Contains(out, "acme-prod   2.0   1.0  1.0") {
		t.Errorf("want the row acme-prod, from 2.0, to 1.0, running 1.0:\n%s", out)
	}
	if d := lm.pin(t, "acme-prod"); d.Pin == nil || d.Pin.Release != "1.0" || d.Pin.By != "release-bot" || d.Pin.Reason != "hold for the SOC 2 audit" {
		t.Fatalf("acme-prod pin %+v", d.Pin)
	}

	// Across stacks: acme-prod is already as asked.
	out = lm.mustRun(t, "pin", "--all", "--release", "1.0", "--reason", "freeze")
	contains(t, out, "acme-db", "acme-dr", "globex", "initech", "4 changed, 1 already as asked")

	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"pin", "--release", "1.0", "--reason", "r"}, []string{"--all", "name them"}},
		{[]string{"unpin"}, []string{"--all"}},
		{[]string{"pin", "acme-prod", "--stack", "app", "--release", "1.0", "--reason", "r"}, []string{"not both"}},
		{[]string{"unpin", "--all", "--customer", "acme"}, []string{"--all"}},
		{[]string{"pin", "--stack", "app", "--label", "tier", "--release", "1.0", "--reason", "r"}, []string{"key=value"}},
		{[]string{"pin", "acme-prod", "--release", "1.0"}, []string{"reason"}},
		{[]string{"pin", "--stack", "app", "--release", "9.9", "--reason", "r"}, []string{"400", `"9.9"`}},
		{[]string{"rollback", "acme-prod", "--reason", "r"}, []string{"400", "no earlier release", "acme-prod"}},
	} {
		if _, err := lm.run(t, tc.args...); err == nil {
			t.Errorf("periscope %s was accepted", strings.Join(tc.args, " "))
		} else {
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("periscope %s: error %q does not say %q", strings.Join(tc.args, " "), err, s)
				}
			}
		}
	}

	// None of the refused ones reached the audit trail.
	if hist, err := lm.api.PinHistory(context.Background(), "", 100); err != nil || len(hist) != 5 {
		t.Fatalf("audit trail has %d entries (%v), want the 5 of the two pins", len(hist), err)
	}

	out = lm.mustRun(t, "unpin", "--running", "2.0", "--reason", "2.0 is fine on globex")
	contains(t, out, "globex", "1 changed, 0 already as asked")
	out = lm.mustRun(t, "unpin", "acme-prod")
	contains(t, out, "acme-prod", "1.0", "2.0", "1 changed, 0 already as asked")
	out = lm.mustRun(t, "unpin", "--label", "tier=gold")
	contains(t, out, "Nothing changed: 2 already as asked.")
	out = lm.mustRun(t, "unpin", "--customer", "acme", "--stack", "app")
	contains(t, out, "acme-dr", "1 changed, 1 already as asked")
	out = lm.mustRun(t, "unpin", "--stack", "db", "--status", "healthy")
	contains(t, out, "acme-db", "1 changed, 0 already as asked")
	out = lm.mustRun(t, "unpin", "acme-prod", "acme-dr")
	contains(t, out, "Nothing changed: 2 already as asked.")
	if d := lm.pin(t, "initech"); d.Pin == nil {
		t.Fatal("initech was not selected by any unpin, yet it is unpinned")
	}

	out = lm.mustRun(t, "rollback", "globex", "--reason", "error rate 8% on 2.0", "-o", "json")
	var res apitypes.PinResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-o json printed %s: %v", out, err)
	}
	if len(res.Changed) != 1 || res.Changed[0].Action != fleet.ActionRollback || res.Changed[0].From != "2.0" || res.Changed[0].To != "1.0" ||
		res.Changed[0].Running != "2.0" || res.Changed[0].By != "release-bot" {
		t.Fatalf("rollback printed %+v", res)
	}
	if d := lm.pin(t, "globex"); d.Pin == nil || d.Pin.Release != "1.0" || d.Pin.Reason != "error rate 8% on 2.0" {
		t.Fatalf("globex pin %+v", d.Pin)
	}
	out = lm.mustRun(t, "deployments", "show", "globex")
	contains(t, out, "Previous release", "Pin", "1.0 by release-bot", "error rate 8% on 2.0")
}

func TestPinsHistoryVerb(t *testing.T) {
	lm := startManager(t)
	for i, args := range [][]string{
		{"pin", "acme-prod", "--release", "1.0", "--reason", "first"},
		{"pin", "initech", "--release", "1.0", "--reason", "elsewhere"},
		{"unpin", "acme-prod", "--reason", "second"},
		{"pin", "acme-prod", "acme-dr", "--release", "1.0", "--reason", "third"},
	} {
		lm.mustRun(t, args...)
		lm.clk.Advance(time.Duration(i+1) * time.Minute)
	}
	out := lm.mustRun(t, "pins", "--deployment", "acme-prod")
	contains(t, out, "AT", "CHANGE", "ACTION", "BY", "REASON", "release-bot")
	inOrder(t, out, "third", "second", "first")
	if strings.Contains(out, "elsewhere") || strings.Contains(out, "acme-dr") {
		t.Fatalf("history of acme-prod shows other deployments:\n%s", out)
	}
	out = lm.mustRun(t, "pins", "--limit", "2", "-o", "json")
	hist := listItems[apitypes.PinChange](t, out)
	if len(hist) != 2 || hist[0].Reason != "third" || hist[1].Reason != "third" || hist[0].ChangeID != hist[1].ChangeID {
		t.Fatalf("the newest 2 entries: %+v", hist)
	}
	if _, err := lm.run(t, "pins", "--deployment", "ghost"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("history of an unknown deployment: %v", err)
	}
}

func TestReleasesAdoptionVerb(t *testing.T) {
	lm := startManager(t)
	lm.mustRun(t, "pin", "acme-dr", "--release", "1.0", "--reason", "customer freeze")
	out := lm.mustRun(t, "releases", "adoption", "--stack", "app")
	contains(t, out, "STACK", "RELEASE", "RUNNING", "DESIRED", "PINNED", "app: 1 of 4 deployments run the latest release 2.0.")
	if !strings.Contains(out, "app    2.0      1        3        0       latest") || !strings.Contains(out, "app    1.0      3        1        1") {
		t.Errorf("want 2.0 run by 1 and desired by 3; 1.0 run by 3, desired by and pinned for 1:\n%s", out)
	}
	if strings.Contains(out, "db") {
		t.Errorf("--stack app shows db:\n%s", out)
	}
	out = lm.mustRun(t, "releases", "adoption", "-o", "json")
	ads := listItems[apitypes.Adoption](t, out)
	if len(ads) != 2 || ads[0].Stack != "app" || ads[0].Total != 4 || ads[1].Stack != "db" {
		t.Fatalf("adoption of every stack: %+v", ads)
	}
	// The release list is still there.
	out = lm.mustRun(t, "releases", "list", "--stack", "app")
	contains(t, out, "VERSION", "LATEST", "2.0", "1.0")
}

func TestBehindVerb(t *testing.T) {
	lm := startManager(t)
	lm.mustRun(t, "pin", "acme-dr", "--release", "1.0", "--reason", "customer freeze")
	lm.clk.Advance(6 * time.Hour)
	out := lm.mustRun(t, "behind")
	contains(t, out, "DEPLOYMENT", "RUNNING", "DESIRED", "LATEST", "BEHIND", "DAYS", "REASON", "NEXT POLL",
		"pinned: a pin holds it", "pull-pending: it polls", "manual-apply: its agent cannot apply releases itself")
	inOrder(t, out, "acme-dr", "acme-prod", "initech")
	for _, row := range []string{"pinned", "pull-pending", "manual-apply", "3.3"} {
		contains(t, out, row)
	}
	if strings.Contains(out, "globex") || strings.Contains(out, "acme-db") {
		t.Errorf("deployments on the latest release listed:\n%s", out)
	}

	out = lm.mustRun(t, "behind", "--reason", "manual-apply", "-o", "json")
	bs := listItems[apitypes.BehindDeployment](t, out)
	if len(bs) != 1 || bs[0].ID != "initech" || bs[0].Reason != fleet.BehindManualApply || bs[0].DaysSinceSuperseded != 3.3 || bs[0].VersionsBehind != 1 {
		t.Fatalf("behind --reason manual-apply: %+v", bs)
	}
	out = lm.mustRun(t, "behind", "--customer", "acme", "--label", "tier=gold")
	contains(t, out, "acme-prod")
	if strings.Contains(out, "acme-dr") {
		t.Errorf("--label tier=gold lists acme-dr:\n%s", out)
	}
	out = lm.mustRun(t, "behind", "--stack", "db")
	contains(t, out, "Every deployment runs its stack's latest release.")

	out = lm.mustRun(t, "deployments", "list", "--behind", "latest", "--pinned", "false")
	contains(t, out, "acme-prod", "initech")
	if strings.Contains(out, "acme-dr") || strings.Contains(out, "globex") {
		t.Errorf("deployments list --behind latest --pinned false:\n%s", out)
	}
}
