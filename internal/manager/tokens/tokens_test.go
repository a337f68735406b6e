package tokens_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/tokens"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// brokenAudit is a real store whose audit log refuses every write.
type brokenAudit struct{ *duckdb.Store }

func (brokenAudit) AppendAudit(context.Context, []store.AuditEntry) error {
	return errors.New("audit log unwritable")
}

// Creating and revoking tokens is audited with who did it and in what role,
// never with the secret; a token whose creation cannot be audited does not
// exist afterwards, and a revocation that cannot be audited still revokes.
func TestTokenChangesAreAudited(t *testing.T) {
	ctx := context.Background()
	st, err := duckdb.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := clock.NewFake(time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC))
	k := tokens.New(st, nil, clk)
	admin := auth.APIToken{Name: "root", Role: auth.RoleAdmin}
	secret, tok, err := k.Create(ctx, admin, "ci", auth.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := k.Delete(ctx, admin, tok.ID); err != nil {
		t.Fatal(err)
	}
	got, _, err := st.ListAudit(ctx, store.AuditFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Action != store.ActionTokenRevoke || got[1].Action != store.ActionTokenCreate {
		t.Fatalf("audit log %+v, want the creation and then the revocation", got)
	}
	for _, e := range got {
		if e.Actor != "root" || e.ActorRole != "admin" || e.Target != "ci" || e.Outcome != store.OutcomeSucceeded {
			t.Errorf("entry %+v: want root the admin acting on token ci", e)
		}
		if e.Detail != `{"token_id":"`+tok.ID+`","role":"operator"}` {
			t.Errorf("entry detail %s, want the token's id and role", e.Detail)
		}
		if all := e.Actor + e.Target + e.Reason + e.Detail; strings.Contains(all, secret) || strings.Contains(all, tok.Hash) {
			t.Errorf("entry %+v holds the token's secret or hash", e)
		}
	}

	broken := tokens.New(brokenAudit{st}, nil, clk)
	if _, _, err := broken.Create(ctx, admin, "ghost", auth.RoleViewer); err == nil {
		t.Fatal("a token was created though its audit entry could not be written")
	}
	all, err := st.ListAPITokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, stored := range all {
		if stored.Name == "ghost" {
			t.Errorf("the unaudited token %s is still stored", stored.ID)
		}
	}
	if err := broken.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, keep, err := k.Create(ctx, admin, "kept", auth.RoleViewer); err != nil {
		t.Fatal(err)
	} else {
		if err := broken.Load(ctx); err != nil {
			t.Fatal(err)
		}
		if err := broken.Delete(ctx, admin, keep.ID); err == nil {
			t.Error("a revocation whose audit entry failed reported no error")
		}
		if _, ok := broken.Token(keep.ID); ok {
			t.Error("the token stayed valid though its audit entry failed")
		}
	}
}

// slowList is the real store whose token listing, once held, waits until
// released, as a replica's periodic reload can while an operator revokes a
// token.
type slowList struct {
	*duckdb.Store
	hold    *atomic.Bool
	listed  chan struct{}
	release chan struct{}
}

func (s slowList) ListAPITokens(ctx context.Context) ([]auth.APIToken, error) {
	ts, err := s.Store.ListAPITokens(ctx)
	if s.hold.Load() {
		close(s.listed)
		<-s.release
	}
	return ts, err
}

// A reload that read the tokens before a revocation must not bring the
// revoked token back: the API has already told the operator it is gone.
func TestReloadDoesNotUndoARevocation(t *testing.T) {
	ctx := context.Background()
	st, err := duckdb.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	slow := slowList{Store: st, hold: new(atomic.Bool), listed: make(chan struct{}), release: make(chan struct{})}
	k := tokens.New(slow, nil, nil)
	secret, tok, err := k.Create(ctx, auth.APIToken{}, "leaked", auth.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	slow.hold.Store(true)
	done := make(chan error)
	go func() { done <- k.Load(ctx) }()
	<-slow.listed // the reload holds a list that still has the token
	if err := k.Delete(ctx, auth.APIToken{}, tok.ID); err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, ok := k.Lookup(secret); ok {
		t.Fatalf("the revoked token %s is accepted again after a reload: %+v", tok.ID, got)
	}
}
