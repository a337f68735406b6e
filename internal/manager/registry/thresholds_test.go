package registry_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Thresholds set through the registry are stored with their audit entry, kept
// across a manager restart, and shown in sync once the agent reports holding
// them.
func TestSetThresholdsIsStoredAuditedAndTracked(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	set := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}
	for _, bad := range []registry.ThresholdsRequest{
		{ID: "acme-prod", Set: set},
		{ID: "acme-prod", Set: thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*"}}}, Reason: "x"},
	} {
		if _, err := f.reg.SetThresholds(ctx, bad); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("SetThresholds(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := f.reg.SetThresholds(ctx, registry.ThresholdsRequest{ID: "nobody", Set: set, Reason: "x"}); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown deployment: %v, want ErrNotFound", err)
	}
	got, err := f.reg.SetThresholds(ctx, registry.ThresholdsRequest{ID: "acme-prod", Set: set, By: "ops", ByRole: "operator", Reason: "orders backlog"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Set, set) || got.Hash != thresholds.Hash(set) || got.InSync || got.Agent != nil {
		t.Errorf("after setting: %+v; want the set, not yet in sync", got)
	}
	state, _, _, _ := f.reg.ThresholdsState("acme-prod")
	if !reflect.DeepEqual(state, set) {
		t.Errorf("ThresholdsState = %+v", state)
	}
	log, _, err := f.st.ListAudit(ctx, store.AuditFilter{Action: store.ActionThresholdsSet, Limit: 10})
	if err != nil || len(log) != 1 || log[0].Actor != "ops" || log[0].Reason != "orders backlog" || log[0].DeploymentID != "acme-prod" {
		t.Fatalf("audit = %+v, %v", log, err)
	}

	checkin(t, f, "acme-prod", registry.Report{Thresholds: &registry.ThresholdsReport{Report: &thresholds.Report{Hash: thresholds.Hash(set)}}})
	if got, _ := f.reg.Thresholds("acme-prod"); !got.InSync {
		t.Errorf("after the agent reports holding them: %+v, want in sync", got)
	}

	dir := f.dir
	f.close(t)
	g := open(t, dir, f.clk)
	if got, _ := g.reg.Thresholds("acme-prod"); !reflect.DeepEqual(got.Set, set) || got.Agent != nil {
		t.Errorf("after a manager restart: %+v; want the set kept, the agent not heard yet", got)
	}
}

// A deployment without thresholds of its own checks its customer's default,
// else the fleet's; its own set replaces them whole.
func TestThresholdDefaultsApplyWithoutAnOwnSet(t *testing.T) {
	fleetSet := thresholds.Set{Filesystems: []thresholds.FilesystemRule{{Source: "*", MinFreePercent: 5}}}
	acmeSet := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}
	reg := startRegistry(t, registry.Settings{FlushInterval: time.Hour, EvalInterval: time.Hour,
		ThresholdDefaults: thresholds.Defaults{Fleet: fleetSet, Customers: map[string]thresholds.Set{"acme": acmeSet}}})
	ctx := context.Background()
	if _, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "acme-prod", Customer: "acme"}, {ID: "globex", Customer: "globex"}}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]struct {
		set  thresholds.Set
		from string
	}{"acme-prod": {acmeSet, thresholds.FromCustomer}, "globex": {fleetSet, thresholds.FromFleet}} {
		got, _ := reg.Thresholds(id)
		state, _, _, _ := reg.ThresholdsState(id)
		if !reflect.DeepEqual(got.Effective, want.set) || got.From != want.from || !reflect.DeepEqual(state, want.set) || got.Hash != thresholds.Hash(want.set) {
			t.Errorf("%s: %+v, sent %+v; want %+v from %s", id, got, state, want.set, want.from)
		}
	}
	own := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "nats/orders", MaxLag: 50}}}
	got, err := reg.SetThresholds(ctx, registry.ThresholdsRequest{ID: "acme-prod", Set: own, Reason: "tighter"})
	if err != nil || !reflect.DeepEqual(got.Effective, own) || got.From != thresholds.FromDeployment {
		t.Errorf("with its own set: %+v, %v", got, err)
	}
}
