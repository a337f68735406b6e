package demo

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// bannerData is what the demo's banner tells.
type bannerData struct {
	url, token, dir string
	// kept says the data directory was given and stays after the demo.
	kept bool
	// moved says the manager listens elsewhere than asked, which was asked.
	moved       bool
	asked       string
	deployments int
	scenario    Scenario
	speed       float64
}

// banner prints where the dashboard is, how to sign in, and three lines on
// what to look for. The investigation step by step is docs/tutorial.md; the
// commands shown work from any directory once the CLI is installed.
func banner(w io.Writer, d bannerData) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nPeriscope demo is running: a manager and %d simulated customer deployments, each with a real agent,\n", d.deployments)
	fmt.Fprintf(&b, "and %.0f minutes of their services' logs, traces and metrics on %s. Scenario %q: %s.\n\n",
		history.Minutes(), Current, d.scenario.Name, d.scenario.Summary)
	if d.moved {
		fmt.Fprintf(&b, "  (%s is taken, so the manager listens on %s.)\n", d.asked, strings.TrimPrefix(d.url, "http://"))
	}
	fmt.Fprintf(&b, "  Dashboard: %s/  (sign in with token %s)\n", d.url, d.token)
	fmt.Fprintf(&b, "  Data:      %s\n", d.dir)
	if d.kept {
		b.WriteString("             (kept after the demo stops)\n")
	} else {
		b.WriteString("             (removed when the demo stops; keep it with --data-dir)\n")
	}
	publish := scaled(publishAfter, d.speed).Round(100 * time.Millisecond)
	fmt.Fprintf(&b, `
What to look for:
  1. In %s, %s is published and rolls out wave by wave through the agents' update hooks:
     %s (periscope rollouts list).
  2. About a minute after %s takes %s, it turns unhealthy (regressed-after-release): find the
     failing function from its error rate, traces and logs.
`, publish, Next, d.scenario.waves(fleetSpec), regressedOn, Next)
	if d.scenario.halt {
		fmt.Fprintf(&b, "  3. The rollout halts and pins %s back to %s by itself: see why on the rollout and in the audit log.\n", regressedOn, Current)
	} else {
		fmt.Fprintf(&b, "  3. Pin it back to %s: its agent rolls it back and it turns healthy again.\n", Current)
	}
	fmt.Fprintf(&b, `
The CLI: install it once with "go install ./cmd/..." from the repository, then from anywhere:

  export PERISCOPE_MANAGER=%s PERISCOPE_TOKEN=%s
  periscope status

The investigation step by step, in the dashboard and the CLI: docs/tutorial.md.
Press Ctrl-C to stop.
`, d.url, d.token)
	_, _ = io.WriteString(w, b.String())
}
