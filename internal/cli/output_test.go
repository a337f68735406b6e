package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// listItems reads what a list verb printed with -o json: the API's list object,
// items and total, never a bare array.
func listItems[T any](t *testing.T, out string) []T {
	t.Helper()
	var l struct {
		Items *[]T `json:"items"`
		Total *int `json:"total"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("-o json printed %q: %v", out, err)
	}
	if l.Items == nil || l.Total == nil || *l.Total != len(*l.Items) {
		t.Fatalf("-o json printed %q, want an object with items and their total", out)
	}
	return *l.Items
}

// Every list verb prints the API's list shape with -o json, as docs/usage.md
// says, so one script reads both the API and the CLI.
func TestListVerbsPrintTheAPIShape(t *testing.T) {
	lm := startManager(t)
	ds := listItems[apitypes.Deployment](t, lm.mustRun(t, "deployments", "list", "-o", "json"))
	if len(ds) != 5 {
		t.Errorf("deployments list -o json: %d items, want the 5 registered", len(ds))
	}
	if none := listItems[apitypes.Deployment](t, lm.mustRun(t, "deployments", "list", "--customer", "nobody", "-o", "json")); len(none) != 0 {
		t.Errorf("no match: %+v", none)
	}
	if rs := listItems[apitypes.Release](t, lm.mustRun(t, "releases", "list", "--stack", "app", "-o", "json")); len(rs) != 2 {
		t.Errorf("releases list -o json: %+v, want app's 2", rs)
	}
	listItems[apitypes.DeploymentChange](t, lm.mustRun(t, "deployments", "history", "acme-prod", "-o", "json"))
	listItems[apitypes.PinChange](t, lm.mustRun(t, "pins", "-o", "json"))
	listItems[apitypes.Adoption](t, lm.mustRun(t, "releases", "adoption", "-o", "json"))
	listItems[apitypes.BehindDeployment](t, lm.mustRun(t, "behind", "-o", "json"))
	if out := lm.mustRun(t, "audit", "-o", "json"); !strings.HasPrefix(out, "{") || !strings.Contains(out, `"items"`) {
		t.Errorf("audit -o json: %s", out)
	}
}

// Counts read as English: one deployment, two deployments.
func TestPlural(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 deployments"}, {1, "1 deployment"}, {2, "2 deployments"}} {
		if got := plural(tc.n, "deployment"); got != tc.want {
			t.Errorf("plural(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	lm := startManager(t)
	out := lm.mustRun(t, "releases", "adoption", "--stack", "db")
	contains(t, out, "db: 1 of 1 deployment runs the latest release 1.0.")
}

// A bare rollback or pin reports everything missing at once, the selection
// first, rather than only the --reason cobra would check before anything else.
func TestMissingSelectionAndReasonReportedTogether(t *testing.T) {
	lm := startManager(t)
	for _, tc := range []struct {
		args []string
		says []string
	}{
		{[]string{"rollback"}, []string{"rollback: say which deployments", "--reason is required"}},
		{[]string{"pin"}, []string{"pin: say which deployments", "--release is required", "--reason is required"}},
		{[]string{"pin", "acme-prod", "--reason", "r"}, []string{"--release is required"}},
	} {
		_, err := lm.run(t, tc.args...)
		if err == nil {
			t.Fatalf("periscope %s was accepted", strings.Join(tc.args, " "))
		}
		inOrder(t, err.Error(), tc.says...)
	}
}

// deployments create --stack nosuch registers the deployment but warns on
// stderr that the stack has no release, naming the one it likely meant.
func TestCreateDeploymentOnUnknownStackWarns(t *testing.T) {
	lm := startManager(t)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	root := newRoot(clock.Real{})
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs([]string{"deployments", "create", "hooli", "--customer", "hooli", "--stack", "ap", "--manager", lm.m.URL(), "--token", lm.token})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	contains(t, stdout.String(), "Deployment hooli created")
	contains(t, stderr.String(), `warning: stack "ap" has no release yet`, `did you mean "app"?`)
}
