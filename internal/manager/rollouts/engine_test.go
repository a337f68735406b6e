package rollouts

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

func start(t *testing.T, r *rig, release string) State {
	t.Helper()
	s, err := r.e.StartRollout(context.Background(), StartRequest{Stack: "shop", Release: release, Baseline: "1.0.0",
		Actor: Actor{Name: "release-bot", Role: "operator", Reason: "published"}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReleaseMovesWaveByWaveAfterEachBake(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, sixDeployments(), newMemStore(), clk)
	s := start(t, r, "2.0.0")

	// The canary wave opens at once: only the canaries are offered 2.0.0.
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d1", "d2"}}) {
		t.Fatalf("announced %v, want the canaries", got)
	}
	if d := r.decide("d1"); d.Release != "2.0.0" || d.Rollout != s.ID || d.Behind != "" {
		t.Errorf("canary d1: %+v", d)
	}
	// acme waits for its wave: the canary bake (30m, not started) from now.
	if d := r.decide("d3"); d.Release != "1.0.0" || d.Behind != BehindWaitingForWave || d.Wave != "acme" || !d.Expected.Equal(t0.Add(30*time.Minute)) {
		t.Errorf("acme's d3: %+v", d)
	}
	// The rest wait for the acme bake too.
	if d := r.decide("d5"); d.Behind != BehindWaitingForWave || d.Wave != "everyone" || !d.Expected.Equal(t0.Add(90*time.Minute)) {
		t.Errorf("d5: %+v", d)
	}

	// Nothing bakes until both canaries run 2.0.0.
	clk.Advance(10 * time.Minute)
	r.fleet.update("2.0.0", "d1")
	r.step(t)
	if w := r.state(t, s.ID).Waves[0]; !w.BakeStart.IsZero() {
		t.Fatalf("baking with one canary still on 1.0.0: %+v", w)
	}
	r.fleet.update("2.0.0", "d2")
	clk.Advance(5 * time.Minute)
	r.step(t)
	bakeStart := t0.Add(15 * time.Minute)
	if w := r.state(t, s.ID).Waves[0]; !w.BakeStart.Equal(bakeStart) || w.Figures.Updated != 2 || w.Figures.Size != 2 {
		t.Fatalf("canary wave: %+v", w)
	}
	if d := r.decide("d3"); !d.Expected.Equal(bakeStart.Add(30 * time.Minute)) {
		t.Errorf("acme expected at %s, want the canary bake's end", d.Expected)
	}

	// One second short of the bake: still the canaries only.
	clk.Set(bakeStart.Add(30*time.Minute - time.Second))
	r.step(t)
	if got := r.state(t, s.ID).Wave; got != 0 {
		t.Fatalf("wave %d open before the bake ended", got)
	}
	clk.Set(bakeStart.Add(30 * time.Minute))
	r.step(t)
	if st := r.state(t, s.ID); st.Wave != 1 || st.Waves[0].PassedAt.IsZero() || st.Waves[1].OpenedAt.IsZero() {
		t.Fatalf("after the canary bake: wave %d, %+v", st.Wave, st.Waves[:2])
	}
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d3", "d4"}}) {
		t.Fatalf("announced %v, want acme's", got)
	}
	if d := r.decide("d3"); d.Release != "2.0.0" {
		t.Errorf("acme's d3 after its wave opened: %+v", d)
	}

	r.fleet.update("2.0.0", "d3", "d4")
	r.step(t)
	clk.Advance(time.Hour)
	r.step(t)
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d5", "d6"}}) {
		t.Fatalf("announced %v, want the rest", got)
	}
	r.fleet.update("2.0.0", "d5", "d6")
	r.step(t)
	clk.Advance(time.Hour)
	r.step(t)
	st := r.state(t, s.ID)
	if st.Phase != PhaseCompleted {
		t.Fatalf("after every bake: %s", st.Phase)
	}
	if got := r.note.kinds(); !reflect.DeepEqual(got, []NoticeKind{NoticeCompleted}) {
		t.Errorf("notices %v", got)
	}
	// A completed rollout decides nothing: the latest release applies.
	if d := r.decide("d5"); d.Release != "9.9.9" || d.Rollout != "" {
		t.Errorf("after completion: %+v", d)
	}
	want := []string{"rollout.start", "rollout.wave", "rollout.wave", "rollout.wave", "rollout.wave", "rollout.wave", "rollout.wave", "rollout.complete"}
	if got := r.st.(*memStore).actions(); !reflect.DeepEqual(got, want) {
		t.Errorf("audit %v, want %v", got, want)
	}
}

