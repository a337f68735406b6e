package demo

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
)

// TestFreePortMovesOnWhenTaken takes a port and checks the demo picks the
// next free one and says it moved, and keeps a free one as it is.
func TestFreePortMovesOnWhenTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	got, moved, err := freePort(taken)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(got)
	_, was, _ := net.SplitHostPort(taken)
	p, _ := strconv.Atoi(port)
	w, _ := strconv.Atoi(was)
	if !moved || p <= w || p > w+maxPortTries {
		t.Errorf("freePort(%s) = %s, moved %v; want a later port, moved", taken, got, moved)
	}
	if again, moved, err := freePort(got); err != nil || moved || again != got {
		t.Errorf("freePort(%s) = %s, %v, %v; want it unchanged", got, again, moved, err)
	}
	if _, _, err := freePort("no-port"); err == nil {
		t.Error("freePort accepted an address without a port")
	}
}

// TestFleetSize checks --deployments: the named dozen, generated ones up to
// the size asked for with unique ids and every wave represented, and sizes
// out of range refused.
func TestFleetSize(t *testing.T) {
	specs, err := fleetOf(1000, Scenarios[0])
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	rings := map[string]int{}
	pulls := 0
	for _, s := range specs {
		if ids[s.id] {
			t.Errorf("%s appears twice", s.id)
		}
		ids[s.id] = true
		rings[s.ring]++
		if s.transport == "http" {
			pulls++
		}
	}
	if len(specs) != 1000 || rings[ringCanary] == 0 || rings[ringEarly] == 0 || rings[""] == 0 || pulls < 400 || pulls > 600 {
		t.Errorf("%d deployments, by ring %v, %d polling; want 1000 in every ring, about half polling", len(specs), rings, pulls)
	}
	for _, n := range []int{len(fleetSpec) - 1, MaxDeployments + 1} {
		if _, err := fleetOf(n, Scenarios[0]); err == nil {
			t.Errorf("fleetOf(%d) accepted", n)
		}
	}
	if _, err := scenarioNamed("nosuch"); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}

// TestDemoKeepsItsData runs the demo twice on one --data-dir: the second run
// comes back with the same fleet (its agents' tokens and releases kept), and
// the directory stays after the demo stops.
func TestDemoKeepsItsData(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	first := startDemo(t, ctx, Options{DataDir: dir, Speed: 10})
	first.stop(t)
	second := startDemo(t, ctx, Options{DataDir: dir, Speed: 10})
	api := apiclient.New(second.url, second.token)
	ds, err := api.Deployments(ctx, apiclient.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(fleetSpec) {
		t.Errorf("the second run has %d deployments, want the first run's %d", len(ds), len(fleetSpec))
	}
	d, err := api.Deployment(ctx, pinnedOn)
	if err != nil || !d.Pinned || d.Release != Oldest {
		t.Errorf("%s = %+v, %v; want still pinned on %s", pinnedOn, d, err, Oldest)
	}
	second.stop(t)
	if _, err := os.Stat(filepath.Join(dir, tokensFile)); err != nil {
		t.Errorf("the kept data directory lost the fleet: %v", err)
	}
}
