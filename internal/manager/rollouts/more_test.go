package rollouts

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAFailedUpdateWithinItsGateDoesNotHoldTheBake(t *testing.T) {
	plan := rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{{Name: "all", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(time.Hour),
		Gates: &rolloutplan.Gates{FailedUpdates: &rolloutplan.Threshold{Max: ptr(1)}}}}}
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{plan}}, newFleet(member("a", "acme", "main"), member("b", "acme", "main")), newMemStore(), clk)
	s := start(t, r, "2.0.0")
	r.fleet.update("2.0.0", "a")
	r.fleet.set("b", func(m *Member) { m.Update = fleet.UpdateState{Phase: fleet.UpdateFailed, Release: "2.0.0"} })
	r.step(t)
	if w := r.state(t, s.ID).Waves[0]; !w.BakeStart.Equal(t0) {
		t.Fatalf("bake start %s; a failed update counted by its gate must not hold the bake", w.BakeStart)
	}
	clk.Advance(time.Hour)
	r.step(t)
	if st := r.state(t, s.ID); st.Phase != PhaseCompleted {
		t.Errorf("after the bake: %s", st.Phase)
	}
}

func TestAnEmptyWavePassesAtOnce(t *testing.T) {
	plan := threeWaves()
	plan.Waves[0].Select = rolloutplan.Selection{Labels: map[string]string{"ring": "nobody"}}
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{plan}}, sixDeployments(), newMemStore(), clk)
	s := start(t, r, "2.0.0")
	st := r.state(t, s.ID)
	if st.Wave != 1 || st.Waves[0].Figures.Size != 0 || st.Waves[0].PassedAt.IsZero() {
		t.Fatalf("an empty first wave: wave %d %+v", st.Wave, st.Waves[0])
	}
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d3", "d4"}}) {
		t.Errorf("announced %v; acme's wave should open at once", got)
	}
}

func TestPercentWavesAreStableAndNewcomersJoinAWaveStillToOpen(t *testing.T) {
	plan := rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "tenth", Select: rolloutplan.Selection{Percent: 10}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "half", Select: rolloutplan.Selection{Percent: 50}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "rest", Select: rolloutplan.Selection{Rest: true}},
	}}
	var ms []Member
	for i := range 1000 {
		ms = append(ms, member(fmtID(i), "c", "main"))
	}
	f := newFleet(ms...)
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{plan}}, f, newMemStore(), clk)
	s := start(t, r, "2.0.0")
	first := r.state(t, s.ID).Waves[0].Members
	if n := len(first); n < 70 || n > 130 {
		t.Fatalf("10%% of 1,000 took %d", n)
	}
	// Every Decide agrees with the frozen wave, and is the same on a second ask.
	for i := range 1000 {
		id := fmtID(i)
		_, in := first[id]
		if d := r.decide(id); (d.Release == "2.0.0") != in || r.decide(id) != d {
			t.Fatalf("%s: in the wave %v, decided %+v", id, in, d)
		}
	}
	// A deployment registered now that the tenth's wave is open waits for a
	// later wave, and the tenth's members do not change.
	f.mu.Lock()
	nm := member("zz-new", "c", "main")
	f.deps[nm.ID] = &nm
	f.mu.Unlock()
	r.step(t)
	if d := r.decide("zz-new"); d.Release != "1.0.0" || d.Behind != BehindWaitingForWave || (d.Wave != "half" && d.Wave != "rest") {
		t.Errorf("a newcomer: %+v", d)
	}
	if got := r.state(t, s.ID).Waves[0].Members; !reflect.DeepEqual(got, first) {
		t.Error("the open wave's members changed when the fleet grew")
	}
}

func fmtID(i int) string { return fmt.Sprintf("dep-%04d", i) }

