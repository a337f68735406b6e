// Package storetest is the conformance suite every store backend must pass: a
// backend's test calls Run with a function that opens it, and the suite checks
// the store.Fleet (audit log included), store.Notifications, store.Commands, store.Rollouts and store.Sessions contracts, reopening the backend to
// check that what was written is kept.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// Backend is what a store backend implements: every contract of package store.
type Backend interface {
	store.Fleet
	store.Notifications
	store.Commands
	store.Rollouts
	store.Sessions
}

// Opener opens the backend under test on a directory (the same directory again
// after Close must find the same data). It registers no cleanup of its own.
type Opener func(t *testing.T, dir string) Backend

// Run runs the conformance suite against the backend open opens.
func Run(t *testing.T, open Opener) {
	t.Run("DeploymentsRoundTripAndSurviveReopen", func(t *testing.T) { testDeployments(t, open) })
	t.Run("CreateDeploymentsIsAllOrNothing", func(t *testing.T) { testCreateConflict(t, open) })
	t.Run("ReleasesAndEvents", func(t *testing.T) { testReleasesEvents(t, open) })
	t.Run("APITokens", func(t *testing.T) { testTokens(t, open) })
	t.Run("PinsAndAuditCommitTogether", func(t *testing.T) { testPins(t, open) })
	t.Run("DeploymentTokensRotateRevokeDelete", func(t *testing.T) { testDeploymentTokens(t, open) })
	t.Run("Notifications", func(t *testing.T) { testNotifications(t, open) })
	t.Run("AuditLog", func(t *testing.T) { testAudit(t, open) })
	t.Run("AuditTrailsReachTheAuditLog", func(t *testing.T) { testAuditTrails(t, open) })
	t.Run("CommandInvocations", func(t *testing.T) { testCommands(t, open) })
	t.Run("CommandInvocationsRacingMoves", func(t *testing.T) { testCommandsRacing(t, open) })
	t.Run("ThresholdsAndAuditCommitTogether", func(t *testing.T) { testThresholds(t, open) })
	t.Run("CheckinsKeepOperatorState", func(t *testing.T) { testCheckinsKeepOperatorState(t, open) })
	t.Run("FleetChangesSince", func(t *testing.T) { testFleetChanges(t, open) })
	t.Run("RolloutsAndPlans", func(t *testing.T) { testRollouts(t, open) })
	t.Run("DashboardSessions", func(t *testing.T) { testSessions(t, open) })
	t.Run("DashboardSessionsPerTokenLimit", func(t *testing.T) { testSessionPerTokenLimit(t, open) })
	t.Run("DashboardSessionsTotalLimit", func(t *testing.T) { testSessionTotalLimit(t, open) })
	t.Run("DashboardSessionLimitsHoldConcurrently", func(t *testing.T) { testSessionLimitsConcurrently(t, open) })
	t.Run("DashboardSessionsEndWithTheirToken", func(t *testing.T) { testSessionsEndWithTheirToken(t, open) })
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func rec(id string) store.DeploymentRecord {
	return store.DeploymentRecord{
		TokenHash: auth.Hash("tok-" + id),
		Deployment: fleet.Deployment{
			ID: id, Name: "Name " + id, Customer: "acme", Platform: "k8s", Cloud: "aws", Region: "eu-west-1",
			Stack: "app", Labels: map[string]string{"tier": "gold"}, CreatedAt: t0,
		},
	}
}

func testDeployments(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	recs := []store.DeploymentRecord{rec("a"), rec("b"), rec("c")}
	if err := s.CreateDeployments(ctx, recs); err != nil {
		t.Fatal(err)
	}
	upd := recs[1]
	upd.Deployment.Mode = fleet.ModePush
	upd.Deployment.Connected = true
	upd.Deployment.RunningRelease = "1.8.0"
	upd.Deployment.AgentVersion = "0.1.0"
	upd.Deployment.InstanceUID = "0194"
	upd.Deployment.LastCheckin = t0.Add(time.Minute)
	upd.Deployment.Health = fleet.Health{Reported: true, Components: map[string]fleet.ComponentHealth{"api": {LastError: "boom"}}}
	upd.Deployment.ConfigHash = "h1"
	upd.Deployment.Update = fleet.UpdateState{Phase: fleet.UpdateFailed, Release: "1.8.0", Error: "exit 1", At: t0}
	upd.Deployment.Pin = &fleet.Pin{Release: "1.7.2", By: "ops", Reason: "incident", At: t0}
	upd.LastStatus = fleet.StatusUnhealthy
	upd.Deployment.PreviousRelease = "1.7.2"
	upd.Deployment.ReleaseSince = t0.Add(30 * time.Second)
	upd.Deployment.AcceptsReleases = true
	upd.Deployment.OfferHash = "abcd"
	upd.Deployment.BehindSince = t0.Add(40 * time.Second)
	upd.Deployment.Regression = &fleet.Regression{Release: "1.8.0", Previous: "1.7.2", Requests: 10, ErrorRate: 0.5, Worse: []string{"error_rate"}, Since: t0}
	upd.Deployment.CommandRule = &command.Rule{Allow: []string{"row-count"}}
	upd.Deployment.Thresholds = thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}
	upd.Deployment.TelemetryLoss = &fleet.TelemetryLoss{Records: 560, Counts: map[string]int64{"logs/queue_full": 560}, Last: t0,
		RunStart: t0.Add(-time.Hour), RunCounts: map[string]int64{"logs/queue_full": 560}}
	ghost := rec("ghost")
	if err := s.UpdateDeployments(ctx, []store.DeploymentRecord{upd, ghost}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	got, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d deployments after reopen, want 3 (an update of an unknown id must not create one)", len(got))
	}
	b := got[1]
	if err := equalRecords(upd, b); err != nil {
		t.Fatalf("updated deployment did not round-trip: %v", err)
	}
	if err := equalRecords(recs[0], got[0]); err != nil {
		t.Fatalf("untouched deployment changed: %v", err)
	}
	if !got[0].Deployment.LastCheckin.IsZero() || got[0].Deployment.Pin != nil {
		t.Fatalf("never-checked-in deployment reads back last_checkin %v pin %v", got[0].Deployment.LastCheckin, got[0].Deployment.Pin)
	}
}

