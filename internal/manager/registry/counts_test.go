package registry_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// fromScratch counts views that were each evaluated at the moment they were
// read: what Summary computed before it kept counts.
func fromScratch(vs []registry.View, f fleet.Filter) registry.Summary {
	s := registry.Summary{ByStatus: map[fleet.Status]int{}, ByRelease: map[string]int{}, Behind: map[fleet.BehindReason]int{}}
	for _, st := range fleet.Statuses {
		s.ByStatus[st] = 0
	}
	for _, v := range vs {
		if !f.Match(&v.Deployment, v.Evaluation) {
			continue
		}
		s.Total++
		s.ByStatus[v.Evaluation.Status]++
		s.ByRelease[v.Deployment.RunningRelease]++
		if v.Evaluation.Behind != "" {
			s.Behind[v.Evaluation.Behind]++
		}
		if v.Evaluation.Pinned {
			s.Pinned++
		}
	}
	return s
}

// TestKeptCountsMatchEvaluationFromScratch drives a registry through random
// check-ins, disconnects, pins, releases, regressions, deletions, restarts and
// the passing of time (stale deployments, loss leaving its window), and after
// every step compares the summary it keeps, filtered counts and list totals
// with an evaluation of every deployment at that instant.
func TestKeptCountsMatchEvaluationFromScratch(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { keptCountsRun(t, seed, 250) })
	}
}

func keptCountsRun(t *testing.T, seed uint64, steps int) {
	rnd := rand.New(rand.NewPCG(seed, 22))
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	f := open(t, dir, clk)
	ctx := context.Background()
	stacks := []string{"app", "db"}
	versions := map[string][]string{}
	var live []string
	next := 0
	pick := func() string { return live[rnd.IntN(len(live))] }
	publish := func(stack string) {
		v := fmt.Sprintf("1.%d", len(versions[stack]))
		if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: stack, Version: v}); err != nil {
			t.Fatal(err)
		}
		versions[stack] = append(versions[stack], v)
	}
	publish("app")
	for step := range steps {
		op := rnd.IntN(12)
		if len(live) == 0 {
			op = 0
		}
		what := ""
		switch op {
		case 0: // register a few
			var nds []registry.NewDeployment
			for range 1 + rnd.IntN(4) {
				next++
				nds = append(nds, registry.NewDeployment{ID: fmt.Sprintf("d%03d", next), Customer: fmt.Sprintf("c%d", next%3),
					Cloud: []string{"aws", "gcp"}[next%2], Stack: stacks[rnd.IntN(2)]})
				live = append(live, nds[len(nds)-1].ID)
			}
			if _, err := f.reg.CreateDeployments(ctx, nds); err != nil {
				t.Fatal(err)
			}
			what = fmt.Sprintf("create %d", len(nds))
		case 1, 2, 3: // check in
			id := pick()
			rep := randomReport(rnd, clk.Now(), versions)
			if _, err := f.reg.Checkin(id, rep); err != nil {
				t.Fatal(err)
			}
			what = "check-in " + id
		case 4:
			id := pick()
			f.reg.Disconnected(id)
			what = "disconnect " + id
		case 5: // pin, unpin or roll back a few
			var sel []string
			for range 1 + rnd.IntN(3) {
				sel = append(sel, pick())
			}
			req := registry.PinRequest{Select: registry.Selector{IDs: sel}, Reason: "test", By: "t"}
			switch rnd.IntN(3) {
			case 0:
				req.Action = fleet.ActionPin
				st := stacks[rnd.IntN(2)]
				if len(versions[st]) == 0 {
					continue
				}
				req.Release = versions[st][rnd.IntN(len(versions[st]))]
			case 1:
				req.Action = fleet.ActionUnpin
			default:
				req.Action = fleet.ActionRollback
			}
			if _, err := f.reg.Pin(ctx, req); err != nil && !errors.Is(err, registry.ErrInvalid) {
				t.Fatal(err)
			}
			what = fmt.Sprintf("%s %v", req.Action, sel)
		case 6:
			publish(stacks[rnd.IntN(2)])
			what = "publish"
		case 7: // regression found on the running release, or cleared
			id := pick()
			v, err := f.reg.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			var reg *fleet.Regression
			if rnd.IntN(2) == 0 {
				reg = &fleet.Regression{Release: v.Deployment.RunningRelease, Previous: v.Deployment.PreviousRelease, Since: clk.Now(), Worse: []string{"error_rate"}}
			}
			if err := f.reg.SetRegression(id, reg); err != nil {
				t.Fatal(err)
			}
			what = "regression " + id
		case 8:
			i := rnd.IntN(len(live))
			if err := f.reg.DeleteDeployment(ctx, live[i], "t", "admin", "test"); err != nil {
				t.Fatal(err)
			}
			what = "delete " + live[i]
			live = append(live[:i], live[i+1:]...)
		case 9, 10: // time passes: across staleness (90 s) and the loss window (15 min) at times
			d := time.Duration(rnd.IntN(120)) * time.Second
			if rnd.IntN(8) == 0 {
				d = time.Duration(rnd.IntN(20)) * time.Minute
			}
			clk.Advance(d)
			what = fmt.Sprintf("advance %v", d)
		case 11:
			if err := f.reg.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			f.st.Close()
			f = open(t, dir, clk)
			what = "restart"
		}
		checkKeptCounts(t, f.reg, fmt.Sprintf("step %d (%s)", step, what))
	}
}