// rollToSecondWave starts 2.0.0 and bakes the canaries green.
func rollToSecondWave(t *testing.T, r *rig) State {
	t.Helper()
	s := start(t, r, "2.0.0")
	r.fleet.update("2.0.0", "d1", "d2")
	r.step(t)
	r.clk.Advance(30 * time.Minute)
	r.step(t)
	if st := r.state(t, s.ID); st.Wave != 1 {
		t.Fatalf("wave %d, want acme's open", st.Wave)
	}
	return s
}

func regress(r *rig, id, release string) {
	r.fleet.set(id, func(m *Member) {
		m.Status, m.ReasonCode = fleet.StatusUnhealthy, fleet.ReasonRegressed
		m.Regression = &fleet.Regression{Release: release, Previous: "1.0.0", Requests: 400, PreviousRequests: 900,
			ErrorRate: 0.5, PreviousErrorRate: 0.01, Worse: []string{"error_rate"}}
	})
}

func TestARegressedWaveHaltsPinsBackAndStopsTheNext(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, sixDeployments(), newMemStore(), clk)
	s := rollToSecondWave(t, r)
	r.fleet.update("2.0.0", "d3", "d4")
	r.step(t)
	clk.Advance(10 * time.Minute)
	regress(r, "d4", "2.0.0")
	r.step(t)

	st := r.state(t, s.ID)
	if st.Phase != PhaseHalted || st.Halt == nil || st.Halt.Wave != "acme" || !reflect.DeepEqual(st.Halt.Gates, []string{"regressed"}) {
		t.Fatalf("after d4 regressed: %s, halt %+v", st.Phase, st.Halt)
	}
	for _, want := range []string{"gate regressed failed: 1 of 2 deployments regressed on 2.0.0, at most 0 (0)", "d4 (error rate 50.0% vs 1.0% on 2.0.0 (400 requests) against 1.0.0 (900 requests))"} {
		if !strings.Contains(st.Halt.Reason, want) {
			t.Errorf("halt reason %q lacks %q", st.Halt.Reason, want)
		}
	}
	// d4 is pinned back to what it ran, by the rollout, saying why; d3 is not.
	pins := r.fleet.pinLog()
	if len(pins) != 1 || !strings.HasPrefix(pins[0], "pin d4 -> 1.0.0 by rollout:"+s.ID+": rollout of 2.0.0 halted in wave acme: gate regressed failed") {
		t.Fatalf("pins %q", pins)
	}
	if len(st.PendingPins) != 0 {
		t.Errorf("pin-back still pending: %+v", st.PendingPins)
	}
	n := r.note.notices
	if len(n) != 1 || n[0].Kind != NoticeHalted || n[0].Wave != "acme" || !reflect.DeepEqual(n[0].PinnedBack, []string{"d4"}) || !strings.Contains(n[0].Reason, "error rate 50.0%") {
		t.Fatalf("notices %+v", n)
	}
	// The last wave never receives 2.0.0, however long it waits, and shows
	// it waits with no expected time.
	r.ann.take()
	for range 5 {
		clk.Advance(time.Hour)
		r.step(t)
	}
	if d := r.decide("d5"); d.Release != "1.0.0" || d.Behind != BehindWaitingForWave || d.Wave != "everyone" || !d.Expected.IsZero() {
		t.Errorf("d5 while halted: %+v", d)
	}
	if got := r.ann.take(); got != nil {
		t.Errorf("announced %v while halted", got)
	}
	if d := r.decide("d4"); d.Release != "1.0.0" || d.Rollout != "" {
		t.Errorf("pinned d4: %+v", d)
	}
	if d := r.decide("d3"); d.Release != "2.0.0" {
		t.Errorf("d3 keeps 2.0.0 while halted: %+v", d)
	}
	if got := r.st.(*memStore).actions(); got[len(got)-1] != store.ActionRolloutHalt {
		t.Errorf("audit ends %v", got)
	}

	// A fixed 2.1.0 supersedes it, lifts the rollout's pin on d4 when acme's
	// wave opens, and rolls through every wave.
	clk.Advance(time.Hour)
	s2 := start(t, r, "2.1.0")
	if old := r.state(t, s.ID); old.Phase != PhaseSuperseded || old.SupersededBy != s2.ID {
		t.Fatalf("2.0.0's rollout: %s by %q", old.Phase, old.SupersededBy)
	}
	if d := r.decide("d3"); d.Release != "2.0.0" || d.Behind != BehindWaitingForWave || d.Wave != "acme" {
		t.Errorf("d3, on 2.0.0, waits for 2.1.0's acme wave: %+v", d)
	}
	if d := r.decide("d5"); d.Release != "1.0.0" {
		t.Errorf("d5 stays on the baseline: %+v", d)
	}
	r.fleet.update("2.1.0", "d1", "d2")
	r.step(t)
	clk.Advance(30 * time.Minute)
	r.step(t)
	if pins := r.fleet.pinLog(); pins[len(pins)-1] != "unpin d4 by rollout:"+s2.ID {
		t.Fatalf("pins %q; want d4's rollout pin lifted", pins)
	}
	r.fleet.update("2.1.0", "d3", "d4")
	r.step(t)
	clk.Advance(time.Hour)
	r.step(t)
	r.fleet.update("2.1.0", "d5", "d6")
	r.step(t)
	clk.Advance(time.Hour)
	r.step(t)
	if st := r.state(t, s2.ID); st.Phase != PhaseCompleted {
		t.Fatalf("2.1.0: %s", st.Phase)
	}
	if old := r.state(t, s.ID); old.Phase != PhaseSuperseded || !old.Retired {
		t.Errorf("2.0.0's superseded rollout not retired: %s retired %v", old.Phase, old.Retired)
	}
	live, _ := r.e.List(context.Background(), store.RolloutFilter{Unfinished: true})
	if len(live) != 0 {
		t.Errorf("%d rollouts left unfinished", len(live))
	}
}

