package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// auditFixture is a log of 30 entries over three actors, two deployments of two
// customers and three kinds of action, several sharing one instant so that
// paging has ties to get right.
func auditFixture() []store.AuditEntry {
	var out []store.AuditEntry
	actors := []string{"ops", "release-bot", "auditor"}
	actions := []string{store.ActionCommandInvoke, store.ActionCommandResult, store.ActionTokenCreate}
	for i := range 30 {
		e := store.AuditEntry{
			Actor:     actors[i%3],
			ActorRole: string(auth.RoleOperator),
			Action:    actions[i%3],
			Outcome:   store.OutcomeSucceeded,
			Reason:    fmt.Sprintf("reason %d", i),
			Detail:    fmt.Sprintf(`{"n":%d}`, i),
		}
		// Entries 10 to 14 share one instant.
		if i >= 10 && i <= 14 {
			e.At = t0.Add(10 * time.Second)
		} else {
			e.At = t0.Add(time.Duration(i) * time.Second)
		}
		if i%2 == 0 {
			e.DeploymentID, e.Customer = "a", "acme"
		} else {
			e.DeploymentID, e.Customer = "b", "globex"
		}
		if i%5 == 0 {
			e.Outcome = store.OutcomeFailed
		}
		if i == 7 {
			e.ID = "caller-chosen"
		}
		out = append(out, e)
	}
	return out
}

// testAudit checks appending, every filter, paging and pruning of the audit log.
func testAudit(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	all := auditFixture()
	// Appended in two calls, the second with one entry older than some of the
	// first: order is by time, not by arrival.
	if err := s.AppendAudit(ctx, all[:20]); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, all[20:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()

	got, next, err := s.ListAudit(ctx, store.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if next != "" || len(got) != len(all) {
		t.Fatalf("listing everything: %d entries, next %q; want %d and no next page", len(got), next, len(all))
	}
	ids := map[string]bool{}
	for i, e := range got {
		if e.ID == "" || ids[e.ID] {
			t.Errorf("entry %d has id %q, empty or repeated", i, e.ID)
		}
		ids[e.ID] = true
		if i > 0 && e.At.After(got[i-1].At) {
			t.Errorf("entry %d (%s) is newer than entry %d (%s): want newest first", i, e.At, i-1, got[i-1].At)
		}
	}
	if !ids["caller-chosen"] {
		t.Error("an id the caller chose was not kept")
	}
	// Every field comes back as written.
	byReason := map[string]store.AuditEntry{}
	for _, e := range got {
		byReason[e.Reason] = e
	}
	for _, w := range all {
		g := byReason[w.Reason]
		if w.ID == "" {
			w.ID = g.ID
		}
		if !g.At.Equal(w.At) {
			t.Errorf("%s: at %s, want %s", w.Reason, g.At, w.At)
		}
		g.At = w.At
		if g != w {
			t.Errorf("entry came back as\n%+v\nwant\n%+v", g, w)
		}
	}

	count := func(f store.AuditFilter, pred func(store.AuditEntry) bool) {
		t.Helper()
		f.Limit = 100
		got, _, err := s.ListAudit(ctx, f)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		want := 0
		for _, e := range all {
			if pred(e) {
				want++
			}
		}
		for _, e := range got {
			if !pred(e) {
				t.Errorf("filter %+v returned %+v", f, e)
			}
		}
		if len(got) != want || want == 0 {
			t.Errorf("filter %+v: %d entries, want %d (and the fixture must have some)", f, len(got), want)
		}
	}
	count(store.AuditFilter{Actor: "ops"}, func(e store.AuditEntry) bool { return e.Actor == "ops" })
	count(store.AuditFilter{Action: store.ActionTokenCreate}, func(e store.AuditEntry) bool { return e.Action == store.ActionTokenCreate })
	count(store.AuditFilter{Action: "command."}, func(e store.AuditEntry) bool {
		return e.Action == store.ActionCommandInvoke || e.Action == store.ActionCommandResult
	})
	count(store.AuditFilter{DeploymentID: "b"}, func(e store.AuditEntry) bool { return e.DeploymentID == "b" })
	count(store.AuditFilter{Customer: "acme"}, func(e store.AuditEntry) bool { return e.Customer == "acme" })
	count(store.AuditFilter{Outcome: store.OutcomeFailed}, func(e store.AuditEntry) bool { return e.Outcome == store.OutcomeFailed })
	since, until := t0.Add(10*time.Second), t0.Add(20*time.Second)
	count(store.AuditFilter{Since: since, Until: until}, func(e store.AuditEntry) bool { return !e.At.Before(since) && e.At.Before(until) })
	count(store.AuditFilter{Actor: "release-bot", Action: "command.", Customer: "globex"}, func(e store.AuditEntry) bool {
		return e.Actor == "release-bot" && e.Customer == "globex"
	})
	// A prefix matches only at a dot: "command" alone is an exact action.
	if got, _, err := s.ListAudit(ctx, store.AuditFilter{Action: "command", Limit: 100}); err != nil || len(got) != 0 {
		t.Errorf(`action "command": %d entries, %v; want none`, len(got), err)
	}

	// Paging: pages of 4 (splitting the five entries of one instant) cover the
	// log with no gap and no repeat, and newer entries appended meanwhile do not
	// shift the pages still to come.
	var paged []store.AuditEntry
	after := ""
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("paging does not end")
		}
		got, next, err := s.ListAudit(ctx, store.AuditFilter{Limit: 4, After: after})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, got...)
		if page == 1 {
			if err := s.AppendAudit(ctx, []store.AuditEntry{{At: t0.Add(time.Hour), Actor: "late", Action: store.ActionSignIn}}); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(paged) != len(all) {
		t.Fatalf("paging returned %d entries, want %d", len(paged), len(all))
	}
	for i := range paged {
		if paged[i].ID != got[i].ID {
			t.Fatalf("page entry %d is %s, want %s (the one-page listing's)", i, paged[i].ID, got[i].ID)
		}
	}
	// Paging with a filter ends where the filtered log does.
	if got, next, err := s.ListAudit(ctx, store.AuditFilter{Actor: "auditor", Limit: 10}); err != nil || len(got) != 10 || next != "" {
		t.Errorf("exactly one page of the auditor's 10 entries: %d entries, next %q, %v; want 10 and no next page", len(got), next, err)
	}
	if _, _, err := s.ListAudit(ctx, store.AuditFilter{After: "not a cursor"}); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("a made-up cursor: err = %v, want ErrBadCursor", err)
	}

	// Pruning removes what is older than the cutoff and nothing else.
	n, err := s.PruneAudit(ctx, t0.Add(10*time.Second))
	if err != nil || n != 10 {
		t.Fatalf("prune before entry 10: removed %d, %v; want 10", n, err)
	}
	got, _, err = s.ListAudit(ctx, store.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all)-10+1 || got[len(got)-1].At.Before(t0.Add(10*time.Second)) {
		t.Errorf("after pruning: %d entries, the oldest at %s; want %d from %s on", len(got), got[len(got)-1].At, len(all)-9, t0.Add(10*time.Second))
	}
}