func randomReport(rnd *rand.Rand, now time.Time, versions map[string][]string) registry.Report {
	rep := registry.Report{Mode: []fleet.Mode{fleet.ModePull, fleet.ModePush}[rnd.IntN(2)]}
	accepts := rnd.IntN(4) != 0
	rep.AcceptsReleases = &accepts
	if rnd.IntN(2) == 0 {
		all := append(append([]string{"0.9"}, versions["app"]...), versions["db"]...)
		rep.Description = &registry.Description{Release: all[rnd.IntN(len(all))], AgentVersion: "a/1"}
	}
	switch rnd.IntN(4) {
	case 0:
		rep.Health = &fleet.Health{Reported: true, Healthy: true}
	case 1:
		rep.Health = &fleet.Health{Reported: true, LastError: "db down"}
	}
	if rnd.IntN(5) == 0 && len(versions["app"]) > 0 {
		phase := []fleet.UpdatePhase{fleet.UpdateApplying, fleet.UpdateFailed}[rnd.IntN(2)]
		rep.Update = &fleet.UpdateState{Phase: phase, Release: versions["app"][rnd.IntN(len(versions["app"]))], At: now}
	}
	if rnd.IntN(6) == 0 {
		rep.Loss = &registry.LossReport{RunStart: now.Add(-time.Duration(rnd.IntN(3)) * time.Hour), Counts: map[string]int64{"logs/queue_full": int64(1 + rnd.IntN(50))}, Last: now}
	}
	return rep
}

