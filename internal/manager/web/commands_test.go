package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/store"
)

// opsSpecs are the commands release 2.0.0 of stack ops declares: an
// executable with one parameter of each kind, and an HTTP handler with none.
func opsSpecs() []command.Spec {
	lo, hi := 1.0, 1000.0
	return []command.Spec{
		{Name: "row-count", Description: "Counts the rows of a table", Timeout: command.Duration(20 * time.Second),
			Exec: &command.ExecHandler{Path: "/usr/local/bin/row-count"},
			Params: []command.Param{
				{Name: "table", Type: command.TypeEnum, Values: []string{"orders", "users"}, Required: true},
				{Name: "limit", Type: command.TypeInteger, Min: &lo, Max: &hi, Default: float64(100)},
				{Name: "where", Type: command.TypeString, MaxLength: 32, Pattern: "[a-z_]+"},
				{Name: "exact", Type: command.TypeBoolean},
			}},
		{Name: "flush-cache", Description: "Empties the cache", HTTP: &command.HTTPHandler{URL: "http://shop.internal/flush"}},
	}
}

// opsDeployment registers acme-ops ("Acme ops") on stack ops, whose only
// release, 2.0.0, declares opsSpecs; its agent checks in over mode and reports
// rule (none when nil).
func (f *fixture) opsDeployment(mode fleet.Mode, rule *command.Rule) {
	f.t.Helper()
	ctx := context.Background()
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "ops", Version: "2.0.0", Commands: opsSpecs()}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "acme-ops", Name: "Acme ops", Customer: "acme", Stack: "ops"}}); err != nil {
		f.t.Fatal(err)
	}
	rep := registry.Report{Mode: mode, Description: &registry.Description{Release: "2.0.0", AgentVersion: "0.9.0"}}
	if rule != nil {
		rep.Commands = &registry.CommandsReport{Rule: rule}
	}
	if _, err := f.reg.Checkin("acme-ops", rep); err != nil {
		f.t.Fatal(err)
	}
}

// setRule plays acme-ops's agent reporting its customer's rule.
func (f *fixture) setRule(rule command.Rule) {
	f.t.Helper()
	if _, err := f.reg.Checkin("acme-ops", registry.Report{Mode: fleet.ModePush, Commands: &registry.CommandsReport{Rule: &rule}}); err != nil {
		f.t.Fatal(err)
	}
}

// run posts the row-count form of acme-ops with params and reason, and returns
// the invocation it redirected to.
func (b *browser) run(csrf, reason string, params map[string]string) store.Invocation {
	b.f.t.Helper()
	form := url.Values{"csrf": {csrf}, "command": {"row-count"}, "reason": {reason}}
	for k, v := range params {
		form.Set("param."+k, v)
	}
	res := b.post("/deployments/acme-ops/commands", form)
	loc := location(res)
	id, ok := strings.CutPrefix(loc, "/commands/")
	if res.Code != http.StatusSeeOther || !ok {
		b.f.t.Fatalf("run row-count: %d %s\n%s", res.Code, loc, res.Body.String())
	}
	id, _, _ = strings.Cut(id, "?")
	inv, err := b.f.cmds.Get(context.Background(), id)
	if err != nil {
		b.f.t.Fatal(err)
	}
	return inv
}

func mustMatch(t *testing.T, page string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(page) {
			t.Errorf("page lacks %s", re)
		}
	}
}

