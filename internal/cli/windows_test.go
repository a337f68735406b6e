package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/fleet"
)

// An operator sets a customer's update window from the CLI: its deployment
// behind the latest release is held at once (outside-window); clearing the
// window releases it. Each change needs a reason and is audited.
func TestWindowsFromTheCLI(t *testing.T) {
	ctx := context.Background()
	lm := startManager(t)
	contains(t, lm.mustRun(t, "windows", "list"), "No update windows")

	// acme-dr runs 1.0 and app's latest is 2.0: it is offered 2.0 now.
	if d, err := lm.api.Deployment(ctx, "acme-dr"); err != nil || d.DesiredRelease != "2.0" || d.Behind == fleet.BehindOutsideWindow {
		t.Fatalf("acme-dr before any window: %+v, %v", d, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"windows", "set", "--customer", "acme", "--window", "Daily 02:00-03:00 UTC"}, "--reason"},
		{[]string{"windows", "set", "--customer", "acme", "--reason", "x"}, "--window"},
		{[]string{"windows", "set", "--window", "Daily 02:00-03:00 UTC", "--reason", "x"}, "--customer or --deployment"},
		{[]string{"windows", "set", "--customer", "acme", "--window", "Someday 02:00-03:00 UTC", "--reason", "x"}, "Someday"},
		{[]string{"windows", "clear", "--customer", "acme", "--reason", "x"}, "404"},
	} {
		if _, err := lm.run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("periscope %s: %v; want an error mentioning %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	// now is 10:00 UTC: a window at 02:00 is closed.
	contains(t, lm.mustRun(t, "windows", "set", "--customer", "acme", "--window", "Daily 02:00-03:00 UTC", "--window", "Sat 12:00-14:00 Europe/Berlin",
		"--reason", "acme's change board"), "Update windows of customer acme set: 2 window(s)")
	contains(t, lm.mustRun(t, "windows", "list"), "customer", "acme", "Daily 02:00-03:00 UTC; Sat 12:00-14:00 Europe/Berlin", "api", "release-bot")
	d, err := lm.api.Deployment(ctx, "acme-dr")
	if err != nil || d.Behind != fleet.BehindOutsideWindow {
		t.Errorf("acme-dr after its customer's window was set: %+v, %v; want behind outside-window at once", d, err)
	}
	contains(t, lm.mustRun(t, "windows", "clear", "--customer", "acme", "--reason", "board dissolved"), "removed")
	if d, err := lm.api.Deployment(ctx, "acme-dr"); err != nil || d.Behind == fleet.BehindOutsideWindow {
		t.Errorf("acme-dr after the window was cleared: %+v, %v; want its offer released", d, err)
	}
	contains(t, lm.mustRun(t, "audit", "--action", "rollout.windows"), "board dissolved", "acme's change board")
}
