package telstore

import (
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// TestConformance runs the telemetry stores' shared suite on DuckDB.
func TestConformance(t *testing.T) {
	telstoretest.Run(t, func(t *testing.T, o telstoretest.Options) telstoretest.Store {
		return open(t, t.TempDir(), Settings{Clock: o.Clock, MaxAge: o.MaxAge, Writers: 2})
	})
}

// The suite's builders, under the names this package's own tests use.
type (
	dep      = telstoretest.Dep
	logSpec  = telstoretest.LogSpec
	spanSpec = telstoretest.SpanSpec
)

var (
	t0            = telstoretest.T0
	acmeOld       = telstoretest.AcmeOld
	acmeNew       = telstoretest.AcmeNew
	logBatch      = telstoretest.LogBatch
	spanBatch     = telstoretest.SpanBatch
	tagResource   = telstoretest.TagResource
	durationRound = telstoretest.DurationRound
	buckets15     = telstoretest.Buckets15
)

func consume(t testing.TB, s *Store, bs ...consumer.Batch) { telstoretest.Consume(t, s, bs...) }

func sendReleases(t *testing.T, s *Store) { telstoretest.SendReleases(t, s) }
