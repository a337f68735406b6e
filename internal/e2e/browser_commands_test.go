package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/testenv/browser"
)

// TestDashboardCommandsInBrowser: an operator runs a declared command from the
// deployment page in Chromium, with a parameter and a reason; the invocation
// page follows it to succeeded and shows its output with the secret the
// service printed masked; the audit page lists it under the operator.
func TestDashboardCommandsInBrowser(t *testing.T) {
	browser.Chromium(t)
	ctx := context.Background()
	m := startDashboardManager(t)
	api := apiclient.New(m.URL(), adminToken)
	operator := apiToken(t, api, "oncall", "operator")
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "queue %s: 42 messages waiting, oldest 3m12s\nconsumer connected as amqp://billing:Qu3ue-s3cret@mq.internal:5672/\n", r.URL.Query().Get("queue"))
	}))
	defer svc.Close()
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop", Version: "1.0.0", Commands: []command.Spec{{
		Name: "queue-depth", Description: "messages waiting in one of the service's queues", Timeout: command.Duration(10 * time.Second),
		HTTP:   &command.HTTPHandler{URL: svc.URL + "/admin/queue", Method: "GET"},
		Params: []command.Param{{Name: "queue", Type: command.TypeEnum, Values: []string{"invoices", "emails"}, Required: true}},
	}}}); err != nil {
		t.Fatal(err)
	}
	d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme-prod", Customer: "acme", Stack: "shop", Cloud: "aws", Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	releaseAgent(t, m.URL(), d.Token, "websocket", "aws", "us-east-1")
	waitFor(t, api, "acme-prod", 15*time.Second, "healthy on 1.0.0", func(v rolloutView) bool {
		return v.Status == fleet.StatusHealthy && v.Release == "1.0.0"
	})

	b := browser.Start(t, m.URL(), browser.Options{})
	b.Visit("/login")
	signIn(t, b, operator)
	b.Visit("/deployments/acme-prod")
	if b.Count(`section#commands tr[data-command="queue-depth"]`) != 1 {
		t.Fatal("the deployment page does not list the declared command")
	}
	if !browser.Eval[bool](b, `!!document.querySelector("form#cmd-queue-depth-form").checkVisibility()`) {
		b.Press(`summary#cmd-queue-depth-open`)
	}
	if effect := b.Text(`form#cmd-queue-depth-form .effect`); !strings.Contains(effect, "at once (push)") {
		t.Errorf("the form says %q, want when the agent gets it", effect)
	}
	b.Shot("commands-form")
	b.Select(`#cmd-queue-depth-p-queue`, "invoices")
	const reason = "ticket 5120: invoices late"
	b.Type(`#cmd-queue-depth-reason`, reason)
	b.Click(`button#cmd-queue-depth-submit`)
	if !strings.HasPrefix(b.Path(), "/commands/") {
		t.Fatalf("running the command landed on %s, want its invocation page", b.Path())
	}
	// The page reloads itself until the invocation ends; visiting again
	// until then reads the same page without racing its reload.
	b.VisitUntil(b.Path(), `document.querySelector("#invocation")?.dataset.final === "true"`, "the invocation to end", 15*time.Second)
	if st := b.Text(`#inv-status .badge`); st != "succeeded" {
		t.Errorf("the invocation ended %q, want succeeded", st)
	}
	out := b.Text(`#inv-output`)
	if !strings.Contains(out, "queue invoices: 42 messages waiting") || strings.Contains(out, "Qu3ue-s3cret") {
		t.Errorf("the output reads %q: want the figure and the password masked", out)
	}
	if b.Count(`#inv-redacted`) != 1 {
		t.Error("the invocation page does not say the output was redacted")
	}
	b.ReadmeShot("command-result.png")

	b.Visit("/deployments/acme-prod")
	if h := b.Text(`table#command-history`); !strings.Contains(h, "succeeded") || !strings.Contains(h, reason) || !strings.Contains(h, "oncall") {
		t.Errorf("the history reads %q, want the run with who and why", h)
	}
	b.Visit("/audit?action=command.")
	rows := browser.Eval[[]string](b, `[...document.querySelectorAll("table#audit tr[data-audit]")].map(r => r.innerText)`)
	var invoke, result bool
	for _, r := range rows {
		invoke = invoke || (strings.Contains(r, "command.invoke") && strings.Contains(r, "oncall") && strings.Contains(r, reason))
		result = result || (strings.Contains(r, "command.result") && strings.Contains(r, "succeeded"))
	}
	if !invoke || !result {
		t.Errorf("the audit page lists %q, want the invoke by oncall with the reason and its result", rows)
	}
}
