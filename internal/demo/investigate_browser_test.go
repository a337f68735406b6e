package demo

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
	"github.com/periscope-dev/periscope/internal/testenv/browser"
)

// TestDemoInvestigationInBrowser is the tutorial, through Chromium alone:
// the demo runs its default scenario ten times faster, and a newcomer finds
// the regressed deployment on the fleet page, opens it and reads its
// release and regressed-after-release, opens a failing trace from its
// traces section and sees the sample service's broken function, runs a
// declared command and reads its result, pins the deployment back to the
// previous release with a reason, and sees it healthy on that release. The
// screenshots are the tutorial's (docs/img/demo-*.png).
func TestDemoInvestigationInBrowser(t *testing.T) {
	browser.Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := startDemo(t, ctx, Options{Speed: 10})

	b := signedIn(t, r)

	// The fleet page, reloaded as a newcomer would until the rollout
	// reaches globex-prod and the detector flags it.
	row := `table#deployments tr[data-deployment="` + regressedOn + `"]`
	b.VisitUntil("/", `!!document.querySelector(`+jsString(row+` .badge.st-unhealthy`)+`)`, regressedOn+" unhealthy on the fleet page", 3*time.Minute)
	b.ReadmeShot("demo-fleet.png")
	b.Click(row + ` a[href="/deployments/` + regressedOn + `"]`)
	if got := b.Path(); !strings.HasPrefix(got, "/deployments/"+regressedOn) {
		t.Fatalf("the fleet's row opened %s", got)
	}

	// Its page: unhealthy on Next, regressed after release.
	if st := strings.TrimSpace(b.Text(`#status .badge`)); st != "unhealthy" {
		t.Errorf("status badge %q, want unhealthy", st)
	}
	if code := b.Attr(`#status-reason`, "data-reason-code"); code != "regressed-after-release" {
		t.Errorf("status reason code %q, want regressed-after-release", code)
	}
	if why := b.Text(`#status-reason`); !strings.Contains(why, "regressed after release") {
		t.Errorf("status reason %q does not say it regressed after its release", why)
	}
	if facts := b.Text(`dl.facts`); !strings.Contains(facts, Next) {
		t.Errorf("the facts read %q, want it running %s", facts, Next)
	}
	b.ReadmeShot("demo-regressed.png")

	// A failing request from its traces section, and its trace: the sample
	// service's broken function, failing.
	// (The half hour of history before the demo began has failures of its
	// own, on Current.)
	href := browser.Eval[string](b, `(() => { for (const r of document.querySelectorAll("section#traces table.spans tbody tr")) {
		if (r.querySelector(".failed-badge") && r.cells[2].innerText.trim() === `+jsString(Next)+`) return r.querySelector("a").getAttribute("href"); }
		return ""; })()`)
	if href == "" {
		t.Fatalf("the traces section lists no failed request on %s: %q", Next, b.Text(`section#traces`))
	}
	b.Click(`section#traces a[href="` + href + `"]`)
	if !strings.HasPrefix(b.Path(), "/traces/") {
		t.Fatalf("the failed request opened %s, want its trace", b.Path())
	}
	broken := `#waterfall [data-span][data-function="` + sampleapp.FnApplyDiscount + `"][data-error="true"]`
	if b.Count(broken) != 1 || b.Attr(broken, "data-service") != sampleapp.ServiceName {
		t.Errorf("the waterfall does not show %s of %s failing: %q", sampleapp.FnApplyDiscount, sampleapp.ServiceName, b.Text(`#waterfall`))
	}
	b.ReadmeShot("demo-trace.png")

	// A declared command, run from the deployment's page.
	b.Visit("/deployments/" + regressedOn)
	if !browser.Eval[bool](b, `!!document.querySelector("form#cmd-cache-stats-form").checkVisibility()`) {
		b.Press(`summary#cmd-cache-stats-open`)
	}
	b.Type(`#cmd-cache-stats-reason`, "checkout errors on 1.8.0: is the session cache healthy?")
	b.Click(`button#cmd-cache-stats-submit`)
	if !strings.HasPrefix(b.Path(), "/commands/") {
		t.Fatalf("running the command landed on %s, want its invocation page", b.Path())
	}
	b.VisitUntil(b.Path(), `document.querySelector("#invocation")?.dataset.final === "true"`, "the invocation to end", 30*time.Second)
	if st := strings.TrimSpace(b.Text(`#inv-status .badge`)); st != "succeeded" {
		t.Errorf("the invocation ended %q, want succeeded", st)
	}
	if out := b.Text(`#inv-output`); !strings.Contains(out, `"hit_rate": 0.94`) || strings.Contains(out, "Tr0ub4dor-3") {
		t.Errorf("the output reads %q: want the cache's figures, its password masked", out)
	}
	b.ReadmeShot("demo-command.png")

	// Pin it back to Current, with the reason.
	const reason = "pricing.apply-discount fails on 1.8.0 (coupon service 500s)"
	b.Visit("/deployments/" + regressedOn)
	if !browser.Eval[bool](b, `!!document.querySelector("form#pin-form").checkVisibility()`) {
		b.Press(`summary#pin-open`)
	}
	b.Select(`form#pin-form select[name=release]`, Current)
	b.Type(`form#pin-form textarea[name=reason]`, reason)
	b.Click(`button#pin-submit`)
	b.WaitFor(`#flash`)

	// Its agent's update hook switches the sample service back; once the
	// detector sees the working release it turns healthy, on Current.
	b.VisitUntil("/deployments/"+regressedOn, `document.querySelector("#status .badge")?.textContent.trim() === "healthy"`,
		regressedOn+" healthy after the pin", 2*time.Minute)
	if facts := b.Text(`dl.facts`); !strings.Contains(facts, Current) {
		t.Errorf("the facts read %q, want it running %s", facts, Current)
	}
	if pins := b.Text(`section#pins`); !strings.Contains(pins, reason) || !strings.Contains(pins, Current) {
		t.Errorf("the pins section reads %q, want the pin to %s with its reason", pins, Current)
	}
	b.ReadmeShot("demo-pinned-back.png")
	r.stop(t)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// signedIn opens Chromium on the demo's dashboard, signed in with its
// admin token.
func signedIn(t *testing.T, r *demoRun) *browser.Browser {
	t.Helper()
	b := browser.Start(t, r.url, browser.Options{})
	b.Visit("/login")
	b.Type(`input[name=token]`, r.token)
	b.Click(`form[action="/login"] button[type=submit]`)
	return b
}
