package duckdb_test

import (
	"context"
	"testing"

	"github.com/periscope-dev/periscope/internal/store/duckdb"
	"github.com/periscope-dev/periscope/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) storetest.Backend {
		s, err := duckdb.Open(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