func equalRecords(want, got store.DeploymentRecord) error {
	w, g := want.Deployment, got.Deployment
	switch {
	case got.TokenHash != want.TokenHash:
		return fmt.Errorf("token hash %q, want %q", got.TokenHash, want.TokenHash)
	case got.LastStatus != want.LastStatus:
		return fmt.Errorf("last status %q, want %q", got.LastStatus, want.LastStatus)
	case g.ID != w.ID || g.Name != w.Name || g.Customer != w.Customer || g.Platform != w.Platform ||
		g.Cloud != w.Cloud || g.Region != w.Region || g.Stack != w.Stack:
		return fmt.Errorf("declared fields %+v, want %+v", g, w)
	case !g.CreatedAt.Equal(w.CreatedAt) || !g.LastCheckin.Equal(w.LastCheckin):
		return fmt.Errorf("times created %v checkin %v, want %v %v", g.CreatedAt, g.LastCheckin, w.CreatedAt, w.LastCheckin)
	case g.Mode != w.Mode || g.Connected != w.Connected || g.RunningRelease != w.RunningRelease ||
		g.AgentVersion != w.AgentVersion || g.InstanceUID != w.InstanceUID || g.ConfigHash != w.ConfigHash:
		return fmt.Errorf("observed fields %+v, want %+v", g, w)
	case fmt.Sprint(g.Labels) != fmt.Sprint(w.Labels) && len(w.Labels) > 0:
		return fmt.Errorf("labels %v, want %v", g.Labels, w.Labels)
	case fmt.Sprint(g.Health) != fmt.Sprint(w.Health):
		return fmt.Errorf("health %+v, want %+v", g.Health, w.Health)
	case g.Update.Phase != w.Update.Phase || g.Update.Error != w.Update.Error || !g.Update.At.Equal(w.Update.At):
		return fmt.Errorf("update %+v, want %+v", g.Update, w.Update)
	case (g.Pin == nil) != (w.Pin == nil) || (g.Pin != nil && (g.Pin.Release != w.Pin.Release || g.Pin.Reason != w.Pin.Reason)):
		return fmt.Errorf("pin %+v, want %+v", g.Pin, w.Pin)
	case g.PreviousRelease != w.PreviousRelease || !g.ReleaseSince.Equal(w.ReleaseSince) || g.AcceptsReleases != w.AcceptsReleases ||
		g.OfferHash != w.OfferHash || !g.BehindSince.Equal(w.BehindSince):
		return fmt.Errorf("release state %q %v %v %q %v, want %q %v %v %q %v", g.PreviousRelease, g.ReleaseSince, g.AcceptsReleases, g.OfferHash, g.BehindSince,
			w.PreviousRelease, w.ReleaseSince, w.AcceptsReleases, w.OfferHash, w.BehindSince)
	case fmt.Sprint(g.Regression) != fmt.Sprint(w.Regression):
		return fmt.Errorf("regression %+v, want %+v", g.Regression, w.Regression)
	case (g.TelemetryLoss == nil) != (w.TelemetryLoss == nil) || g.TelemetryLoss != nil &&
		(fmt.Sprint(g.TelemetryLoss.Counts, g.TelemetryLoss.RunCounts) != fmt.Sprint(w.TelemetryLoss.Counts, w.TelemetryLoss.RunCounts) ||
			g.TelemetryLoss.Records != w.TelemetryLoss.Records || !g.TelemetryLoss.Last.Equal(w.TelemetryLoss.Last) ||
			!g.TelemetryLoss.RunStart.Equal(w.TelemetryLoss.RunStart)):
		return fmt.Errorf("telemetry loss %+v, want %+v", g.TelemetryLoss, w.TelemetryLoss)
	case !reflect.DeepEqual(g.CommandRule, w.CommandRule):
		return fmt.Errorf("command rule %+v, want %+v", g.CommandRule, w.CommandRule)
	case !reflect.DeepEqual(g.Thresholds, w.Thresholds):
		return fmt.Errorf("thresholds %+v, want %+v", g.Thresholds, w.Thresholds)
	}
	return nil
}

