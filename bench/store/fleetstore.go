package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/periscope-dev/periscope/bench/internal/pgscratch"
	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/auth"
	fl "github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
	"github.com/periscope-dev/periscope/internal/store/postgres"
)

// fleetStore is what the fleet phase uses of a fleet store, and closing it.
type fleetStore interface {
	store.Fleet
	Close() error
}

// benchFleetStores times the fleet store's writes and reads as the registry
// makes them, with c.fleet deployments: on the embedded store in dir, and on
// a throwaway PostgreSQL database when c.storage names a server.
func benchFleetStores(ctx context.Context, c config, dir string) error {
	fmt.Printf("fleet store: %d deployments; load average %s\n", c.fleet, procstat.LoadAvg())
	emb, err := duckdb.Open(ctx, filepath.Join(dir, "fleet"))
	if err != nil {
		return fmt.Errorf("open the embedded fleet store: %w", err)
	}
	err = benchFleetStore(ctx, "embedded DuckDB", emb, c.fleet)
	emb.Close()
	if err != nil || c.storage == "" {
		return err
	}
	url, drop, err := pgscratch.Create(ctx, c.storage, "store")
	if err != nil {
		return err
	}
	defer func() {
		if err := drop(); err != nil {
			fmt.Println("  ", err)
		}
	}()
	pg, err := postgres.Open(ctx, url)
	if err != nil {
		return fmt.Errorf("open the PostgreSQL fleet store: %w", err)
	}
	defer pg.Close()
	err = benchFleetStore(ctx, "PostgreSQL", pg, c.fleet)
	fmt.Printf("load average after the fleet store phases: %s\n\n", procstat.LoadAvg())
	return err
}

func benchFleetStore(ctx context.Context, name string, st fleetStore, n int) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	recs := make([]store.DeploymentRecord, n)
	for i := range recs {
		id := fmt.Sprintf("d-%06d", i)
		recs[i] = store.DeploymentRecord{TokenHash: auth.Hash("tok-" + id), LastStatus: fl.StatusPending, Deployment: fl.Deployment{
			ID: id, Name: id, Customer: fmt.Sprintf("customer-%d", i%500), Stack: "shop", Cloud: "aws", Region: "eu-west-1",
			Labels: map[string]string{"tier": "gold"}, CreatedAt: now}}
	}
	if err := st.CreateRelease(ctx, fl.Release{Stack: "shop", Version: "1.0", CreatedAt: now}); err != nil {
		return err
	}
	fmt.Printf("  %s:\n", name)
	row := func(what string, d time.Duration, rows int) {
		fmt.Printf("    %-66s %9.1f ms  (%.0f rows/s)\n", what, msOf(d), float64(rows)/d.Seconds())
	}
	t := time.Now()
	for from := 0; from < n; from += 10_000 {
		if err := st.CreateDeployments(ctx, recs[from:min(n, from+10_000)]); err != nil {
			return fmt.Errorf("create deployments: %w", err)
		}
	}
	row(fmt.Sprintf("register %d deployments, 10,000 per call", n), time.Since(t), n)

	// The first check-in of each: description, health, release, connected.
	for i := range recs {
		d := &recs[i].Deployment
		d.Mode, d.Connected, d.AcceptsReleases = fl.ModePush, true, true
		d.RunningRelease, d.ReleaseSince, d.AgentVersion = "1.0", now, "periscope-agent/bench"
		d.Health = fl.Health{Reported: true, Healthy: true, Status: "running"}
		d.LastCheckin = now
		recs[i].LastStatus = fl.StatusHealthy
	}
	// The registry's flush: the columns a check-in owns (UpdateCheckins).
	t = time.Now()
	if err := st.UpdateCheckins(ctx, recs); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	row("flush every deployment (the first check-ins)", time.Since(t), n)

	// One flush interval (1 s) of heartbeats at a 30 s heartbeat, ten times,
	// each read back as another replica's sync reads it (FleetChangesSince).
	all, err := st.FleetChangesSince(ctx, 0)
	if err != nil {
		return fmt.Errorf("read the fleet: %w", err)
	}
	pos := all.Next
	per := max(1, n/30)
	var flushes, syncs []time.Duration
	for k := range 10 {
		batch := recs[(k*per)%n : min(n, (k*per)%n+per)]
		for i := range batch {
			batch[i].Deployment.LastCheckin = now.Add(time.Duration(k+1) * time.Second)
		}
		t = time.Now()
		if err := st.UpdateCheckins(ctx, batch); err != nil {
			return fmt.Errorf("flush heartbeats: %w", err)
		}
		flushes = append(flushes, time.Since(t))
		t = time.Now()
		ch, err := st.FleetChangesSince(ctx, pos)
		if err != nil {
			return fmt.Errorf("read changes: %w", err)
		}
		syncs = append(syncs, time.Since(t))
		pos = ch.Next
	}
	slices.Sort(flushes)
	slices.Sort(syncs)
	fmt.Printf("    %-66s %9.1f ms p50, %.1f ms max\n", fmt.Sprintf("flush one second of heartbeats (%d rows), 10 times", per), msOf(flushes[len(flushes)/2]), msOf(flushes[len(flushes)-1]))
	fmt.Printf("    %-66s %9.1f ms p50, %.1f ms max\n", "read them back as another replica (FleetChangesSince)", msOf(syncs[len(syncs)/2]), msOf(syncs[len(syncs)-1]))

	t = time.Now()
	loaded, err := st.ListDeployments(ctx)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if len(loaded) != n {
		return fmt.Errorf("loaded %d deployments of %d", len(loaded), n)
	}
	row("load the fleet (the registry's start)", time.Since(t), n)

	changes := make([]fl.PinChange, n)
	for i := range recs {
		recs[i].Deployment.Pin = &fl.Pin{Release: "1.0", By: "bench", Reason: "bench", At: now}
		changes[i] = fl.PinChange{ChangeID: "chg-bench", At: now, By: "bench", ByRole: "operator", Reason: "bench", Action: fl.ActionPin,
			DeploymentID: recs[i].Deployment.ID, From: "1.0", To: "1.0", Running: "1.0"}
	}
	t = time.Now()
	if err := st.ApplyPins(ctx, recs, changes); err != nil {
		return fmt.Errorf("pin: %w", err)
	}
	row("pin every deployment with its audit entry, one transaction", time.Since(t), n)
	return nil
}