func TestCommandsPanelListsDeclaredCommandsAndTheRule(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.opsDeployment(fleet.ModePush, nil)
	b := f.signIn(auth.RoleOperator)
	page := body(t, b.get("/deployments/acme-ops"))
	mustMatch(t, page,
		`<p id="command-rule" class="rule rule-none"><strong>Customer's rule:</strong> not reported yet`,
		`<tr data-command="row-count"><td class="mono">row-count</td><td>Counts the rows of a table</td><td>exec</td><td class="num">20s</td><td class="num">16 KiB</td>`,
		`<tr data-command="flush-cache"><td class="mono">flush-cache</td><td>Empties the cache</td><td>HTTP POST</td><td class="num">30s</td>`,
		`Declared by release <span class="ver">2.0.0</span>`,
		`<a class="button" id="commands-open" href="#commands">`,
		// One input per parameter, drawn from its schema.
		`<select id="cmd-row-count-p-table" name="param.table" required><option value="orders">orders</option><option value="users">users</option></select>`,
		`<input id="cmd-row-count-p-limit" type="number" name="param.limit" step="1" min="1" max="1000" value="100">`,
		`<input id="cmd-row-count-p-where" type="text" name="param.where" maxlength="32" pattern="\[a-z_\](\+|&#43;)"`,
		`<select id="cmd-row-count-p-exact" name="param.exact"><option value="" selected>\(not given\)</option><option value="true">true</option><option value="false">false</option></select>`,
		`<textarea id="cmd-row-count-reason" name="reason" required`,
		`<strong class="mono">row-count</strong> will run on <strong>Acme ops</strong> inside the customer's environment; its agent gets it at once \(push\)\.`,
		`<form id="cmd-flush-cache-form" data-action="command"`,
		`No command has been run on this deployment`,
	)

	// The customer allows only row-count: flush-cache is marked and loses its form.
	f.setRule(command.Rule{Allow: []string{"row-count"}})
	page = body(t, b.get("/deployments/acme-ops"))
	mustMatch(t, page,
		`<p id="command-rule" class="rule rule-allow"><strong>Customer's rule:</strong> the customer allows only row-count\.`,
		`<tr data-command="flush-cache" class="refused"><td class="mono">flush-cache <span class="badge outline refused-badge"[^>]*>refused by the customer</span>`,
		`<form id="cmd-row-count-form"`,
	)
	if strings.Contains(page, `id="cmd-flush-cache-form"`) {
		t.Error("a command the customer refuses still offers its form")
	}
	f.setRule(command.Rule{Disabled: true})
	page = body(t, b.get("/deployments/acme-ops"))
	mustMatch(t, page, `rule-disabled"><strong>Customer's rule:</strong> the customer has disabled commands on this deployment`)
	if strings.Contains(page, `data-action="command"`) {
		t.Error("commands disabled by the customer still offer forms")
	}

	// A release declaring nothing teaches how to declare commands.
	f.twoReleases("Acme production", "acme", "gold", "boom", "POST /pay")
	mustMatch(t, body(t, b.get("/deployments/acme-prod")), `declares no commands`, `periscope releases create &lt;version&gt; --stack shop --commands commands.yaml`)
}

func TestCommandFormSaysWhenAPollingAgentGetsIt(t *testing.T) {
	f := newFixture(t, web.Settings{CheckinInterval: 15 * time.Second})
	f.opsDeployment(fleet.ModePull, &command.Rule{})
	page := body(t, f.signIn(auth.RoleOperator).get("/deployments/acme-ops"))
	mustMatch(t, page, `will run on <strong>Acme ops</strong> inside the customer's environment; its agent gets it at its next check-in \(pull, about every 15 s\)`,
		`rule-all"><strong>Customer's rule:</strong> the customer allows every declared command`)
}

