package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// Kinds as the notifier names them; a backend stores any kind as given.
const (
	kindUnhealthy store.NotificationKind = "unhealthy"
	kindStale     store.NotificationKind = "stale"
	kindBehind    store.NotificationKind = "behind"
)

// testNotifications checks the store.Notifications contract: what is added
// comes back whole, deliveries update one at a time, and the queries the
// notifier starts from (pending, latest per deployment and kind) and the API's
// list select and order as documented, across a reopen.
func testNotifications(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	defer func() { s.Close() }()

	// Backends keep microseconds.
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 123456000, time.UTC)
	pending := func(hook string, at time.Time) store.Delivery {
		return store.Delivery{Webhook: hook, State: store.Pending, UpdatedAt: at}
	}
	acme := store.NotificationDeployment{ID: "acme-prod", Name: "Acme production", Customer: "acme", Cloud: "aws", Region: "us-east-1", Release: "2.0.0"}
	n1 := store.Notification{ID: "n1", Kind: kindUnhealthy, State: store.Entered, Deployment: acme,
		Status: fleet.StatusUnhealthy, PreviousStatus: fleet.StatusHealthy, Reason: "components down: db", ReasonCode: fleet.ReasonComponentsDown,
		At: t0, CreatedAt: t0.Add(2 * time.Minute), Deliveries: []store.Delivery{pending("pager", t0.Add(2*time.Minute)), pending("chat", t0.Add(2*time.Minute))}}
	n2 := store.Notification{ID: "n2", Kind: kindUnhealthy, State: store.Resolved, Deployment: acme,
		Status: fleet.StatusHealthy, PreviousStatus: fleet.StatusUnhealthy, At: t0.Add(time.Hour), CreatedAt: t0.Add(time.Hour + 2*time.Minute),
		Deliveries: []store.Delivery{pending("pager", t0.Add(time.Hour+2*time.Minute))}}
	globex := store.NotificationDeployment{ID: "globex", Name: "globex", Customer: "globex"}
	n3 := store.Notification{ID: "n3", Kind: kindBehind, State: store.Entered, Deployment: globex, Status: fleet.StatusHealthy,
		Reason: "running 1.0.0, desired 2.0.0", BehindReason: fleet.BehindPullPending, At: t0.Add(2 * time.Hour), CreatedAt: t0.Add(2 * time.Hour),
		Deliveries: []store.Delivery{pending("chat", t0.Add(2*time.Hour)), pending("pager", t0.Add(2*time.Hour))}}
	for _, n := range []store.Notification{n1, n2, n3} {
		if err := s.AddNotification(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(ns []store.Notification) []string {
		out := []string{}
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}

	all, err := s.ListNotifications(ctx, store.NotificationQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || !reflect.DeepEqual(all[0], n3) || !reflect.DeepEqual(all[1], n2) || !reflect.DeepEqual(all[2], n1) {
		t.Fatalf("list = %+v\nwant n3, n2, n1 as added (deliveries in their order)", all)
	}

	// A delivery is updated on its own; an unknown one is not found.
	done := store.Delivery{Webhook: "pager", State: store.Delivered, Attempts: 3, LastError: "answered 503 Service Unavailable",
		DeliveredAt: t0.Add(5 * time.Minute), UpdatedAt: t0.Add(5 * time.Minute)}
	if err := s.UpdateDelivery(ctx, "n1", done); err != nil {
		t.Fatal(err)
	}
	retry := store.Delivery{Webhook: "chat", State: store.Pending, Attempts: 1, LastError: "POST failed: connection refused",
		NextAttempt: t0.Add(3 * time.Minute), UpdatedAt: t0.Add(2 * time.Minute)}
	if err := s.UpdateDelivery(ctx, "n1", retry); err != nil {
		t.Fatal(err)
	}
	gaveUp := store.Delivery{Webhook: "pager", State: store.Failed, Attempts: 1, LastError: "answered 404 Not Found", UpdatedAt: t0.Add(time.Hour)}
	if err := s.UpdateDelivery(ctx, "n2", gaveUp); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateDelivery(ctx, "n1", store.Delivery{Webhook: "nobody", State: store.Failed}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of an unknown delivery: err = %v, want ErrNotFound", err)
	}
	if err := s.UpdateDelivery(ctx, "n9", done); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of an unknown notification: err = %v, want ErrNotFound", err)
	}

	// Adding is atomic: a notification naming a webhook twice is refused whole,
	// and an id is unique.
	dup := store.Notification{ID: "n4", Kind: kindStale, State: store.Entered, Deployment: globex, At: t0, CreatedAt: t0,
		Deliveries: []store.Delivery{pending("chat", t0), pending("chat", t0)}}
	if err := s.AddNotification(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("a webhook twice: err = %v, want ErrConflict", err)
	}
	if err := s.AddNotification(ctx, n3); !errors.Is(err, store.ErrConflict) {
		t.Errorf("an id twice: err = %v, want ErrConflict", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir) // everything below holds across a restart

	n1.Deliveries = []store.Delivery{done, retry}
	n2.Deliveries = []store.Delivery{gaveUp}
	got, err := s.PendingNotifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], n1) || !reflect.DeepEqual(got[1], n3) {
		t.Fatalf("pending = %+v\nwant n1 (chat retrying) and n3, oldest first, with all their deliveries", got)
	}
	latest, err := s.LatestNotifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"n2", "n3"}; !reflect.DeepEqual(ids(latest), want) {
		t.Errorf("latest per deployment and kind = %v, want %v (n4 was refused)", ids(latest), want)
	}
	for _, tc := range []struct {
		q    store.NotificationQuery
		want []string
	}{
		{store.NotificationQuery{}, []string{"n3", "n2", "n1"}},
		{store.NotificationQuery{Deployment: "acme-prod"}, []string{"n2", "n1"}},
		{store.NotificationQuery{State: "pending"}, []string{"n3", "n1"}},
		{store.NotificationQuery{State: "delivered"}, []string{"n1"}},
		{store.NotificationQuery{State: "failed"}, []string{"n2"}},
		{store.NotificationQuery{State: "entered"}, []string{"n3", "n1"}},
		{store.NotificationQuery{State: "resolved", Deployment: "acme-prod"}, []string{"n2"}},
		{store.NotificationQuery{Deployment: "globex", State: "failed"}, []string{}},
		{store.NotificationQuery{Limit: 2}, []string{"n3", "n2"}},
	} {
		got, err := s.ListNotifications(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ids(got), tc.want) {
			t.Errorf("list %+v = %v, want %v", tc.q, ids(got), tc.want)
		}
	}
	got, _ = s.ListNotifications(ctx, store.NotificationQuery{Deployment: "acme-prod"})
	if len(got) != 2 || !reflect.DeepEqual(got[1], n1) {
		t.Errorf("n1 after updates and a reopen = %+v\nwant %+v", got, n1)
	}
}
