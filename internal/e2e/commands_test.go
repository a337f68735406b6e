package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/record"
	"github.com/periscope-dev/periscope/internal/cli"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// remoteCommandArg makes the test binary the `rows` command's executable.
const remoteCommandArg = "e2e-remote-command"

// remoteCommand is the vendor's executable: it notes each run (with its pid,
// so the test can end an orphan) in the file the runs parameter names, then
// does what mode says. Its output names a database password, which must not
// leave the customer's cloud.
func remoteCommand() int {
	if runs := os.Getenv(command.EnvName("runs")); runs != "" {
		f, err := os.OpenFile(runs, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
	}
	switch os.Getenv(command.EnvName("mode")) {
	case "count":
		fmt.Printf("table %s: 1234 rows\n", os.Getenv(command.EnvName("table")))
		fmt.Println("counted through postgres://reporter:Hunter2-pw@db.internal:5432/shop")
	case "big":
		for i := range 2000 {
			fmt.Printf("row %05d of a long listing\n", i)
		}
	case "hang":
		fmt.Println("counting slowly")
		time.Sleep(time.Minute)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode")
		return 3
	}
	return 0
}

// commandAgent is a periscope-agent process that can be killed and started again
// with the same identity.
type commandAgent struct {
	args []string
	grpc string
	http string
	p    *agentProc
}

func startCommandAgent(t *testing.T, managerURL, token, transport string, extra ...string) *commandAgent {
	t.Helper()
	dir := t.TempDir()
	a := &commandAgent{grpc: freePort(t), http: freePort(t), args: append([]string{"--manager", managerURL, "--token", token, "--release", "1.0",
		"--transport", transport, "--heartbeat-interval", "1s", "--data-dir", filepath.Join(dir, "data")}, extra...)}
	a.p = runAgent(t, a.grpc, a.http, a.args...)
	return a
}

func (a *commandAgent) restart(t *testing.T) { a.p = runAgent(t, a.grpc, a.http, a.args...) }

// report reads the customer's local record of remote commands from the agent.
func (a *commandAgent) report(t *testing.T) record.CommandTotals {
	t.Helper()
	resp, err := http.Get("http://" + a.http + "/report?since=1h&format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s record.Summary
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s.Commands
}

// periscope runs the CLI in this process, as the operator with token, and
// returns what it printed and its error.
func periscope(t *testing.T, managerURL, token string, args ...string) (string, error) {
	t.Helper()
	root := cli.NewRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(args, "--manager", managerURL, "--token", token))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String() + errOut.String(), err
}

// execJSON runs `periscope exec … -o json` and decodes the invocation.
func execJSON(t *testing.T, managerURL, token string, args ...string) (apitypes.Invocation, string, error) {
	t.Helper()
	out, err := periscope(t, managerURL, token, append([]string{"exec"}, append(args, "-o", "json")...)...)
	var inv apitypes.Invocation
	if i := strings.Index(out, "{"); i >= 0 {
		if jerr := json.NewDecoder(strings.NewReader(out[i:])).Decode(&inv); jerr != nil {
			t.Fatalf("exec %v printed %q: %v", args, out, jerr)
		}
	}
	return inv, out, err
}

// TestRemoteCommandsEndToEnd is issue 20's story with real agent processes: a
// release declares an executable and an HTTP command; an operator runs each on a
// push and a pull deployment through the CLI; what the customer refuses, what is
// not declared, parameters outside the schema and a viewer are refused; a
// command the agent never picks up expires; killing the agent mid-run does not
// run it twice; long output arrives cut and marked, secrets masked; and both
// audit trails tell the same story.
func TestRemoteCommandsEndToEnd(t *testing.T) {
	ctx := context.Background()
	m := startRolloutManager(t, t.TempDir())
	admin := apiclient.New(m.URL(), adminToken)
	operator, viewer := apiToken(t, admin, "support-alice", "operator"), apiToken(t, admin, "dash-viewer", "viewer")

	// The vendor's service inside the customer's environment.
	cache := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct{ Key string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "key %s: hit ratio 0.93; owner ops-oncall@customer.example; signed with AKIAIOSFODNN7EXAMPLE\n", p.Key)
	}))
	defer cache.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	specs := []command.Spec{{
		Name: "rows", Description: "count the rows of a table", Timeout: command.Duration(8 * time.Second), OutputLimit: 4096,
		Exec: &command.ExecHandler{Path: self, Args: []string{remoteCommandArg}},
		Params: []command.Param{
			{Name: "table", Type: command.TypeEnum, Values: []string{"orders", "users"}, Required: true},
			{Name: "mode", Type: command.TypeEnum, Values: []string{"count", "big", "hang"}, Default: "count"},
			{Name: "runs", Type: command.TypeString, MaxLength: 4096},
		},
	}, {
		Name: "cache-stats", Description: "hit ratio of one cache key",
		HTTP:   &command.HTTPHandler{URL: cache.URL + "/stats"},
		Params: []command.Param{{Name: "key", Type: command.TypeString, Pattern: `[a-z:]+`, Required: true}},
	}}
	declarations := filepath.Join(t.TempDir(), "commands.json")
	b, _ := json.Marshal(map[string]any{"commands": specs})
	if err := os.WriteFile(declarations, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := periscope(t, m.URL(), adminToken, "releases", "create", "1.0", "--stack", "shop", "--commands", declarations); err != nil || !strings.Contains(out, "rows, cache-stats") {
		t.Fatalf("releases create --commands: %v\n%s", err, out)
	}
	tokens := map[string]string{}
	for _, id := range []string{"acme-prod", "globex-prod", "initech-eu"} {
		d, err := admin.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: strings.Split(id, "-")[0], Stack: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[id] = d.Token
	}
	// acme-prod pushes and takes offers (it has an update hook, so it learns
	// the declarations with the release); globex-prod polls and has no hook
	// (it learns each declaration with its invocation); initech's customer has
	// turned commands off.
	hook := filepath.Join(t.TempDir(), "applied")
	acme := startCommandAgent(t, m.URL(), tokens["acme-prod"], "websocket", "--update-command", "echo {{.Release}} >> "+hook)
	globex := startCommandAgent(t, m.URL(), tokens["globex-prod"], "http")
	off := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(off, []byte("commands: {disabled: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	startCommandAgent(t, m.URL(), tokens["initech-eu"], "http", "--config", off)
	waitFor(t, admin, "acme-prod", 15*time.Second, "healthy on 1.0", func(v rolloutView) bool { return v.Release == "1.0" && v.Behind == "" })
	eventually(t, 15*time.Second, "initech-eu reports its customer's rule", func() error {
		d, err := admin.Deployment(ctx, "initech-eu")
		if err != nil {
			return err
		}
		if d.CommandRule == nil || !d.CommandRule.Disabled {
			return fmt.Errorf("rule %+v", d.CommandRule)
		}
		return nil
	})
	runs := filepath.Join(t.TempDir(), "runs")
	t.Cleanup(func() { endOrphans(runs) })

	// Each command on a push and on a pull deployment.
	for _, id := range []string{"acme-prod", "globex-prod"} {
		inv, out, err := execJSON(t, m.URL(), operator, id, "rows", "--param", "table=orders", "--reason", "ticket 4411: missing orders")
		if err != nil || inv.State != command.StateSucceeded || inv.ExitCode == nil || *inv.ExitCode != 0 {
			t.Fatalf("rows on %s: %v\n%s", id, err, out)
		}
		if !strings.Contains(inv.Output, "table orders: 1234 rows") || strings.Contains(inv.Output, "Hunter2-pw") || len(inv.Redacted) == 0 {
			t.Errorf("rows on %s: output %q (redacted %v): want the count, the password masked", id, inv.Output, inv.Redacted)
		}
		inv, out, err = execJSON(t, m.URL(), operator, id, "cache-stats", "--param", "key=prices:eu", "--reason", "stale prices")
		if err != nil || inv.State != command.StateSucceeded || inv.HTTPStatus != 200 {
			t.Fatalf("cache-stats on %s: %v\n%s", id, err, out)
		}
		if !strings.Contains(inv.Output, "key prices:eu: hit ratio 0.93") || strings.Contains(inv.Output, "ops-oncall@customer.example") || strings.Contains(inv.Output, "AKIAIOSFODNN7EXAMPLE") {
			t.Errorf("cache-stats on %s: output %q: want the figure, the e-mail and the key masked", id, inv.Output)
		}
	}
	// The text form says what a person needs.
	if out, err := periscope(t, m.URL(), operator, "exec", "globex-prod", "rows", "--param", "table=users", "--param", "mode=big", "--reason", "list them"); err != nil ||
		!strings.Contains(out, "succeeded") || !strings.Contains(out, "output truncated: 4096 of") {
		t.Errorf("long output: %v\n%s", err, out)
	}
	inv, _, _ := execJSON(t, m.URL(), operator, "acme-prod", "rows", "--param", "table=users", "--param", "mode=big", "--reason", "list them")
	if !inv.Truncated || len(inv.Output) != 4096 || inv.OutputBytes <= 4096 {
		t.Errorf("long output: truncated %v, %d bytes kept of %d", inv.Truncated, len(inv.Output), inv.OutputBytes)
	}

	// Refusals: nothing runs, and the first three are audited as refused.
	for _, tc := range []struct {
		name, token string
		args        []string
		want        string
	}{
		{"undeclared", operator, []string{"acme-prod", "drop-tables", "--reason", "cleanup"}, "does not declare command drop-tables"},
		{"customer disabled", operator, []string{"initech-eu", "rows", "--param", "table=orders", "--reason", "ticket 7"}, "disabled commands"},
		{"outside the schema", operator, []string{"globex-prod", "rows", "--param", "table=payments", "--reason", "ticket 8"}, "is not one of orders, users"},
		{"viewer", viewer, []string{"acme-prod", "rows", "--param", "table=orders", "--reason", "curious"}, "operator role"},
	} {
		inv, out, err := execJSON(t, m.URL(), tc.token, tc.args...)
		if err == nil || !strings.Contains(out+err.Error(), tc.want) {
			t.Errorf("%s: %v\n%s\nwant a refusal saying %q", tc.name, err, out, tc.want)
		}
		if tc.name != "viewer" && inv.State != command.StateRefused {
			t.Errorf("%s: state %q, want refused", tc.name, inv.State)
		}
	}

	// Expired: globex stops polling, so its invocation waits past its deadline.
	if err := globex.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	inv, out, err := execJSON(t, m.URL(), operator, "globex-prod", "rows", "--param", "table=orders", "--timeout", "1s", "--reason", "while it sleeps")
	globex.p.cmd.Process.Signal(syscall.SIGCONT)
	if err == nil || inv.State != command.StateExpired {
		t.Errorf("an invocation its agent never took: %v, state %q\n%s", err, inv.State, out)
	}

	// Killed mid-run: the agent restarts and reports it failed, not run twice.
	running, err := operatorClient(m.URL(), operator).RunCommand(ctx, "acme-prod", apitypes.NewInvocation{Command: "rows",
		Params: map[string]any{"table": "orders", "mode": "hang", "runs": runs}, Reason: "slow count"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the slow count running", func() error {
		got, err := admin.Command(ctx, running.ID, 0)
		if err != nil || got.State != command.StateRunning || len(pids(runs)) != 1 {
			return fmt.Errorf("state %q, runs %v, %v", got.State, pids(runs), err)
		}
		return nil
	})
	acme.p.kill()
	acme.restart(t)
	done, err := admin.WaitCommand(ctx, running.ID)
	if err != nil || done.State != command.StateFailed || !strings.Contains(done.StateReason, "not run again") {
		t.Errorf("after the agent was killed: %+v %v", done, err)
	}
	if n := len(pids(runs)); n != 1 {
		t.Errorf("the command ran %d times, want once", n)
	}

	// The manager's audit log: who, why and the outcome of each.
	page, err := admin.Audit(ctx, apitypes.AuditQuery{Action: "command.", Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	find := func(action, deployment, outcome, reason string) bool {
		return slices.ContainsFunc(page.Items, func(e apitypes.AuditEntry) bool {
			return e.Action == action && e.DeploymentID == deployment && e.Outcome == outcome && e.Reason == reason && e.Actor == "support-alice" && e.ActorRole == "operator"
		})
	}
	for _, want := range []struct{ action, deployment, outcome, reason string }{
		{"command.invoke", "acme-prod", "queued", "ticket 4411: missing orders"},
		{"command.result", "acme-prod", "succeeded", "ticket 4411: missing orders"},
		{"command.result", "globex-prod", "succeeded", "stale prices"},
		{"command.invoke", "acme-prod", "refused", "cleanup"},
		{"command.invoke", "initech-eu", "refused", "ticket 7"},
		{"command.invoke", "globex-prod", "refused", "ticket 8"},
		{"command.result", "globex-prod", "expired", "while it sleeps"},
		{"command.result", "acme-prod", "failed", "slow count"},
	} {
		if !find(want.action, want.deployment, want.outcome, want.reason) {
			t.Errorf("no audit entry %+v among %d command entries", want, len(page.Items))
		}
	}
	if slices.ContainsFunc(page.Items, func(e apitypes.AuditEntry) bool { return e.Reason == "curious" }) {
		t.Error("the viewer's refused request reached the audit log as a command")
	}

	// The customer's record on each agent holds the same, refusals included.
	eventually(t, 15*time.Second, "the agents' records", func() error {
		for _, c := range []struct {
			a        *commandAgent
			state    string
			why      string
			contains string
		}{
			{acme, "succeeded", "stale prices", ""},
			{acme, "failed", "slow count", "not run again"},
			{globex, "succeeded", "ticket 4411: missing orders", ""},
		} {
			got := c.a.report(t)
			if !slices.ContainsFunc(got.Recent, func(e record.CommandEvent) bool {
				return e.State == c.state && e.Why == c.why && e.By == "support-alice" && strings.Contains(e.Detail, c.contains) && (e.State != "succeeded" || e.OutputSHA256 != "")
			}) {
				return fmt.Errorf("no %s %q in %+v", c.state, c.why, got.Recent)
			}
		}
		return nil
	})
}

func operatorClient(url, token string) *apiclient.Client { return apiclient.New(url, token) }

// pids lists the runs the command noted.
func pids(path string) []int {
	b, _ := os.ReadFile(path)
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// endOrphans ends the command processes an agent killed with -9 left behind.
func endOrphans(runs string) {
	for _, pid := range pids(runs) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