func TestOperatorRunsACommandFromThePanel(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.opsDeployment(fleet.ModePush, &command.Rule{})
	b := f.signIn(auth.RoleOperator)
	csrf := b.csrf()
	inv := b.run(csrf, "ticket 4821: orders missing", map[string]string{"table": "orders", "limit": "250", "where": "", "exact": "true"})
	if inv.State != command.StateQueued || inv.Actor != "alice-operator" || inv.ActorRole != "operator" || inv.Reason != "ticket 4821: orders missing" {
		t.Fatalf("queued invocation: %+v", inv)
	}
	if inv.Params["table"] != "orders" || inv.Params["exact"] != true || command.String(inv.Params["limit"]) != "250" {
		t.Errorf("params %v: the form's values, typed; where left empty is not given", inv.Params)
	}
	if _, given := inv.Params["where"]; given {
		t.Errorf("an empty field was passed as a parameter: %v", inv.Params)
	}
	entries, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionCommandInvoke, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Actor != "alice-operator" || entries[0].Outcome != "queued" || entries[0].Reason != inv.Reason || entries[0].DeploymentID != "acme-ops" {
		t.Fatalf("audit entries %+v", entries)
	}

	// The invocation page says what happened and offers cancel while queued.
	res := b.get("/commands/" + inv.ID + "?done=invoke")
	page := body(t, res)
	if res.Code != http.StatusOK {
		t.Fatalf("invocation page: %d\n%s", res.Code, page)
	}
	mustMatch(t, page,
		`<h1><span class="mono">row-count</span> on Acme ops</h1>`,
		`<span class="badge st-pending">queued</span>`,
		`(?s)<div id="flash".*Audit entry recorded: command.invoke of <span class="mono">row-count</span> by alice-operator.*outcome queued, because “ticket 4821: orders missing”`,
		`<tr><td class="mono">limit</td><td class="mono">250</td></tr>`,
		`<form id="cancel-form" data-action="cancel" method="post" action="/commands/`+inv.ID+`/cancel"`,
		// Not final: it refreshes itself (a script, or a meta refresh without one).
		`data-final="false" data-refresh-ms="3000"`,
		`<noscript><meta http-equiv="refresh" content="3"></noscript>`,
	)

	// The deployment's history lists it, newest first, linking to it.
	f.clk.Advance(time.Minute)
	second := b.run(csrf, "again", map[string]string{"table": "users"})
	page = body(t, b.get("/deployments/acme-ops"))
	mustMatch(t, page,
		`(?s)<table id="command-history".*<tr data-invocation="`+second.ID+`">.*<tr data-invocation="`+inv.ID+`"><td><span class="badge st-pending">queued</span></td><td><a class="mono" href="/commands/`+inv.ID+`">row-count</a></td><td>alice-operator</td><td class="why">ticket 4821: orders missing</td>`,
	)
}

func TestRefusedCommandsShowTheRefusal(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.opsDeployment(fleet.ModePush, &command.Rule{})
	b := f.signIn(auth.RoleOperator)
	csrf := b.csrf()

	// A parameter out of its bounds: refused before anything is queued, audited.
	inv := b.run(csrf, "count them all", map[string]string{"table": "orders", "limit": "5000"})
	if inv.State != command.StateRefused || !strings.Contains(inv.StateReason, "outside its bounds") {
		t.Fatalf("out of bounds: %s %q", inv.State, inv.StateReason)
	}
	page := body(t, b.get("/commands/"+inv.ID+"?done=invoke"))
	mustMatch(t, page,
		`<span class="badge st-unhealthy">refused</span>`,
		`<p class="alert" role="alert" id="refusal">Refused before anything was queued: parameter limit: 5000 is outside its bounds`,
		`<strong>Refused; nothing was run.</strong> Audit entry recorded: command.invoke`,
		`data-final="true"`,
	)
	if strings.Contains(page, "cancel-form") || strings.Contains(page, `http-equiv="refresh"`) {
		t.Error("a refused invocation offers cancel or refreshes itself")
	}
	entries, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionCommandInvoke, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Outcome != "refused" {
		t.Fatalf("audit of the refusal: %+v", entries)
	}

	// The customer disabled commands after the page was drawn.
	f.setRule(command.Rule{Disabled: true})
	inv = b.run(csrf, "count", map[string]string{"table": "orders"})
	if inv.State != command.StateRefused {
		t.Fatalf("customer-disabled: %s", inv.State)
	}
	mustMatch(t, body(t, b.get("/commands/"+inv.ID)), `id="refusal">Refused before anything was queued: the customer has disabled commands on this deployment`)

	// No reason: nothing is created, the deployment page says why.
	res := b.post("/deployments/acme-ops/commands", url.Values{"csrf": {csrf}, "command": {"row-count"}, "param.table": {"orders"}, "reason": {"  "}})
	if page := body(t, res); res.Code != http.StatusBadRequest || !strings.Contains(page, "Nothing was run: a reason is required") {
		t.Errorf("no reason: %d\n%s", res.Code, page)
	}
	if res := b.post("/deployments/nope/commands", url.Values{"csrf": {csrf}, "command": {"row-count"}, "reason": {"x"}}); res.Code != http.StatusNotFound {
		t.Errorf("unknown deployment: %d", res.Code)
	}
}