func testCreateConflict(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{rec("a")}); err != nil {
		t.Fatal(err)
	}
	err := s.CreateDeployments(ctx, []store.DeploymentRecord{rec("b"), rec("a")})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate id: err = %v, want ErrConflict", err)
	}
	got, _ := s.ListDeployments(ctx)
	if len(got) != 1 {
		t.Fatalf("after a refused batch there are %d deployments, want 1: the batch was half-applied", len(got))
	}
}

func testReleasesEvents(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	r := fleet.Release{Stack: "app", Version: "1.8.0", CreatedAt: t0, Notes: "faster",
		Commands: []command.Spec{{Name: "row-count", Timeout: command.Duration(time.Minute), Exec: &command.ExecHandler{Path: "/bin/count"},
			Params: []command.Param{{Name: "table", Type: command.TypeString, Required: true}}}}}
	if err := s.CreateRelease(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRelease(ctx, r); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate release: err = %v, want ErrConflict", err)
	}
	rs, err := s.ListReleases(ctx)
	if err != nil || len(rs) != 1 || rs[0].Notes != "faster" || !rs[0].CreatedAt.Equal(t0) || !reflect.DeepEqual(rs[0].Commands, r.Commands) {
		t.Fatalf("releases = %+v, %v", rs, err)
	}
	evs := []fleet.Event{
		{DeploymentID: "a", At: t0, From: "", To: fleet.StatusPending},
		{DeploymentID: "a", At: t0.Add(time.Second), From: fleet.StatusPending, To: fleet.StatusHealthy},
		{DeploymentID: "b", At: t0.Add(2 * time.Second), From: fleet.StatusHealthy, To: fleet.StatusStale, Reason: "quiet", ReasonCode: fleet.ReasonNoCheckin, Release: "1.8.0"},
	}
	if err := s.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListEvents(ctx, "a", 10)
	if err != nil || len(got) != 2 || got[0].To != fleet.StatusHealthy || got[1].To != fleet.StatusPending {
		t.Fatalf("events of a = %+v, %v; want healthy then pending", got, err)
	}
	all, _ := s.ListEvents(ctx, "", 2)
	if len(all) != 2 || all[0].Reason != "quiet" || all[0].ReasonCode != fleet.ReasonNoCheckin || all[0].Release != "1.8.0" {
		t.Fatalf("newest two events = %+v", all)
	}
}

func testTokens(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	tok := auth.APIToken{ID: "t1", Name: "ci", Role: auth.RoleOperator, Hash: auth.Hash("x")}
	if err := s.CreateAPIToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIToken(ctx, tok); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate token: %v, want ErrConflict", err)
	}
	ts, _ := s.ListAPITokens(ctx)
	if len(ts) != 1 || ts[0] != tok {
		t.Fatalf("tokens = %+v", ts)
	}
	if err := s.DeleteAPIToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAPIToken(ctx, "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
}