func TestUpdateWindowsHoldOffersUnlessUrgent(t *testing.T) {
	sat, err := rolloutplan.ParseWindow("Sat 02:00-06:00 Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}, Windows: rolloutplan.WindowSet{Customers: map[string]rolloutplan.Windows{"initech": {sat}}}}
	clk := clock.NewFake(t0) // Monday noon
	r := newRig(t, cfg, sixDeployments(), newMemStore(), clk)
	s := start(t, r, "2.0.0")
	r.ann.take()
	// d1 (initech) is in the open canary wave but outside its window: held
	// until Saturday 02:00 Berlin (01:00Z); d2 goes now.
	saturday := time.Date(2026, 12, 12, 1, 0, 0, 0, time.UTC)
	if d := r.decide("d1"); d.Release != "2.0.0" || !d.Hold || d.Behind != BehindOutsideWindow || !d.Expected.Equal(saturday) {
		t.Fatalf("d1 outside its window: %+v", d)
	}
	if d := r.decide("d2"); d.Hold || d.Behind != "" {
		t.Errorf("d2 without windows: %+v", d)
	}
	r.fleet.update("2.0.0", "d2")
	r.step(t)
	if w := r.state(t, s.ID).Waves[0]; !w.BakeStart.IsZero() {
		t.Fatal("baking before d1 could update")
	}
	// The window opens: d1 is announced so its offer goes out.
	clk.Set(saturday.Add(time.Minute))
	r.step(t)
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d1"}}) {
		t.Fatalf("announced %v at the window's start, want d1", got)
	}
	if d := r.decide("d1"); d.Hold || d.Release != "2.0.0" {
		t.Errorf("d1 inside its window: %+v", d)
	}

	// An urgent release ignores the window, and the audit log says so.
	clk.Set(time.Date(2026, 12, 14, 12, 0, 0, 0, time.UTC))
	u, err := r.e.StartRollout(context.Background(), StartRequest{Stack: "shop", Release: "2.0.1", Baseline: "1.0.0", Urgent: true,
		Actor: Actor{Name: "ops", Role: "admin", Reason: "CVE-2026-1234"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.decide("d1"); d.Release != "2.0.1" || d.Hold || d.Rollout != u.ID {
		t.Errorf("d1 under an urgent rollout: %+v", d)
	}
	ms := r.st.(*memStore)
	ms.mu.Lock()
	var urgent bool
	for _, e := range ms.audit {
		if e.Action == "rollout.start" && e.Target == "2.0.1" && e.Reason == "CVE-2026-1234" && e.Actor == "ops" &&
			strings.Contains(e.Detail, `"ignores_update_windows":true`) {
			urgent = true
		}
	}
	ms.mu.Unlock()
	if !urgent {
		t.Error("the urgent start is not audited as ignoring update windows")
	}
	if _, err := r.e.StartRollout(context.Background(), StartRequest{Stack: "shop", Release: "2.0.2", Urgent: true}); err == nil {
		t.Error("an urgent rollout without a reason was accepted")
	}
}

// TestARestartMidBakeResumesWhereItWas runs the engine over the DuckDB store,
// closes both in the middle of the canary bake, and opens new ones: the bake
// keeps its start, so the next wave opens when it would have.
func TestARestartMidBakeResumesWhereItWas(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := duckdb.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(t0)
	f := sixDeployments()
	cfg := rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}
	r := newRig(t, cfg, f, st, clk)
	s := start(t, r, "2.0.0")
	clk.Advance(5 * time.Minute)
	f.update("2.0.0", "d1", "d2")
	r.step(t)
	bakeStart := clk.Now()
	clk.Advance(20 * time.Minute)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = duckdb.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r = newRig(t, cfg, f, st, clk)
	got := r.state(t, s.ID)
	if got.Phase != PhaseRunning || got.Wave != 0 || !got.Waves[0].BakeStart.Equal(bakeStart) {
		t.Fatalf("after the restart: %s wave %d bake start %s, want %s", got.Phase, got.Wave, got.Waves[0].BakeStart, bakeStart)
	}
	if d := r.decide("d3"); d.Behind != BehindWaitingForWave || !d.Expected.Equal(bakeStart.Add(30*time.Minute)) {
		t.Errorf("acme after the restart: %+v", d)
	}
	clk.Set(bakeStart.Add(30*time.Minute - time.Second))
	r.step(t)
	if got := r.state(t, s.ID); got.Wave != 0 {
		t.Fatal("the restart shortened the bake")
	}
	clk.Set(bakeStart.Add(30 * time.Minute))
	r.step(t)
	if got := r.state(t, s.ID); got.Wave != 1 || got.Waves[1].OpenedAt.IsZero() {
		t.Fatalf("the bake did not end when it would have without the restart: wave %d", got.Wave)
	}
	if d := r.decide("d3"); d.Release != "2.0.0" {
		t.Errorf("acme's d3 once its wave opened: %+v", d)
	}
}

// TestTwoEnginesOnOneStoreMoveARolloutOnce is two manager replicas stepping
// the same rollout: the second write over the same version is refused, and
// its engine reloads the first one's state and steps from there instead of
// undoing it or failing the round.
func TestTwoEnginesOnOneStoreMoveARolloutOnce(t *testing.T) {
	st := newMemStore()
	clk := clock.NewFake(t0)
	f := sixDeployments()
	cfg := rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}
	a := newRig(t, cfg, f, st, clk)
	s := start(t, a, "2.0.0")
	b := newRig(t, cfg, f, st, clk)
	f.update("2.0.0", "d1", "d2")
	a.step(t)
	first := a.state(t, s.ID).Waves[0].BakeStart
	clk.Advance(time.Minute)
	if err := b.e.Step(context.Background()); err != nil {
		t.Fatalf("the second replica's step, refused once as stale, failed: %v", err)
	}
	if got := b.state(t, s.ID); first.IsZero() || !got.Waves[0].BakeStart.Equal(first) {
		t.Errorf("the second replica's bake starts at %v, want the first one's %v (reloaded, not redone)", got.Waves[0].BakeStart, first)
	}
	clk.Advance(29 * time.Minute)
	b.step(t)
	if got := b.state(t, s.ID); got.Wave != 1 {
		t.Errorf("the second replica, reloaded, did not move the rollout: wave %d", got.Wave)
	}
}

func TestStartAndShutdown(t *testing.T) {
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, sixDeployments(), newMemStore(), clock.NewFake(t0))
	if err := r.e.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if err := r.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.e.Shutdown(context.Background()); err != nil {
		t.Errorf("a second Shutdown: %v", err)
	}
}

