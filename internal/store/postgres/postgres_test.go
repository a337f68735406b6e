package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

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