func testPins(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	recs := []store.DeploymentRecord{rec("a"), rec("b")}
	if err := s.CreateDeployments(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		recs[i].Deployment.Pin = &fleet.Pin{Release: "1.7.2", By: "ops", Reason: "incident 42", At: t0}
	}
	changes := []fleet.PinChange{
		{ChangeID: "chg-1", At: t0, By: "ops", Reason: "incident 42", Action: fleet.ActionPin, DeploymentID: "a", From: "1.8.0", To: "1.7.2", Running: "1.8.0"},
		{ChangeID: "chg-1", At: t0, By: "ops", Reason: "incident 42", Action: fleet.ActionPin, DeploymentID: "b", From: "1.8.0", To: "1.7.2", Running: "1.7.2"},
	}
	if err := s.ApplyPins(ctx, recs, changes); err != nil {
		t.Fatal(err)
	}
	unpin := []fleet.PinChange{{ChangeID: "chg-2", At: t0.Add(time.Minute), By: "dev", Action: fleet.ActionUnpin, DeploymentID: "a", From: "1.7.2", To: "1.8.0", Running: "1.7.2"}}
	recs[0].Deployment.Pin = nil
	if err := s.ApplyPins(ctx, recs[:1], unpin); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Deployment.Pin != nil || got[1].Deployment.Pin == nil || got[1].Deployment.Pin.Reason != "incident 42" {
		t.Fatalf("pins after pin and unpin: a %+v, b %+v; want a unpinned, b pinned for incident 42", got[0].Deployment.Pin, got[1].Deployment.Pin)
	}
	ofA, err := s.ListPinChanges(ctx, "a", 10)
	if err != nil || len(ofA) != 2 || ofA[0].Action != fleet.ActionUnpin || !ofA[1].At.Equal(t0) {
		t.Fatalf("audit of a = %+v, %v; want unpin then pin", ofA, err)
	}
	if c := ofA[1]; c.ChangeID != "chg-1" || c.By != "ops" || c.Reason != "incident 42" || c.From != "1.8.0" || c.To != "1.7.2" || c.Running != "1.8.0" {
		t.Fatalf("pin entry = %+v", c)
	}
	all, _ := s.ListPinChanges(ctx, "", 10)
	if len(all) != 3 {
		t.Fatalf("%d audit entries in all, want 3", len(all))
	}

	// A change whose audit entry cannot be written leaves the pins as they were.
	bad := []fleet.PinChange{{ChangeID: "chg-3", At: t0, Action: fleet.ActionPin, DeploymentID: "a"}}
	recs[0].Deployment.Pin = &fleet.Pin{Release: "9.9.9"}
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.ApplyPins(ctxDone, recs[:1], bad); err == nil {
		t.Fatal("ApplyPins with a cancelled context succeeded")
	}
	got, _ = s.ListDeployments(ctx)
	if got[0].Deployment.Pin != nil {
		t.Fatalf("a failed ApplyPins left pin %+v", got[0].Deployment.Pin)
	}
}

func testThresholds(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	a := rec("a")
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{a}); err != nil {
		t.Fatal(err)
	}
	set := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}, {Source: "nats/orders", MaxLag: 50, MaxOldestAgeSeconds: 600}},
		Filesystems: []thresholds.FilesystemRule{{Source: "filesystem/data", MinFreeBytes: 1 << 30, MinFreePercent: 12.5, MinFreeInodesPercent: 5}}}
	a.Deployment.Thresholds = set
	entry := store.ThresholdsAudit("a", "acme", thresholds.Set{}, set, t0, "ops", "operator", "orders backlog pages us")
	if err := s.ApplyThresholds(ctx, a, entry); err != nil {
		t.Fatal(err)
	}
	// An unknown deployment is ErrNotFound, and its audit entry is not written.
	ghost := rec("ghost")
	ghost.Deployment.Thresholds = set
	if err := s.ApplyThresholds(ctx, ghost, store.ThresholdsAudit("ghost", "", thresholds.Set{}, set, t0, "ops", "operator", "x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ApplyThresholds of an unknown deployment: %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	got, err := s.ListDeployments(ctx)
	if err != nil || len(got) != 1 {
		t.Fatalf("ListDeployments = %d records, %v; want 1", len(got), err)
	}
	if !reflect.DeepEqual(got[0].Deployment.Thresholds, set) {
		t.Fatalf("thresholds after reopen %+v, want %+v", got[0].Deployment.Thresholds, set)
	}
	log, _, err := s.ListAudit(ctx, store.AuditFilter{Action: store.ActionThresholdsSet, Limit: 10})
	if err != nil || len(log) != 1 {
		t.Fatalf("thresholds audit = %+v, %v; want one entry", log, err)
	}
	if e := log[0]; e.DeploymentID != "a" || e.Actor != "ops" || e.ActorRole != "operator" || e.Reason != "orders backlog pages us" ||
		e.Customer != "acme" || e.Detail != entry.Detail {
		t.Errorf("audit entry %+v, want %+v", e, entry)
	}

	// A plain update keeps them, and clearing them is kept too.
	upd := got[0]
	upd.Deployment.RunningRelease = "1.9.0"
	if err := s.UpdateDeployments(ctx, []store.DeploymentRecord{upd}); err != nil {
		t.Fatal(err)
	}
	upd.Deployment.Thresholds = thresholds.Set{}
	if err := s.ApplyThresholds(ctx, upd, store.ThresholdsAudit("a", "acme", set, thresholds.Set{}, t0.Add(time.Minute), "ops", "operator", "quiet")); err != nil {
		t.Fatal(err)
	}
	got, _ = s.ListDeployments(ctx)
	if !got[0].Deployment.Thresholds.IsZero() || got[0].Deployment.RunningRelease != "1.9.0" {
		t.Errorf("after clearing: thresholds %+v release %q", got[0].Deployment.Thresholds, got[0].Deployment.RunningRelease)
	}
}