func TestFailedUpdatesGateCountsAgainstItsThreshold(t *testing.T) {
	plan := rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{{Name: "all", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(time.Hour),
		Gates: &rolloutplan.Gates{FailedUpdates: &rolloutplan.Threshold{Max: ptr(1)}}}}}
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{plan}}, sixDeployments(), newMemStore(), clk)
	s := start(t, r, "2.0.0")
	fail := func(id string) {
		r.fleet.set(id, func(m *Member) {
			m.Update = fleet.UpdateState{Phase: fleet.UpdateFailed, Release: "2.0.0", Error: "exit 1"}
			m.Status = fleet.StatusFailed
		})
	}
	r.fleet.update("2.0.0", "d1", "d2", "d3", "d4")
	fail("d5")
	r.step(t)
	// One failure is allowed; d6 has not updated yet, so nothing bakes.
	if st := r.state(t, s.ID); st.Phase != PhaseRunning || st.Waves[0].Figures.FailedUpdates != 1 || !st.Waves[0].BakeStart.IsZero() {
		t.Fatalf("one failed update of six: %s %+v", st.Phase, st.Waves[0])
	}
	fail("d6")
	clk.Advance(time.Minute)
	r.step(t)
	st := r.state(t, s.ID)
	if st.Phase != PhaseHalted || !strings.Contains(st.Halt.Reason, "gate failed_updates failed: 2 of 6 deployments failed to update to 2.0.0, at most 1 (1): d5, d6") {
		t.Fatalf("two failed: %s %+v", st.Phase, st.Halt)
	}
	// The failed ones are pinned back so their agents stop retrying.
	if pins := r.fleet.pinLog(); len(pins) != 1 || !strings.HasPrefix(pins[0], "pin d5,d6 -> 1.0.0") {
		t.Errorf("pins %q", pins)
	}
}

