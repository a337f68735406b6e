package telstore

import (
	"context"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// TestHistogramsOfAnEarlierVersionStillRead: a histogram point stored before
// buckets were (schema version 3) answers its count and sum, and points after
// the upgrade answer their buckets too.
func TestHistogramsOfAnEarlierVersionStillRead(t *testing.T) {
	dir := t.TempDir()
	buildVersion(t, dir, 3)
	s := open(t, dir, Settings{Clock: clock.NewFake(t0.Add(5 * time.Minute))})
	m, err := s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Series) != 1 || m.Series[0].Count != 50 || m.Series[0].Histogram != nil {
		t.Fatalf("old histogram: %+v", m.Series)
	}
	consume(t, s, durationRound(t, t0.Add(4*time.Minute), buckets15(6, 60), "http.route", "periscope.ingress.name", "periscope.http.status_class"))
	if m, err = s.Runtime(context.Background(), telquery.RuntimeQuery{Deployment: "acme-prod"}); err != nil {
		t.Fatal(err)
	}
	if len(m.Series) != 2 {
		t.Fatalf("series after the upgrade: %+v", m.Series)
	}
	var withBuckets int
	for _, d := range m.Series {
		if d.Histogram != nil && d.Histogram.Total() == 60 {
			withBuckets++
		}
	}
	if withBuckets != 1 {
		t.Errorf("series after the upgrade: %+v", m.Series)
	}
}