// testAuditTrails checks that the store methods with an audit trail of their
// own write it to the audit log too, with the deployment's customer, and that a
// refused change leaves no entry.
func testAuditTrails(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	a, b := rec("a"), rec("b")
	b.Deployment.Customer = "globex"
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{a, b}); err != nil {
		t.Fatal(err)
	}
	pinned := b
	pinned.Deployment.Pin = &fleet.Pin{Release: "1.7.2", By: "ops", Reason: "incident", At: t0}
	pin := fleet.PinChange{ChangeID: "c1", At: t0.Add(time.Second), By: "ops", ByRole: string(auth.RoleOperator), Reason: "incident",
		Action: fleet.ActionPin, DeploymentID: "b", From: "1.8.0", To: "1.7.2", Running: "1.8.0"}
	if err := s.ApplyPins(ctx, []store.DeploymentRecord{pinned}, []fleet.PinChange{pin}); err != nil {
		t.Fatal(err)
	}
	rotate := fleet.DeploymentChange{At: t0.Add(2 * time.Second), By: "ops", ByRole: string(auth.RoleOperator), Reason: "leak",
		Action: fleet.ActionRotateToken, DeploymentID: "a", Detail: "new token, the old one valid for 1h"}
	if err := s.SetDeploymentTokens(ctx, store.DeploymentTokens{ID: "a", TokenHash: auth.Hash("tok-a2")}, []fleet.DeploymentChange{rotate}); err != nil {
		t.Fatal(err)
	}
	refused := rotate
	refused.DeploymentID = "b"
	if err := s.SetDeploymentTokens(ctx, store.DeploymentTokens{ID: "b", TokenHash: auth.Hash("tok-a2")}, []fleet.DeploymentChange{refused}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("taking a's token hash: %v, want ErrConflict", err)
	}
	del := fleet.DeploymentChange{At: t0.Add(3 * time.Second), By: "admin", ByRole: string(auth.RoleAdmin), Reason: "customer left",
		Action: fleet.ActionDelete, DeploymentID: "b"}
	if err := s.DeleteDeployment(ctx, "b", del); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDeployment(ctx, "ghost", fleet.DeploymentChange{At: t0.Add(4 * time.Second), By: "admin", Action: fleet.ActionDelete, DeploymentID: "ghost"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting an unknown deployment: %v, want ErrNotFound", err)
	}
	got, _, err := s.ListAudit(ctx, store.AuditFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.AuditEntry{store.DeploymentAudit(del, "globex"), store.DeploymentAudit(rotate, "acme"), store.PinAudit(pin, "globex")}
	CheckAudit(t, got, want)
	if got[0].Action != "deployment.delete" || got[2].Action != "pin.pin" || got[2].Target != "1.7.2" {
		t.Errorf("actions %q, %q (target %q); want deployment.delete and pin.pin to 1.7.2", got[0].Action, got[2].Action, got[2].Target)
	}
}

// CheckAudit fails t unless got holds want's entries in order, ids aside (the
// store assigns them).
func CheckAudit(t *testing.T, got, want []store.AuditEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("audit log holds %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		w.ID = g.ID
		if !g.At.Equal(w.At) {
			t.Errorf("entry %d at %s, want %s", i, g.At, w.At)
		}
		g.At = w.At
		if g != w {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}
