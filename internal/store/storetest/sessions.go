package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/store"
)

// testSessions: a dashboard session is found by its hash after a reopen,
// touching only moves it forward, sign-out removes it, expiry removes what is
// idle or too old, and creating past the bound drops the least recently used.
func testSessions(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	sess := func(i int, created, used time.Time) store.SessionRecord {
		return store.SessionRecord{Hash: fmt.Sprintf("%064x", i), TokenID: fmt.Sprintf("tok-%d", i), CreatedAt: created, UsedAt: used}
	}
	a := sess(1, t0, t0)
	if err := s.CreateSession(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, a, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second session with the same hash: %v, want ErrConflict", err)
	}
	if err := s.TouchSession(ctx, a.Hash, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// An older touch (a slower replica) does not move it back.
	if err := s.TouchSession(ctx, a.Hash, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchSession(ctx, "nope", t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("touch a missing session: %v, want ErrNotFound", err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	got, err := s.GetSession(ctx, a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	want := a
	want.UsedAt = t0.Add(time.Hour)
	if got.Hash != want.Hash || got.TokenID != want.TokenID || !got.CreatedAt.Equal(want.CreatedAt) || !got.UsedAt.Equal(want.UsedAt) {
		t.Fatalf("session after reopen = %+v, want %+v", got, want)
	}
	if _, err := s.GetSession(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get a missing session: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession(ctx, a.Hash); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, a.Hash); err != nil {
		t.Fatalf("ending an ended session: %v", err)
	}
	if _, err := s.GetSession(ctx, a.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after sign-out: %v, want ErrNotFound", err)
	}

	// Expiry: idle since t0, old since t0, and live.
	idle := sess(2, t0.Add(time.Hour), t0)
	old := sess(3, t0, t0.Add(3*time.Hour))
	live := sess(4, t0.Add(time.Hour), t0.Add(3*time.Hour))
	for _, r := range []store.SessionRecord{idle, old, live} {
		if err := s.CreateSession(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpiredSessions(ctx, t0.Add(time.Hour), t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("expired %d sessions, want 2 (one idle, one too old)", n)
	}
	for _, r := range []store.SessionRecord{idle, old} {
		if _, err := s.GetSession(ctx, r.Hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("expired session %s: %v, want ErrNotFound", r.TokenID, err)
		}
	}
	if _, err := s.GetSession(ctx, live.Hash); err != nil {
		t.Errorf("live session: %v", err)
	}

	// The bound: three more with max 3 keep the three used most recently.
	for i := 5; i <= 7; i++ {
		if err := s.CreateSession(ctx, sess(i, t0, t0.Add(time.Duration(i)*time.Hour)), 3); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetSession(ctx, live.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the least recently used session past the bound: %v, want ErrNotFound", err)
	}
	for i := 5; i <= 7; i++ {
		if _, err := s.GetSession(ctx, sess(i, t0, t0).Hash); err != nil {
			t.Errorf("session %d within the bound: %v", i, err)
		}
	}
}
