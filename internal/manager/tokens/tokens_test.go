package tokens_test

import (
	"context"
	"errors"
	"strings"
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
