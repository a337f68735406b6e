package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// A release declares commands; an operator runs one with a reason and gets a
// queued invocation, an undeclared one comes back refused, a viewer cannot run
// anything, and only a queued invocation can be cancelled.
func TestCommandsOverTheAPI(t *testing.T) {
	ctx := context.Background()
	m := start(t)
	ops, view := roleClients(t, m.URL(), "support")
	status := func(err error) int {
		var ae *apiclient.Error
		if errors.As(err, &ae) {
			return ae.Status
		}
		return 0
	}

	bad := []command.Spec{{Name: "flush"}}
	if _, err := ops.CreateRelease(ctx, apitypes.NewRelease{Stack: "app", Version: "1.0", Commands: bad}); status(err) != 400 || !strings.Contains(err.Error(), "handler") {
		t.Fatalf("release with a command without a handler: %v, want 400 naming the problem", err)
	}
	specs := []command.Spec{{Name: "flush", HTTP: &command.HTTPHandler{URL: "http://localhost:9/flush"}}}
	if _, err := ops.CreateRelease(ctx, apitypes.NewRelease{Stack: "app", Version: "1.0", Commands: specs}); err != nil {
		t.Fatal(err)
	}
	rels, err := view.Releases(ctx, "app")
	if err != nil || len(rels) != 1 || len(rels[0].Commands) != 1 || rels[0].Commands[0].Name != "flush" {
		t.Fatalf("releases = %+v, %v", rels, err)
	}
	if _, err := ops.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme", Customer: "acme", Stack: "app"}); err != nil {
		t.Fatal(err)
	}

	run := apitypes.NewInvocation{Command: "flush", Reason: "ticket 9"}
	if _, err := view.RunCommand(ctx, "acme", run); status(err) != 403 {
		t.Fatalf("viewer runs a command: %v, want 403", err)
	}
	if _, err := ops.RunCommand(ctx, "acme", apitypes.NewInvocation{Command: "flush"}); status(err) != 400 {
		t.Fatalf("no reason: %v, want 400", err)
	}
	if _, err := ops.RunCommand(ctx, "nope", run); status(err) != 404 {
		t.Fatalf("unknown deployment: %v, want 404", err)
	}
	inv, err := ops.RunCommand(ctx, "acme", run)
	if err != nil || inv.State != command.StateQueued || inv.Actor != "support" || inv.ActorRole != "operator" || inv.Reason != "ticket 9" {
		t.Fatalf("run = %+v, %v", inv, err)
	}
	refused, err := ops.RunCommand(ctx, "acme", apitypes.NewInvocation{Command: "drop-tables", Reason: "oops"})
	if err != nil || refused.State != command.StateRefused || !strings.Contains(refused.StateReason, "does not declare") {
		t.Fatalf("undeclared = %+v, %v", refused, err)
	}
	many, err := ops.RunCommands(ctx, apitypes.NewInvocation{Selection: &apitypes.CommandSelection{Customer: "acme"}, Command: "flush", Reason: "all of acme"})
	if err != nil || len(many) != 1 || many[0].DeploymentID != "acme" {
		t.Fatalf("selection = %+v, %v", many, err)
	}

	page, err := view.Commands(ctx, apiclient.CommandFilter{Deployment: "acme", State: "refused"})
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != refused.ID {
		t.Fatalf("refused list = %+v, %v", page, err)
	}
	first, err := view.Commands(ctx, apiclient.CommandFilter{Limit: 2})
	if err != nil || len(first.Items) != 2 || first.Next == "" {
		t.Fatalf("first page = %+v, %v", first, err)
	}
	rest, err := view.Commands(ctx, apiclient.CommandFilter{Limit: 2, After: first.Next})
	if err != nil || len(rest.Items) != 1 || rest.Items[0].ID != inv.ID {
		t.Fatalf("second page = %+v, %v", rest, err)
	}
	// No agent picks it up: a short wait answers with it still queued.
	if got, err := view.Command(ctx, inv.ID, 20*time.Millisecond); err != nil || got.State != command.StateQueued {
		t.Fatalf("waited = %+v, %v", got, err)
	}
	if _, err := view.CancelCommand(ctx, inv.ID, "no"); status(err) != 403 {
		t.Fatalf("viewer cancels: %v, want 403", err)
	}
	got, err := ops.CancelCommand(ctx, inv.ID, "wrong deployment")
	if err != nil || got.State != command.StateCancelled {
		t.Fatalf("cancel = %+v, %v", got, err)
	}
	if _, err := ops.CancelCommand(ctx, inv.ID, "again"); status(err) != 409 || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("cancel a cancelled invocation: %v, want 409 naming its state", err)
	}
	if got, err := view.WaitCommand(ctx, inv.ID); err != nil || got.State != command.StateCancelled {
		t.Fatalf("wait on a final invocation = %+v, %v", got, err)
	}
}

// roleClients creates an operator token named name and a viewer token, and
// returns a client for each.
func roleClients(t *testing.T, url, name string) (operator, viewer *apiclient.Client) {
	t.Helper()
	adm := apiclient.New(url, admin)
	var v, o apitypes.Token
	for _, tc := range []struct {
		tok  *apitypes.Token
		name string
		role string
	}{{&v, "dash", "viewer"}, {&o, name, "operator"}} {
		if err := adm.Do(context.Background(), "POST", "/api/v1/tokens", apitypes.NewToken{Name: tc.name, Role: tc.role}, tc.tok); err != nil {
			t.Fatal(err)
		}
	}
	return apiclient.New(url, o.Secret), apiclient.New(url, v.Secret)
}
