package registry_test

import (
	"context"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/desired"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

var t0 = time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)

// gatedStore is the real DuckDB store whose ApplyPins can be held open, to
// create two overlapping pin changes on purpose.
type gatedStore struct {
	*duckdb.Store
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedStore) ApplyPins(ctx context.Context, recs []store.DeploymentRecord, ch []fleet.PinChange) error {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.mu.Unlock()
	if gate != nil {
		close(entered)
		<-gate
	}
	return g.Store.ApplyPins(ctx, recs, ch)
}

type fixture struct {
	reg     *registry.Registry
	st      *gatedStore
	clk     *clock.Fake
	dir     string
	mu      sync.Mutex
	desired []string
	events  []fleet.Event
}

func (f *fixture) pushed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.desired
	f.desired = nil
	slices.Sort(out)
	return out
}

func open(t *testing.T, dir string, clk *clock.Fake) *fixture {
	t.Helper()
	st, err := duckdb.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: &gatedStore{Store: st}, clk: clk, dir: dir}
	f.reg, err = registry.New(f.st, registry.Settings{Clock: clk, FlushInterval: time.Hour, EvalInterval: time.Hour,
		OnDesiredChange: func(ids []string) {
			f.mu.Lock()
			f.desired = append(f.desired, ids...)
			f.mu.Unlock()
		},
		OnEvent: func(e fleet.Event) {
			f.mu.Lock()
			f.events = append(f.events, e)
			f.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close(t) })
	return f
}

func (f *fixture) close(t *testing.T) {
	if err := f.reg.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	f.st.Close()
}

