package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/store"
)

// testSessions: a dashboard session is found by its hash after a reopen,
// touching only moves it forward, sign-out removes it, expiry removes what is
// idle or too old.
func testSessions(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	sess := func(i int, created, used time.Time) store.SessionRecord {
		return store.SessionRecord{Hash: fmt.Sprintf("%064x", i), TokenID: fmt.Sprintf("tok-%d", i), CreatedAt: created, UsedAt: used}
	}
	a := sess(1, t0, t0)
	if _, err := s.CreateSession(ctx, a, store.SessionLimits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSession(ctx, a, store.SessionLimits{}); !errors.Is(err, store.ErrConflict) {
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
		if _, err := s.CreateSession(ctx, r, store.SessionLimits{}); err != nil {
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

}

// session is the i-th session of token tok, created at t0 and used i minutes
// later, so a higher i is used more recently.
func session(tok string, i int) store.SessionRecord {
	return store.SessionRecord{Hash: fmt.Sprintf("%s-%060x", tok, i), TokenID: tok, CreatedAt: t0, UsedAt: t0.Add(time.Duration(i) * time.Minute)}
}

// live reports which of rs the store still holds.
func live(t *testing.T, s store.Sessions, rs ...store.SessionRecord) []bool {
	t.Helper()
	out := make([]bool, len(rs))
	for i, r := range rs {
		_, err := s.GetSession(context.Background(), r.Hash)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		out[i] = err == nil
	}
	return out
}

// testSessionPerTokenLimit: signing in with one token past its limit ends
// that token's sessions used least recently and never another token's, so
// one token holder cannot sign everybody else out.
func testSessionPerTokenLimit(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	const perToken = 4
	lim := store.SessionLimits{PerToken: perToken, Total: 100}
	b := session("tok-b", 0)
	if _, err := s.CreateSession(ctx, b, lim); err != nil {
		t.Fatal(err)
	}
	var a []store.SessionRecord
	ended := 0
	for i := 1; i <= perToken+5; i++ {
		r := session("tok-a", i)
		n, err := s.CreateSession(ctx, r, lim)
		if err != nil {
			t.Fatalf("sign-in %d with token A: %v", i, err)
		}
		ended += n
		a = append(a, r)
	}
	if ended != 5 {
		t.Errorf("%d sign-ins with a limit of %d reported %d sessions ended, want 5", perToken+5, perToken, ended)
	}
	if !live(t, s, b)[0] {
		t.Fatal("token A signing in past its limit ended token B's session")
	}
	for i, ok := range live(t, s, a...) {
		if want := i >= 5; ok != want {
			t.Errorf("token A's session %d (used %d min after t0) live = %v, want %v: the %d used most recently stay", i+1, i+1, ok, want, perToken)
		}
	}
	// The least recently used goes, not the first created: touch the
	// oldest remaining one and sign in again.
	if err := s.TouchSession(ctx, a[5].Hash, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CreateSession(ctx, session("tok-a", 50), lim); err != nil || n != 1 {
		t.Fatalf("one more sign-in at the limit: ended %d, %v; want 1, nil", n, err)
	}
	if got := live(t, s, a[5], a[6]); !got[0] || got[1] {
		t.Errorf("after touching session 6, live (6, 7) = %v, want session 7 (now least recently used) ended", got)
	}
}

// testSessionTotalLimit: at the total limit a new sign-in is refused with
// ErrSessionLimit and ends nobody's session; a token at its own limit still
// signs in (it makes its own room), and once sessions end there is room again.
func testSessionTotalLimit(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	lim := store.SessionLimits{PerToken: 2, Total: 5}
	var all []store.SessionRecord
	for _, tok := range []string{"tok-a", "tok-b"} {
		for i := range 2 {
			r := session(tok, i)
			if _, err := s.CreateSession(ctx, r, lim); err != nil {
				t.Fatal(err)
			}
			all = append(all, r)
		}
	}
	c := session("tok-c", 0)
	if _, err := s.CreateSession(ctx, c, lim); err != nil {
		t.Fatal(err)
	}
	all = append(all, c)
	d := session("tok-d", 0)
	if n, err := s.CreateSession(ctx, d, lim); !errors.Is(err, store.ErrSessionLimit) || n != 0 {
		t.Fatalf("a sign-in past the total limit: ended %d, %v; want 0, ErrSessionLimit", n, err)
	}
	if live(t, s, d)[0] {
		t.Error("the refused session was stored")
	}
	for i, ok := range live(t, s, all...) {
		if !ok {
			t.Errorf("a refused sign-in ended session %s", all[i].Hash)
		}
	}
	// Token C has room of its own (limit 2) but the store has none: refused.
	if _, err := s.CreateSession(ctx, session("tok-c", 1), lim); !errors.Is(err, store.ErrSessionLimit) {
		t.Fatalf("token C's second session at the total limit: %v, want ErrSessionLimit", err)
	}
	// Token A at its own limit replaces its least recently used session.
	a2 := session("tok-a", 2)
	if n, err := s.CreateSession(ctx, a2, lim); err != nil || n != 1 {
		t.Fatalf("token A at both limits: ended %d, %v; want 1, nil", n, err)
	}
	if got := live(t, s, all[0], a2); got[0] || !got[1] {
		t.Errorf("token A at both limits: live (oldest, new) = %v, want [false true]", got)
	}
	if err := s.DeleteSession(ctx, c.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSession(ctx, d, lim); err != nil {
		t.Fatalf("after a sign-out made room: %v", err)
	}
}

// SessionLimitsHoldConcurrently signs in many times at once through a and b
// (two replicas on one database, or the same store twice) and checks that
// neither limit was passed: the check and the ending must be atomic in the
// store, not decided from a count read before another sign-in's write.
func SessionLimitsHoldConcurrently(t *testing.T, a, b store.Sessions) {
	ctx := context.Background()
	const perToken, total, n = 3, 8, 24
	lim := store.SessionLimits{PerToken: perToken, Total: total}
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	one, many := make([]store.SessionRecord, n), make([]store.SessionRecord, n)
	for i := range n {
		one[i], many[i] = session("tok-one", i), session(fmt.Sprintf("tok-many-%d", i), 0)
		via := []store.Sessions{a, b}[i%2]
		wg.Add(2)
		go func() { defer wg.Done(); _, errs[i] = via.CreateSession(ctx, one[i], lim) }()
		go func() { defer wg.Done(); _, errs[n+i] = via.CreateSession(ctx, many[i], lim) }()
	}
	wg.Wait()
	refused := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, store.ErrSessionLimit):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	count := func(rs []store.SessionRecord) (k int) {
		for _, ok := range live(t, a, rs...) {
			if ok {
				k++
			}
		}
		return k
	}
	if k := count(one); k > perToken {
		t.Errorf("one token signing in %d times at once kept %d sessions, more than its limit of %d", n, k, perToken)
	}
	if k := count(one) + count(many); k > total {
		t.Errorf("%d sign-ins at once kept %d sessions, more than the total limit of %d", 2*n, k, total)
	} else if k < total {
		t.Errorf("%d sign-ins at once kept %d sessions, want the store full (%d); %d refused", 2*n, k, total, refused)
	}
}

func testSessionLimitsConcurrently(t *testing.T, open Opener) {
	s := open(t, t.TempDir())
	defer s.Close()
	SessionLimitsHoldConcurrently(t, s, s)
}

// testSessionsEndWithTheirToken: deleting (revoking, or replacing) a token ends
// the sessions signed in with it at once, so they stop counting against the
// limits, and only those: a token whose id merely starts with the same
// characters keeps its sessions.
func testSessionsEndWithTheirToken(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	for _, id := range []string{"tok1", "tok10"} {
		if err := s.CreateAPIToken(ctx, auth.APIToken{ID: id, Name: id, Role: auth.RoleViewer, Hash: auth.Hash("secret-" + id)}); err != nil {
			t.Fatal(err)
		}
	}
	lim := store.SessionLimits{PerToken: 5, Total: 3}
	mine := []store.SessionRecord{session("tok1/print-a", 0), session("tok1/print-b", 1)}
	other := session("tok10/print-c", 2)
	for _, r := range append(mine, other) {
		if _, err := s.CreateSession(ctx, r, lim); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteAPIToken(ctx, "tok1"); err != nil {
		t.Fatal(err)
	}
	if got := live(t, s, mine...); got[0] || got[1] {
		t.Errorf("sessions of a deleted token live = %v, want both ended", got)
	}
	if !live(t, s, other)[0] {
		t.Error("deleting token tok1 ended a session of token tok10")
	}
	// The room they held is free for other sign-ins at once.
	for i := range 2 {
		if _, err := s.CreateSession(ctx, session("tok10/print-d", 10+i), lim); err != nil {
			t.Fatalf("sign-in %d after the deleted token's sessions ended: %v", i+1, err)
		}
	}
	if err := s.DeleteAPIToken(ctx, "tok1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a token twice: %v, want ErrNotFound", err)
	}
}
