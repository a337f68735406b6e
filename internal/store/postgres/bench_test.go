package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/postgres"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// BenchmarkUpdateDeployments times one check-in flush (UpdateDeployments of
// every deployment, as the registry writes them) over fleets of several
// sizes; ns/op is one flush.
func BenchmarkUpdateDeployments(b *testing.B) {
	benchFlush(b, (*postgres.Store).UpdateDeployments)
}

// BenchmarkUpdateCheckins times the flush the registry writes
// (UpdateCheckins: the columns a check-in owns, COPY then one UPDATE … FROM)
// over the same fleets; ns/op is one flush.
func BenchmarkUpdateCheckins(b *testing.B) {
	benchFlush(b, (*postgres.Store).UpdateCheckins)
}

func benchFlush(b *testing.B, flush func(*postgres.Store, context.Context, []store.DeploymentRecord) error) {
	ctx := context.Background()
	url := testenv.PostgresDatabase(b)
	for i, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, err := postgres.Open(ctx, url)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			recs := make([]store.DeploymentRecord, n)
			for j := range recs {
				id := fmt.Sprintf("b%d-dep-%06d", i, j)
				recs[j] = store.DeploymentRecord{TokenHash: auth.Hash("tok-" + id), Deployment: fleet.Deployment{ID: id, Customer: "acme", Stack: "app",
					Labels: map[string]string{"tier": "gold"}, CreatedAt: t0, Mode: fleet.ModePush, Connected: true, RunningRelease: "1.8.0"}}
			}
			if err := s.CreateDeployments(ctx, recs); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			round := 0
			for b.Loop() {
				round++
				for j := range recs {
					recs[j].Deployment.LastCheckin = t0.Add(time.Duration(round) * time.Second)
				}
				if err := flush(s, ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFleetChangesSince times one replica's sync read over a fleet of
// 100,000 deployments of which 1,000 checked in since its last read (a
// heartbeat of 30 s at a one-second sync, per replica of three); ns/op is one
// read.
func BenchmarkFleetChangesSince(b *testing.B) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, testenv.PostgresDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := make([]store.DeploymentRecord, 100_000)
	for j := range recs {
		id := fmt.Sprintf("dep-%06d", j)
		recs[j] = store.DeploymentRecord{TokenHash: auth.Hash("tok-" + id), Deployment: fleet.Deployment{ID: id, Customer: "acme", Stack: "app",
			Labels: map[string]string{"tier": "gold"}, CreatedAt: t0, Mode: fleet.ModePush, Connected: true, RunningRelease: "1.8.0"}}
	}
	if err := s.CreateDeployments(ctx, recs); err != nil {
		b.Fatal(err)
	}
	all, err := s.FleetChangesSince(ctx, 0)
	if err != nil {
		b.Fatal(err)
	}
	pos, round := all.Next, 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		round++
		batch := recs[(round*1000)%len(recs):][:1000]
		for j := range batch {
			batch[j].Deployment.LastCheckin = t0.Add(time.Duration(round) * time.Second)
		}
		if err := s.UpdateCheckins(ctx, batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		ch, err := s.FleetChangesSince(ctx, pos)
		if err != nil {
			b.Fatal(err)
		}
		if len(ch.Deployments) != len(batch) {
			b.Fatalf("read %d changed deployments, want %d", len(ch.Deployments), len(batch))
		}
		pos = ch.Next
	}
}