// newFleet creates deployments on two stacks, publishes 1.0 and 2.0 of "app" and
// 1.0 of "db", and has every deployment check in on 1.0 over polling, with an
// agent that applies releases.
func newFleet(t *testing.T) *fixture {
	t.Helper()
	f := open(t, t.TempDir(), clock.NewFake(t0))
	ctx := context.Background()
	_, err := f.reg.CreateDeployments(ctx, []registry.NewDeployment{
		{ID: "acme-prod", Customer: "acme", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "acme-dr", Customer: "acme", Stack: "app"},
		{ID: "globex", Customer: "globex", Stack: "app", Labels: map[string]string{"tier": "gold"}},
		{ID: "acme-db", Customer: "acme", Stack: "db"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []fleet.Release{{Stack: "app", Version: "1.0"}, {Stack: "db", Version: "1.0"}} {
		if _, err := f.reg.CreateRelease(ctx, rel); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"acme-prod", "acme-dr", "globex", "acme-db"} {
		checkin(t, f, id, registry.Report{Description: &registry.Description{Release: "1.0", AgentVersion: "a/1"}})
	}
	f.pushed()
	f.clk.Advance(time.Hour)
	if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: "2.0"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func checkin(t *testing.T, f *fixture, id string, rep registry.Report) {
	t.Helper()
	yes := true
	rep.Mode, rep.AcceptsReleases = fleet.ModePull, &yes
	if _, err := f.reg.Checkin(id, rep); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, f *fixture, id string) registry.View {
	t.Helper()
	v, err := f.reg.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNewReleaseChangesWhatUnpinnedDeploymentsOfItsStackWant(t *testing.T) {
	f := newFleet(t)
	if got, want := f.pushed(), []string{"acme-dr", "acme-prod", "globex"}; !slices.Equal(got, want) {
		t.Fatalf("publishing app 2.0 announced a desired change for %v, want %v (not the db stack)", got, want)
	}
	v := view(t, f, "acme-prod")
	if v.Evaluation.Desired != "2.0" || v.Evaluation.Behind != fleet.BehindPullPending || v.Evaluation.VersionsBehind != 1 {
		t.Fatalf("acme-prod: desired %q behind %q versions %d; want 2.0, pull-pending, 1", v.Evaluation.Desired, v.Evaluation.Behind, v.Evaluation.VersionsBehind)
	}
	if !v.Deployment.BehindSince.Equal(t0.Add(time.Hour)) {
		t.Fatalf("behind since %v, want when 2.0 was published", v.Deployment.BehindSince)
	}
}

func TestOfferIsReportedOnUntilApplied(t *testing.T) {
	f := newFleet(t)
	o, send := f.reg.Offer("acme-prod")
	if !send || o.Release != "2.0" || o.Stack != "app" {
		t.Fatalf("offer = %+v, %v; want 2.0 to be sent", o, send)
	}
	hash := hex.EncodeToString(desired.Hash(o))

	checkin(t, f, "acme-prod", registry.Report{Offer: &registry.OfferStatus{Hash: hash, Phase: fleet.UpdateApplying}})
	if v := view(t, f, "acme-prod"); v.Evaluation.Status != fleet.StatusUpdating || v.Deployment.Update.Release != "2.0" {
		t.Fatalf("while applying: status %s update %+v; want updating to 2.0", v.Evaluation.Status, v.Deployment.Update)
	}
	if _, send := f.reg.Offer("acme-prod"); send {
		t.Fatal("the offer is resent although the agent is applying it")
	}
	checkin(t, f, "acme-prod", registry.Report{Description: &registry.Description{Release: "2.0"},
		Offer: &registry.OfferStatus{Hash: hash, Phase: fleet.UpdateApplied}})
	v := view(t, f, "acme-prod")
	if v.Evaluation.Status != fleet.StatusHealthy || v.Deployment.RunningRelease != "2.0" || v.Deployment.PreviousRelease != "1.0" || v.Evaluation.Behind != "" {
		t.Fatalf("after apply: %s on %s (previous %s), behind %q; want healthy on 2.0 after 1.0, not behind",
			v.Evaluation.Status, v.Deployment.RunningRelease, v.Deployment.PreviousRelease, v.Evaluation.Behind)
	}
	if !v.Deployment.BehindSince.IsZero() {
		t.Fatalf("behind since %v after catching up", v.Deployment.BehindSince)
	}

	o, _ = f.reg.Offer("globex")
	checkin(t, f, "globex", registry.Report{Offer: &registry.OfferStatus{Hash: hex.EncodeToString(desired.Hash(o)), Phase: fleet.UpdateFailed, Error: "helm: timed out"}})
	v = view(t, f, "globex")
	if v.Evaluation.Status != fleet.StatusFailed || !strings.Contains(v.Evaluation.Reason, "helm: timed out") || v.Evaluation.Behind != fleet.BehindUpdateFailed {
		t.Fatalf("failed hook: %s %q behind %q; want failed naming the hook's error, behind update-failed", v.Evaluation.Status, v.Evaluation.Reason, v.Evaluation.Behind)
	}
}

func TestPinOneRecordsWhoWhyAndSurvivesRestart(t *testing.T) {
	f := newFleet(t)
	f.pushed()
	res, err := f.reg.Pin(context.Background(), registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-prod"}},
		Action: fleet.ActionPin, Release: "1.0", By: "alice", Reason: "INC-42"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || res.Changes[0].From != "2.0" || res.Changes[0].To != "1.0" || res.Changes[0].Running != "1.0" || res.Changes[0].By != "alice" {
		t.Fatalf("changes = %+v", res.Changes)
	}
	if got := f.pushed(); !slices.Equal(got, []string{"acme-prod"}) {
		t.Fatalf("desired change announced for %v, want [acme-prod]", got)
	}
	v := view(t, f, "acme-prod")
	if !v.Evaluation.Pinned || v.Evaluation.Desired != "1.0" || v.Evaluation.Behind != "" || v.Evaluation.BehindLatest() != fleet.BehindPinned {
		t.Fatalf("pinned view: %+v", v.Evaluation)
	}
	// The same pin again changes nothing and records nothing.
	res, err = f.reg.Pin(context.Background(), registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-prod"}},
		Action: fleet.ActionPin, Release: "1.0", By: "bob", Reason: "again"})
	if err != nil || len(res.Changes) != 0 || res.Unchanged != 1 {
		t.Fatalf("repeat pin: %+v, %v; want nothing changed", res, err)
	}

	dir := f.dir
	f.close(t)
	g := open(t, dir, f.clk)
	v = view(t, g, "acme-prod")
	if v.Deployment.Pin == nil || v.Deployment.Pin.Reason != "INC-42" || v.Deployment.Pin.By != "alice" {
		t.Fatalf("pin after restart = %+v", v.Deployment.Pin)
	}
	hist, err := g.reg.PinChanges(context.Background(), "acme-prod", 10)
	if err != nil || len(hist) != 1 || hist[0].Reason != "INC-42" || hist[0].Action != fleet.ActionPin {
		t.Fatalf("audit after restart = %+v, %v", hist, err)
	}
}

func TestPinSelectionIsAllOrNothing(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	// 2.0 exists for app but not for db: pinning everyone to it must change no one.
	_, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{All: true}, Action: fleet.ActionPin, Release: "2.0", By: "a", Reason: "r"})
	if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "acme-db") {
		t.Fatalf("pin all to a release one stack lacks: %v; want ErrInvalid naming acme-db", err)
	}
	for _, id := range []string{"acme-prod", "acme-dr", "globex", "acme-db"} {
		if v := view(t, f, id); v.Deployment.Pin != nil {
			t.Fatalf("%s was pinned by a refused change", id)
		}
	}
	if h, _ := f.reg.PinChanges(ctx, "", 10); len(h) != 0 {
		t.Fatalf("a refused change left %d audit entries", len(h))
	}
	// A selection by label and customer.
	res, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{Filter: fleet.Filter{Customer: "acme", Labels: map[string]string{"tier": "gold"}}},
		Action: fleet.ActionPin, Release: "1.0", By: "a", Reason: "gold customers stay"})
	if err != nil || len(res.Changes) != 1 || res.Changes[0].DeploymentID != "acme-prod" {
		t.Fatalf("pin by customer and label: %+v, %v; want acme-prod only", res, err)
	}
	// Pin all, then unpin all.
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{Filter: fleet.Filter{Stack: "app"}}, Action: fleet.ActionPin, Release: "1.0", By: "a", Reason: "freeze"}); err != nil {
		t.Fatal(err)
	}
	if s := f.reg.Summary(fleet.Filter{Stack: "app"}); s.Pinned != 3 {
		t.Fatalf("%d app deployments pinned, want 3", s.Pinned)
	}
	res, err = f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{All: true}, Action: fleet.ActionUnpin, By: "a"})
	if err != nil || len(res.Changes) != 3 || res.Unchanged != 1 {
		t.Fatalf("unpin all: %d changed, %d unchanged, %v; want 3 and 1", len(res.Changes), res.Unchanged, err)
	}
	if s := f.reg.Summary(fleet.Filter{}); s.Pinned != 0 {
		t.Fatalf("%d pinned after unpin all", s.Pinned)
	}
	// Nothing selected is an error, not a silent no-op; so is a pin without a reason.
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Action: fleet.ActionUnpin}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("empty selection: %v", err)
	}
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{All: true}, Action: fleet.ActionPin, Release: "1.0"}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("pin without a reason: %v", err)
	}
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"nope"}}, Action: fleet.ActionUnpin}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestRollbackPinsThePreviousRelease(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-prod"}}, Action: fleet.ActionRollback, By: "a", Reason: "r"}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("rollback with nothing before: %v; want ErrInvalid", err)
	}
	checkin(t, f, "acme-prod", registry.Report{Description: &registry.Description{Release: "2.0"}})
	res, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-prod"}}, Action: fleet.ActionRollback, By: "a", Reason: "errors on 2.0"})
	if err != nil || len(res.Changes) != 1 || res.Changes[0].To != "1.0" || res.Changes[0].Action != fleet.ActionRollback {
		t.Fatalf("rollback: %+v, %v; want a pin to 1.0", res, err)
	}
	checkin(t, f, "acme-prod", registry.Report{Description: &registry.Description{Release: "1.0"}})
	v := view(t, f, "acme-prod")
	if v.Evaluation.Status != fleet.StatusHealthy || !v.Evaluation.Pinned || v.Deployment.RunningRelease != "1.0" || v.Deployment.PreviousRelease != "2.0" {
		t.Fatalf("after rollback: %+v %+v", v.Evaluation, v.Deployment)
	}
	// What ran before is now newer: rolling back again would be a roll forward.
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-prod"}}, Action: fleet.ActionRollback, By: "a", Reason: "r"}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("second rollback: %v; want ErrInvalid", err)
	}
}