func TestResumeRebakesWithoutThePinnedBack(t *testing.T) {
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, sixDeployments(), newMemStore(), clk)
	s := rollToSecondWave(t, r)
	r.fleet.update("2.0.0", "d3", "d4")
	regress(r, "d4", "2.0.0")
	r.step(t)
	if _, err := r.e.Resume(context.Background(), s.ID, Actor{Name: "ops"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("resume without a reason: %v", err)
	}
	if _, err := r.e.Skip(context.Background(), s.ID, "d3", Actor{Name: "ops", Reason: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("skipping a deployment already on the release: %v", err)
	}
	clk.Advance(20 * time.Minute)
	st, err := r.e.Resume(context.Background(), s.ID, Actor{Name: "ops", Role: "admin", Reason: "d4 pinned back; the rest looks fine"})
	if err != nil {
		t.Fatal(err)
	}
	// d4 is pinned, so the wave is d3 alone, settled: the bake starts again now.
	if st.Phase != PhaseRunning || st.Waves[1].Figures.Size != 1 || !st.Waves[1].BakeStart.Equal(clk.Now()) {
		t.Fatalf("resumed: %s %+v", st.Phase, st.Waves[1])
	}
	clk.Advance(time.Hour)
	r.step(t)
	if st := r.state(t, s.ID); st.Wave != 2 {
		t.Fatalf("wave %d after the fresh bake", st.Wave)
	}
	if _, err := r.e.Resume(context.Background(), s.ID, Actor{Name: "ops", Reason: "again"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("resuming a running rollout: %v", err)
	}
}

func TestSkipUnblocksAWaveAndAbortPinsEverythingBack(t *testing.T) {
	clk := clock.NewFake(t0)
	f := sixDeployments()
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, f, newMemStore(), clk)
	s := rollToSecondWave(t, r)
	// d4 never updates (its agent cannot apply releases): the wave waits.
	r.fleet.update("2.0.0", "d3")
	clk.Advance(3 * time.Hour)
	r.step(t)
	if st := r.state(t, s.ID); !st.Waves[1].BakeStart.IsZero() {
		t.Fatal("baking while d4 has not updated")
	}
	if d := r.decide("d4"); d.Release != "2.0.0" {
		t.Errorf("d4 in the open wave: %+v", d)
	}
	st, err := r.e.Skip(context.Background(), s.ID, "d4", Actor{Name: "ops", Role: "admin", Reason: "customer redeploys by hand next week"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st.Skipped, []string{"d4"}) || !st.Waves[1].BakeStart.Equal(clk.Now()) {
		t.Fatalf("after skip: %v %+v", st.Skipped, st.Waves[1])
	}
	// Left out of the rollout, d4 keeps its release until it completes.
	if d := r.decide("d4"); d.Release != "1.0.0" || d.Behind != "" {
		t.Errorf("skipped d4: %+v", d)
	}

	st, err = r.e.Abort(context.Background(), s.ID, Actor{Name: "ops", Role: "admin", Reason: "support tickets about 2.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != PhaseAborted || len(st.PendingPins) != 0 {
		t.Fatalf("aborted: %s, pending %+v", st.Phase, st.PendingPins)
	}
	// Every deployment it moved (the canaries and d3, not skipped d4) is pinned back.
	if pins := r.fleet.pinLog(); len(pins) != 1 || !strings.HasPrefix(pins[0], "pin d1,d2,d3 -> 1.0.0 by ops: rollout of 2.0.0 aborted by ops") {
		t.Fatalf("pins %q", pins)
	}
	// Those it never reached stay on the baseline, not the latest 2.0.0.
	for _, id := range []string{"d4", "d5"} {
		if d := r.decideWith(id, "2.0.0"); d.Release != "1.0.0" || d.Behind != "" {
			t.Errorf("%s after abort: %+v", id, d)
		}
	}
	if got := r.note.kinds(); !reflect.DeepEqual(got, []NoticeKind{NoticeAborted}) {
		t.Errorf("notices %v", got)
	}
	acts := r.st.(*memStore).actions()
	if acts[len(acts)-1] != store.ActionRolloutAbort || !contains(acts, store.ActionRolloutSkip) {
		t.Errorf("audit %v", acts)
	}
}

func TestPinsWinAndPinFailuresAreRetried(t *testing.T) {
	clk := clock.NewFake(t0)
	f := sixDeployments()
	f.set("d2", func(m *Member) { m.Pin = &fleet.Pin{Release: "0.9.0", By: "ops", Reason: "customer freeze"} })
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, f, newMemStore(), clk)
	s := start(t, r, "2.0.0")
	if got := r.ann.take(); !reflect.DeepEqual(got, [][]string{{"d1"}}) {
		t.Errorf("announced %v; a pinned canary takes no rollout", got)
	}
	if d := r.decide("d2"); d.Release != "0.9.0" || d.Behind != "" {
		t.Errorf("pinned d2: %+v", d)
	}
	// The pinned canary is not waited for.
	r.fleet.update("2.0.0", "d1")
	regress(r, "d1", "2.0.0")
	f.mu.Lock()
	f.fail = true
	f.mu.Unlock()
	r.step(t)
	if st := r.state(t, s.ID); st.Phase != PhaseHalted || len(st.PendingPins) != 1 {
		t.Fatalf("halted with the pin refused: %s %+v", st.Phase, st.PendingPins)
	}
	f.mu.Lock()
	f.fail = false
	f.mu.Unlock()
	r.step(t)
	if st := r.state(t, s.ID); len(st.PendingPins) != 0 || len(f.pinLog()) != 1 {
		t.Fatalf("the refused pin-back was not retried: %+v %q", st.PendingPins, f.pinLog())
	}
}

func TestAStackWithoutAPlanIsRefusedAndDecidedByItsLatest(t *testing.T) {
	r := newRig(t, rolloutplan.Config{}, sixDeployments(), newMemStore(), clock.NewFake(t0))
	if _, err := r.e.StartRollout(context.Background(), StartRequest{Stack: "shop", Release: "2.0.0"}); !errors.Is(err, ErrNoPlan) {
		t.Errorf("StartRollout without a plan: %v", err)
	}
	if d := r.decide("d1"); d.Release != "9.9.9" || d.Behind != "" {
		t.Errorf("without a plan: %+v", d)
	}
}

func TestPlansSetThroughTheAPIReplaceTheFileAndSurvive(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	clk := clock.NewFake(t0)
	r := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, sixDeployments(), st, clk)
	one := rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{{Name: "all", Select: rolloutplan.Selection{Rest: true}}}}
	if err := r.e.SetPlan(ctx, rolloutplan.Plan{Stack: "shop"}, Actor{Name: "ops", Reason: "x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a plan without waves: %v", err)
	}
	if err := r.e.SetPlan(ctx, one, Actor{Name: "ops", Role: "admin", Reason: "one wave while the canaries are down"}); err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t, rolloutplan.Config{Plans: []rolloutplan.Plan{threeWaves()}}, sixDeployments(), st, clk)
	if p, _ := r2.e.Plan("shop"); len(p.Waves) != 1 {
		t.Fatalf("after a restart the plan has %d waves, want the API's one", len(p.Waves))
	}
	if err := r2.e.RemovePlan(ctx, "shop", Actor{Name: "ops", Reason: "canaries back"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := r2.e.Plan("shop"); len(p.Waves) != 3 {
		t.Errorf("after removing the API's plan, %d waves; want the file's three", len(p.Waves))
	}
	if err := r2.e.RemovePlan(ctx, "shop", Actor{Name: "ops", Reason: "again"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing it twice: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