func checkKeptCounts(t *testing.T, reg *registry.Registry, at string) {
	t.Helper()
	vs, total := reg.List(fleet.Filter{}, registry.Page{})
	if total != len(vs) {
		t.Fatalf("%s: list total %d, %d items", at, total, len(vs))
	}
	filters := []fleet.Filter{{}, {Status: fleet.StatusHealthy}, {Status: fleet.StatusStale}, {Status: fleet.StatusUnhealthy},
		{Stack: "app", Behind: "any"}, {Behind: "latest"}, {Pinned: "true"}, {Customer: "c1", Cloud: "aws"}, {Behind: string(fleet.BehindUnreachable)}}
	for _, fl := range filters {
		want := fromScratch(vs, fl)
		if got := reg.Summary(fl); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: summary of %+v\n got %+v\nwant %+v", at, fl, got, want)
		}
		l, err := reg.ListPage(fl, registry.Page{Limit: 3, Order: registry.OrderProblems})
		if err != nil {
			t.Fatal(err)
		}
		if l.Total != want.Total {
			t.Fatalf("%s: list of %+v counts %d, from scratch %d", at, fl, l.Total, want.Total)
		}
	}
	sum, _, _, err := reg.Overview(fleet.Filter{}, registry.Page{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := fromScratch(vs, fleet.Filter{}); !reflect.DeepEqual(sum, want) {
		t.Fatalf("%s: overview summary\n got %+v\nwant %+v", at, sum, want)
	}
}

// BenchmarkSummary reads the fleet's counts, whole and filtered, over 100,000
// deployments in every status. bench/checkin measures it under check-in load.
func BenchmarkSummary(b *testing.B) {
	const n = 100_000
	clk := clock.NewFake(t0)
	reg := startRegistry(b, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: time.Hour})
	ctx := context.Background()
	nds := make([]registry.NewDeployment, n)
	for i := range nds {
		nds[i] = registry.NewDeployment{ID: fmt.Sprintf("cust%06d-prod", i), Customer: fmt.Sprintf("cust%06d", i),
			Cloud: []string{"aws", "gcp"}[i%2], Stack: "shop"}
	}
	for i := 0; i < n; i += 10_000 {
		if _, err := reg.CreateDeployments(ctx, nds[i:i+10_000]); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := reg.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: v}); err != nil {
			b.Fatal(err)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i, nd := range nds {
		if i%10 == 9 {
			continue // pending
		}
		if _, err := reg.Checkin(nd.ID, randomReport(rnd, clk.Now(), map[string][]string{"shop": {"1.0", "2.0"}})); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		f    fleet.Filter
	}{
		{"all", fleet.Filter{}},
		{"status=healthy,cloud=aws", fleet.Filter{Status: fleet.StatusHealthy, Cloud: "aws"}},
		{"behind=any", fleet.Filter{Behind: "any"}},
		{"q=cust04", fleet.Filter{Text: "cust04"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if s := reg.Summary(bc.f); s.Total == 0 {
					b.Fatal("nothing counted")
				}
			}
		})
	}
}

// startRegistry is a started registry over a DuckDB store in a temporary
// directory, shut down when tb ends.
func startRegistry(tb testing.TB, set registry.Settings) *registry.Registry {
	tb.Helper()
	st, err := duckdb.Open(context.Background(), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	reg, err := registry.New(st, set)
	if err != nil {
		tb.Fatal(err)
	}
	if err := reg.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := reg.Shutdown(context.Background()); err != nil {
			tb.Error(err)
		}
		st.Close()
	})
	return reg
}

// TestTimerTurnsSilentDeploymentStale: with no read and no check-in, the
// timer notices that a deployment's last check-in is older than StaleAfter
// and records the change, though it sweeps the fleet only when one is due.
func TestTimerTurnsSilentDeploymentStale(t *testing.T) {
	clk := clock.NewFake(t0)
	events := make(chan fleet.Event, 16)
	reg := startRegistry(t, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: 5 * time.Millisecond,
		OnEvent: func(e fleet.Event) { events <- e }})
	ctx := context.Background()
	if _, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "quiet", Stack: "app"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Checkin("quiet", registry.Report{Mode: fleet.ModePull, Description: &registry.Description{Release: "1.0"}}); err != nil {
		t.Fatal(err)
	}
	for e := range events {
		if e.To == fleet.StatusHealthy {
			break
		}
	}
	clk.Advance(reg.Params().StaleAfter + time.Second)
	var e fleet.Event
	select {
	case e = <-events:
	case <-time.After(30 * time.Second): // a guard, not a wait: the timer ticks every 5 ms
		t.Fatal("no status change 30 s after the deployment's deadline passed")
	}
	if e.DeploymentID != "quiet" || e.From != fleet.StatusHealthy || e.To != fleet.StatusStale {
		t.Fatalf("event %+v, want quiet healthy → stale", e)
	}
	if want := t0.Add(reg.Params().StaleAfter); !e.At.Equal(want) {
		t.Fatalf("stale at %v, want the missed deadline %v", e.At, want)
	}
}