func TestOverlappingPinChangeIsRefused(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	f.st.mu.Lock()
	f.st.gate, f.st.entered = make(chan struct{}), make(chan struct{})
	gate, entered := f.st.gate, f.st.entered
	f.st.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{All: true}, Action: fleet.ActionPin, Release: "1.0", By: "alice", Reason: "freeze"})
		done <- err
	}()
	<-entered
	f.st.mu.Lock()
	f.st.gate = nil
	f.st.mu.Unlock()
	_, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"globex"}}, Action: fleet.ActionUnpin, By: "bob"})
	if !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("overlapping change: %v; want ErrConflict", err)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := f.reg.Summary(fleet.Filter{}); s.Pinned != 4 {
		t.Fatalf("%d pinned after the first change completed, want all 4", s.Pinned)
	}
	// Once it is done the same change goes through.
	if _, err := f.reg.Pin(ctx, registry.PinRequest{Select: registry.Selector{IDs: []string{"globex"}}, Action: fleet.ActionUnpin, By: "bob"}); err != nil {
		t.Fatal(err)
	}
}

func TestRegressionMakesUnhealthyUntilTheReleaseChanges(t *testing.T) {
	f := newFleet(t)
	checkin(t, f, "globex", registry.Report{Description: &registry.Description{Release: "2.0"}})
	reg := &fleet.Regression{Release: "2.0", Previous: "1.0", Requests: 100, PreviousRequests: 100, ErrorRate: 0.3, PreviousErrorRate: 0.01, Worse: []string{"error_rate"}}
	if err := f.reg.SetRegression("globex", reg); err != nil {
		t.Fatal(err)
	}
	v := view(t, f, "globex")
	if v.Evaluation.Status != fleet.StatusUnhealthy || v.Evaluation.ReasonCode != fleet.ReasonRegressed || !strings.Contains(v.Evaluation.Reason, "30.0%") {
		t.Fatalf("regressed: %+v", v.Evaluation)
	}
	f.mu.Lock()
	last := f.events[len(f.events)-1]
	f.mu.Unlock()
	if last.To != fleet.StatusUnhealthy || last.ReasonCode != fleet.ReasonRegressed || last.Release != "2.0" {
		t.Fatalf("event = %+v; want unhealthy, regressed-after-release, on 2.0", last)
	}
	checkin(t, f, "globex", registry.Report{Description: &registry.Description{Release: "1.0"}})
	if v := view(t, f, "globex"); v.Evaluation.Status != fleet.StatusHealthy || v.Deployment.Regression != nil {
		t.Fatalf("back on 1.0: %s, regression %+v; want healthy and cleared", v.Evaluation.Status, v.Deployment.Regression)
	}
	// Evidence about a release it does not run is ignored.
	if err := f.reg.SetRegression("globex", reg); err != nil {
		t.Fatal(err)
	}
	if v := view(t, f, "globex"); v.Deployment.Regression != nil {
		t.Fatal("a regression of 2.0 was recorded on a deployment running 1.0")
	}
}