// TestDecideRunsBesideChanges asks Decide from another goroutine, as check-in
// does, while Step, an action and a new rollout change the state; run with
// -race it shows the two sides share nothing unguarded.
func TestDecideRunsBesideChanges(t *testing.T) {
	clk := clock.NewFake(t0)
	f := sixDeployments()
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, f, newMemStore(), clk)
	s := start(t, r, "2.0.0")
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, id := range []string{"d1", "d3", "d5"} {
				m := f.get(id)
				m.Latest = "2.0.0"
				if d := r.e.Decide(m, clk.Now()); d.Release == "" {
					t.Errorf("%s: no release", id)
				}
			}
		}
	}()
	f.update("2.0.0", "d1", "d2")
	for range 3 {
		clk.Advance(30 * time.Minute)
		r.step(t)
	}
	if _, err := r.e.Abort(context.Background(), s.ID, Actor{Name: "ops", Reason: "test"}); err != nil {
		t.Error(err)
	}
	start(t, r, "2.1.0")
	close(stop)
	<-done
}

// A stack without a plan takes each release at once, but still only inside
// its customers' update windows.
func TestWindowsHoldAStackWithoutAPlan(t *testing.T) {
	night, err := rolloutplan.ParseWindow("Daily 01:00-03:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rolloutplan.Config{Windows: rolloutplan.WindowSet{Deployments: map[string]rolloutplan.Windows{"d3": {night}}}}
	clk := clock.NewFake(t0) // noon
	r := newRig(t, cfg, sixDeployments(), newMemStore(), clk)
	if d := r.decideWith("d3", "2.0.0"); d.Release != "2.0.0" || !d.Hold || d.Behind != BehindOutsideWindow || !d.Expected.Equal(t0.Add(13*time.Hour)) {
		t.Fatalf("d3 at noon: %+v", d)
	}
	if d := r.decideWith("d4", "2.0.0"); d.Hold {
		t.Errorf("d4 has no window: %+v", d)
	}
	// The engine remembers what the window held only by stepping, as its
	// loop does: once at noon, once inside the window.
	r.fleet.set("d3", func(m *Member) { m.Latest = "2.0.0" })
	r.step(t)
	clk.Set(t0.Add(13*time.Hour + time.Minute))
	r.step(t)
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d3"}}) {
		t.Errorf("announced %v when d3's window opened", got)
	}
	if d := r.decideWith("d3", "2.0.0"); d.Hold {
		t.Errorf("d3 inside its window: %+v", d)
	}
}

