package pgtel

import (
	"context"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func open(t testing.TB, url string, set Settings) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, set)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the telemetry stores' shared suite on PostgreSQL.
func TestConformance(t *testing.T) {
	telstoretest.Run(t, func(t *testing.T, o telstoretest.Options) telstoretest.Store {
		return open(t, testenv.PostgresDatabase(t), Settings{Clock: o.Clock, MaxAge: o.MaxAge})
	})
}