func TestViewerSeesCommandsButCannotRunOrCancel(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.opsDeployment(fleet.ModePush, &command.Rule{})
	op := f.signIn(auth.RoleOperator)
	inv := op.run(op.csrf(), "why not", map[string]string{"table": "orders"})
	v := f.signIn(auth.RoleViewer)
	page := body(t, v.get("/deployments/acme-ops"))
	mustMatch(t, page, `<tr data-command="row-count">`, `<tr data-invocation="`)
	if strings.Contains(page, `data-action="command"`) || strings.Contains(page, "commands-open") {
		t.Fatal("a viewer sees the command forms")
	}
	page = body(t, v.get("/commands/"+inv.ID))
	if !strings.Contains(page, `<span class="badge st-pending">queued</span>`) || strings.Contains(page, "cancel-form") {
		t.Fatalf("viewer's invocation page:\n%s", page)
	}
	csrf := v.csrf()
	if res := v.post("/deployments/acme-ops/commands", url.Values{"csrf": {csrf}, "command": {"row-count"}, "param.table": {"orders"}, "reason": {"x"}}); res.Code != http.StatusForbidden {
		t.Errorf("viewer run: %d, want 403", res.Code)
	}
	if res := v.post("/commands/"+inv.ID+"/cancel", url.Values{"csrf": {csrf}, "reason": {"x"}}); res.Code != http.StatusForbidden {
		t.Errorf("viewer cancel: %d, want 403", res.Code)
	}
	if invs, _, _ := f.cmds.List(context.Background(), store.InvocationFilter{DeploymentID: "acme-ops"}); len(invs) != 1 || invs[0].State != command.StateQueued {
		t.Errorf("a viewer's POST changed the invocations: %+v", invs)
	}
}

func TestInvocationPageShowsTheResultEscaped(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.opsDeployment(fleet.ModePush, &command.Rule{})
	b := f.signIn(auth.RoleOperator)
	inv := b.run(b.csrf(), "look "+depEvilValue, map[string]string{"table": "orders"})
	ctx := context.Background()
	start := f.clk.Now().Add(2 * time.Second)
	for _, u := range []store.Invocation{
		{ID: inv.ID, DeploymentID: "acme-ops", State: command.StateDelivered, DeliveredAt: start.Add(-time.Second)},
		{ID: inv.ID, DeploymentID: "acme-ops", State: command.StateRunning, StartedAt: start},
	} {
		if _, err := f.st.AdvanceInvocation(ctx, u, nil); err != nil {
			t.Fatal(err)
		}
	}
	page := body(t, b.get("/commands/"+inv.ID))
	mustMatch(t, page, `<span class="badge st-updating">running</span>`, `No output yet`)
	exit := 0
	if _, err := f.st.AdvanceInvocation(ctx, store.Invocation{ID: inv.ID, DeploymentID: "acme-ops", State: command.StateSucceeded, FinishedAt: start.Add(1500 * time.Millisecond),
		Result: command.Result{ExitCode: &exit, Output: "rows: 42\n" + depEvilValue + "\n", OutputBytes: 90000, Truncated: true,
			OutputSHA256: "ab12", Redacted: map[string]int{"email": 2}, Duration: 1500 * time.Millisecond}}, nil); err != nil {
		t.Fatal(err)
	}
	page = body(t, b.get("/commands/"+inv.ID))
	mustMatch(t, page,
		`<span class="badge st-healthy">succeeded</span>`,
		`<pre id="inv-output" class="output">rows: 42
&lt;script&gt;alert\(1\)&lt;/script&gt;
</pre>`,
		`id="inv-truncated">truncated: 35 of 90000 bytes kept</span>`,
		`id="inv-redacted">redacted: email: 2</span>`,
		`sha256 <span class="mono" id="inv-sha">ab12</span>`,
		`<div><dt>Result</dt><dd class="mono">exit 0</dd></div>`,
		`<div><dt>Duration</dt><dd>1.50 s</dd></div>`,
		`“look &lt;script&gt;alert\(1\)&lt;/script&gt;”`,
		`data-final="true"`,
	)
	if strings.Contains(page, "<script>alert") || strings.Contains(page, `http-equiv="refresh"`) {
		t.Fatal("raw script on the page, or a final invocation refreshing itself")
	}
	if res := b.get("/commands/nope"); res.Code != http.StatusNotFound {
		t.Errorf("unknown invocation: %d", res.Code)
	}
}