// An urgent release of a stack without a plan ignores the update windows too:
// it goes everywhere at once as one wave, audited, and until it is in.
func TestUrgentReleaseOfAStackWithoutAPlanIgnoresWindows(t *testing.T) {
	night, err := rolloutplan.ParseWindow("Daily 01:00-03:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rolloutplan.Config{Windows: rolloutplan.WindowSet{Deployments: map[string]rolloutplan.Windows{"d3": {night}}}}
	clk := clock.NewFake(t0) // noon: d3's window is closed
	st := newMemStore()
	r := newRig(t, cfg, sixDeployments(), st, clk)
	for _, id := range []string{"d1", "d2", "d3", "d4", "d5", "d6"} {
		r.fleet.set(id, func(m *Member) { m.Latest = "2.0.1" })
	}
	if _, err := r.e.StartRollout(context.Background(), StartRequest{Stack: "shop", Release: "2.0.1", Baseline: "1.0.0"}); !errors.Is(err, ErrNoPlan) {
		t.Fatalf("a plain release of a stack without a plan: %v, want ErrNoPlan", err)
	}
	if d := r.decideWith("d3", "2.0.1"); !d.Hold {
		t.Fatalf("d3 outside its window before the urgent release: %+v", d)
	}
	if _, err := r.e.StartRollout(context.Background(), StartRequest{Stack: "shop", Release: "2.0.1", Urgent: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an urgent release without a reason: %v, want ErrInvalid", err)
	}
	u, err := r.e.StartRollout(context.Background(), StartRequest{Stack: "shop", Release: "2.0.1", Baseline: "1.0.0", Urgent: true,
		Actor: Actor{Name: "oncall", Role: "operator", Reason: "CVE-2026-1234"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.decideWith("d3", "2.0.1"); d.Hold || d.Release != "2.0.1" || d.Behind != "" {
		t.Errorf("d3 under the urgent release: %+v, want 2.0.1 at once", d)
	}
	if got := r.ann.take(); len(got) == 0 || !slices.Contains(got[0], "d3") {
		t.Errorf("announced %v; want d3's offer to go out at once", got)
	}
	if !slices.Contains(st.actions(), store.ActionRolloutStart) {
		t.Errorf("audit %v: want the urgent start", st.actions())
	}
	// Once every deployment runs it, the release is in and the rollout done.
	r.fleet.update("2.0.1", "d1", "d2", "d3", "d4", "d5", "d6")
	r.step(t)
	if s := r.state(t, u.ID); s.Phase != PhaseCompleted {
		t.Errorf("the urgent release is %s once everyone runs it, want completed", s.Phase)
	}
}

// Windows set through the API replace the file's for their owner, take effect
// at once (the deployments concerned are announced, held or released), are
// audited, survive a restart, and removing them brings the file's back.
func TestWindowsSetThroughTheAPI(t *testing.T) {
	night, err := rolloutplan.ParseWindow("Daily 01:00-03:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	noon, err := rolloutplan.ParseWindow("Daily 11:00-13:00 UTC")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rolloutplan.Config{Windows: rolloutplan.WindowSet{Customers: map[string]rolloutplan.Windows{"acme": {night}}}}
	clk := clock.NewFake(t0) // noon
	st := newMemStore()
	r := newRig(t, cfg, sixDeployments(), st, clk)
	ctx := context.Background()
	if d := r.decideWith("d3", "2.0.0"); !d.Hold {
		t.Fatalf("acme's d3 outside the file's night window: %+v", d)
	}
	op := Actor{Name: "oncall", Role: "operator", Reason: "acme asked for a lunch window"}
	if err := r.e.SetWindows(ctx, store.WindowsOfCustomer, "acme", rolloutplan.Windows{noon}, Actor{Name: "oncall"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("windows without a reason: %v, want ErrInvalid", err)
	}
	if err := r.e.SetWindows(ctx, store.WindowsOfCustomer, "acme", nil, op); !errors.Is(err, ErrInvalid) {
		t.Errorf("an empty set of windows: %v, want ErrInvalid", err)
	}
	if err := r.e.SetWindows(ctx, "region", "eu", rolloutplan.Windows{noon}, op); !errors.Is(err, ErrInvalid) {
		t.Errorf("windows of a region: %v, want ErrInvalid", err)
	}
	if err := r.e.SetWindows(ctx, store.WindowsOfCustomer, "acme", rolloutplan.Windows{noon}, op); err != nil {
		t.Fatal(err)
	}
	if d := r.decideWith("d3", "2.0.0"); d.Hold {
		t.Errorf("d3 inside the API's noon window, which replaces the file's: %+v", d)
	}
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d3", "d4"}}) {
		t.Errorf("announced %v; want acme's d3 and d4 at once", got)
	}
	if es := r.e.Windows(); len(es) != 1 || es[0].Source != "api" || es[0].UpdatedBy != "oncall" || es[0].Windows[0].String() != noon.String() {
		t.Errorf("windows in force: %+v", es)
	}
	if !slices.Contains(st.actions(), store.ActionUpdateWindows) {
		t.Errorf("audit %v: want the windows change", st.actions())
	}

	// A restart reads them back.
	r2 := newRig(t, cfg, r.fleet, st, clk)
	if d := r2.decideWith("d3", "2.0.0"); d.Hold {
		t.Errorf("after a restart d3 is held again: %+v", d)
	}
	// Removing the API's entry brings the file's back, at once.
	if err := r2.e.RemoveWindows(ctx, store.WindowsOfCustomer, "acme", op); err != nil {
		t.Fatal(err)
	}
	if d := r2.decideWith("d3", "2.0.0"); !d.Hold || d.Behind != BehindOutsideWindow {
		t.Errorf("d3 after the API's windows are removed: %+v, want the file's night window", d)
	}
	if got := r2.ann.take(); !reflect.DeepEqual(got, [][]string{{"d3", "d4"}}) {
		t.Errorf("announced %v after the removal", got)
	}
	if err := r2.e.RemoveWindows(ctx, store.WindowsOfCustomer, "acme", op); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing twice: %v, want ErrNotFound", err)
	}
	if es := r2.e.Windows(); len(es) != 1 || es[0].Source != "config" {
		t.Errorf("windows in force after the removal: %+v", es)
	}
}