func TestAdoption(t *testing.T) {
	f := newFleet(t)
	checkin(t, f, "globex", registry.Report{Description: &registry.Description{Release: "2.0"}})
	if _, err := f.reg.Pin(context.Background(), registry.PinRequest{Select: registry.Selector{IDs: []string{"acme-dr"}}, Action: fleet.ActionPin, Release: "1.0", By: "a", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	ad := f.reg.Adoption("")
	if len(ad) != 2 || ad[0].Stack != "app" || ad[0].Latest != "2.0" || ad[0].Total != 3 {
		t.Fatalf("adoption = %+v", ad)
	}
	got := map[string]registry.ReleaseAdoption{}
	for _, r := range ad[0].Releases {
		got[r.Version] = r
	}
	if r := got["2.0"]; r.Running != 1 || r.Desired != 2 || r.Pinned != 0 {
		t.Fatalf("2.0 = %+v; want 1 running, 2 wanting it", r)
	}
	if r := got["1.0"]; r.Running != 2 || r.Desired != 1 || r.Pinned != 1 {
		t.Fatalf("1.0 = %+v; want 2 running, 1 pinned to it", r)
	}
	// acme-prod runs 1.0, should run 2.0 and has not polled since; acme-dr runs
	// what its pin asks, and globex the latest.
	if b := got["1.0"].Behind; !reflect.DeepEqual(b, map[fleet.BehindReason]int{fleet.BehindPullPending: 1}) {
		t.Errorf("1.0 behind = %v; want acme-prod pull-pending", b)
	}
	if b := got["2.0"].Behind; b != nil {
		t.Errorf("2.0 behind = %v; want none", b)
	}
}