func TestCancelAQueuedInvocation(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.opsDeployment(fleet.ModePull, &command.Rule{})
	b := f.signIn(auth.RoleOperator)
	csrf := b.csrf()
	inv := b.run(csrf, "count", map[string]string{"table": "orders"})
	mustMatch(t, body(t, b.get("/commands/"+inv.ID)), `<span class="reason">waiting for its agent, which gets it at its next check-in \(pull, about every 30 s\)</span>`,
		`(?s)id="inv-head".*<form id="cancel-form".*id="inv-body"`)
	if res := b.post("/commands/"+inv.ID+"/cancel", url.Values{"csrf": {csrf}}); res.Code != http.StatusBadRequest || !strings.Contains(res.Body.String(), "Not cancelled: say why") {
		t.Errorf("cancel without reason: %d", res.Code)
	}
	res := b.post("/commands/"+inv.ID+"/cancel", url.Values{"csrf": {csrf}, "reason": {"wrong table"}})
	if res.Code != http.StatusSeeOther || location(res) != "/commands/"+inv.ID+"?done=cancel" {
		t.Fatalf("cancel: %d %s", res.Code, location(res))
	}
	got, err := f.cmds.Get(context.Background(), inv.ID)
	if err != nil || got.State != command.StateCancelled {
		t.Fatalf("after cancel: %s %v", got.State, err)
	}
	page := body(t, b.get(location(res)))
	mustMatch(t, page, `<span class="badge st-pending">cancelled</span>`, `<span id="inv-reason" class="reason">cancelled by alice-operator: wrong table</span>`,
		`<strong>Cancelled.</strong> Audit entry recorded: command.cancel by alice-operator`)
	if strings.Contains(page, "cancel-form") {
		t.Error("a cancelled invocation still offers cancel")
	}
	entries, _, err := f.st.ListAudit(context.Background(), store.AuditFilter{Action: store.ActionCommandCancel, Limit: 10})
	if err != nil || len(entries) != 1 || entries[0].Actor != "alice-operator" || entries[0].Reason != "wrong table" {
		t.Fatalf("cancel audit: %+v %v", entries, err)
	}
	// Once not queued it cannot be cancelled, and the page says why.
	res = b.post("/commands/"+inv.ID+"/cancel", url.Values{"csrf": {csrf}, "reason": {"again"}})
	if page := body(t, res); res.Code != http.StatusConflict || !strings.Contains(page, "Not cancelled: the invocation is cancelled now") {
		t.Errorf("cancel twice: %d\n%s", res.Code, page)
	}
}

func TestAuditLinksCommandEntriesToTheirInvocation(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.opsDeployment(fleet.ModePush, &command.Rule{Allow: []string{"flush-cache"}})
	b := f.signIn(auth.RoleOperator)
	inv := b.run(b.csrf(), "count", map[string]string{"table": "orders"})
	page := body(t, b.get("/audit?action=command."))
	mustMatch(t, page, `(?s)<tr data-audit data-deployment="acme-ops" data-action="command.invoke".*command row-count — refused: the customer allows only \[flush-cache\] on this deployment <a class="id hint" href="/commands/`+inv.ID+`"`)
}
