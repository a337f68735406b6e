package registry_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// A release's commands reach its deployments' offers, survive a restart, and
// are what CommandTargets checks against, with the rule the agent reported.
func TestReleaseCommandsReachOffersAndTargets(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	specs := []command.Spec{{Name: "row-count", Exec: &command.ExecHandler{Path: "/bin/count"}}}
	bad := []command.Spec{{Name: "Bad Name", Exec: &command.ExecHandler{Path: "/bin/x"}}}
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "3.0", Commands: bad}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("release with an invalid command: err = %v, want ErrInvalid", err)
	}
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "3.0", Commands: specs}); err != nil {
		t.Fatal(err)
	}
	o, send := f.reg.Offer("acme-prod")
	if !send || o.Release != "3.0" || !reflect.DeepEqual(o.Commands, specs) {
		t.Fatalf("offer = %+v, %v; want 3.0 with its commands", o, send)
	}
	rule := command.Rule{Allow: []string{"row-count"}}
	checkin(t, f, "acme-prod", registry.Report{Commands: &registry.CommandsReport{Rule: &rule}})

	if _, err := f.reg.CommandTargets(registry.Selector{}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("empty selection: err = %v, want ErrInvalid", err)
	}
	if _, err := f.reg.CommandTargets(registry.Selector{IDs: []string{"acme-prod", "nope"}}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown id: err = %v, want ErrNotFound", err)
	}
	ts, err := f.reg.CommandTargets(registry.Selector{Filter: fleet.Filter{Customer: "acme", Stack: "app"}})
	if err != nil || len(ts) != 2 {
		t.Fatalf("targets = %+v, %v", ts, err)
	}
	byID := map[string]registry.CommandTarget{ts[0].ID: ts[0], ts[1].ID: ts[1]}
	if p := byID["acme-prod"]; p.Release != "3.0" || !reflect.DeepEqual(p.Commands, specs) || p.Rule == nil || !reflect.DeepEqual(*p.Rule, rule) || p.Customer != "acme" {
		t.Fatalf("acme-prod target = %+v", p)
	}
	if d := byID["acme-dr"]; d.Rule != nil {
		t.Fatalf("acme-dr reported no rule, target has %+v", d.Rule)
	}

	// The rule and the declarations come back after a restart.
	if err := f.reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.close(t)
	g := open(t, f.dir, clock.NewFake(f.clk.Now()))
	ts, err = g.reg.CommandTargets(registry.Selector{IDs: []string{"acme-prod"}})
	if err != nil || len(ts) != 1 || !reflect.DeepEqual(ts[0].Commands, specs) || ts[0].Rule == nil || !reflect.DeepEqual(*ts[0].Rule, rule) {
		t.Fatalf("after restart: %+v, %v", ts, err)
	}
	if v := view(t, g, "acme-prod"); v.Deployment.CommandRule == nil {
		t.Fatal("the deployment's view lost its command rule")
	}
}
