package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/postgres"
	"github.com/periscope-dev/periscope/internal/store/storetest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// schemas hands out one schema of a scratch database per directory the
// conformance suite opens, so that reopening a directory reopens its data.
type schemas struct {
	url string
	mu  sync.Mutex
	of  map[string]string
}

func newSchemas(t *testing.T) *schemas {
	return &schemas{url: testenv.PostgresDatabase(t), of: map[string]string{}}
}

// urlFor returns the URL of dir's schema, creating the schema the first time.
func (s *schemas) urlFor(t *testing.T, dir string) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.of[dir]
	if !ok {
		name = fmt.Sprintf("s%d", len(s.of)+1)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, s.url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
			t.Fatal(err)
		}
		s.of[dir] = name
	}
	return s.url + "?search_path=" + name
}

func TestConformance(t *testing.T) {
	sc := newSchemas(t)
	storetest.Run(t, func(t *testing.T, dir string) storetest.Backend {
		s, err := postgres.Open(context.Background(), sc.urlFor(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestReadOnlyServerMakesWritesUnavailable opens the store on connections a
// read-only server gives (as a standby does during a failover): a write is
// store.ErrUnavailable with a reason an operator can act on, /readyz's
// Writable says the same, and nothing was written.
func TestReadOnlyServerMakesWritesUnavailable(t *testing.T) {
	ctx := context.Background()
	url := newSchemas(t).urlFor(t, t.Name())
	rw, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	ro, err := postgres.Open(ctx, url+"&default_transaction_read_only=on")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Writable(ctx); err != nil {
		t.Fatalf("Writable before any write = %v, want nil", err)
	}
	tok := auth.APIToken{ID: "t1", Name: "ci", Role: auth.RoleViewer, Hash: auth.Hash("x")}
	err = ro.CreateAPIToken(ctx, tok)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("a write to a read-only server: %v, want ErrUnavailable saying it is read-only", err)
	}
	if err := ro.Writable(ctx); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Writable after a refused write = %v, want ErrUnavailable saying it is read-only", err)
	}
	if ts, err := rw.ListAPITokens(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("tokens after the refused write: %v, %v; want none", ts, err)
	}
	if err := rw.Writable(ctx); err != nil {
		t.Fatalf("a writable replica's Writable = %v", err)
	}
}

// TestSessionLimitsHoldAcrossReplicas: two managers on one database sign in
// at once, and neither the per-token nor the total session limit is passed.
func TestSessionLimitsHoldAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	url := newSchemas(t).urlFor(t, t.Name())
	var replicas [2]*postgres.Store
	for i := range replicas {
		s, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		replicas[i] = s
	}
	storetest.SessionLimitsHoldConcurrently(t, replicas[0], replicas[1])
}
