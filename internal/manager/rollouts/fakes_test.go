package rollouts

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// fakeFleet is a fleet whose deployments tests change by hand; its pinner
// pins them as the registry would.
type fakeFleet struct {
	mu   sync.Mutex
	deps map[string]*Member
	pins []string // "pin id,id -> release by actor: reason" or "unpin ids by actor"
	fail bool     // the pinner refuses
}

func newFleet(ms ...Member) *fakeFleet {
	f := &fakeFleet{deps: map[string]*Member{}}
	for i := range ms {
		m := ms[i]
		f.deps[m.ID] = &m
	}
	return f
}

func (f *fakeFleet) Members(stack string) []Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Member
	for _, m := range f.deps {
		if stack == "" || m.Stack == stack {
			c := *m
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeFleet) Pin(_ context.Context, ids []string, release, actor, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return fmt.Errorf("pin conflict")
	}
	for _, id := range ids {
		f.deps[id].Pin = &fleet.Pin{Release: release, By: actor, Reason: reason}
	}
	f.pins = append(f.pins, fmt.Sprintf("pin %s -> %s by %s: %s", strings.Join(ids, ","), release, actor, reason))
	return nil
}

func (f *fakeFleet) Unpin(_ context.Context, ids []string, actor, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.deps[id].Pin = nil
	}
	f.pins = append(f.pins, fmt.Sprintf("unpin %s by %s", strings.Join(ids, ","), actor))
	return nil
}

// set changes deployment id under the lock.
func (f *fakeFleet) set(id string, fn func(m *Member)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.deps[id])
}

// update moves ids onto release, healthy, as an agent applying it would.
func (f *fakeFleet) update(release string, ids ...string) {
	for _, id := range ids {
		f.set(id, func(m *Member) {
			m.Running, m.Status, m.ReasonCode = release, fleet.StatusHealthy, ""
			m.Update = fleet.UpdateState{Phase: fleet.UpdateApplied, Release: release}
			if m.Regression != nil && m.Regression.Release != release {
				m.Regression = nil
			}
		})
	}
}

func (f *fakeFleet) pinLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.pins...)
}

type fakeNotifier struct {
	mu      sync.Mutex
	notices []Notice
}

func (n *fakeNotifier) NotifyRollout(_ context.Context, x Notice) {
	n.mu.Lock()
	n.notices = append(n.notices, x)
	n.mu.Unlock()
}

func (n *fakeNotifier) kinds() []NoticeKind {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []NoticeKind
	for _, x := range n.notices {
		out = append(out, x.Kind)
	}
	return out
}

// memStore is store.Rollouts in memory, under the contract's version rule.
type memStore struct {
	mu    sync.Mutex
	recs  map[string]store.RolloutRecord
	plans map[string]store.RolloutPlanRecord
	// windows are by "kind:owner".
	windows map[string]store.UpdateWindowsRecord
	audit   []store.AuditEntry
}

func newMemStore() *memStore {
	return &memStore{recs: map[string]store.RolloutRecord{}, plans: map[string]store.RolloutPlanRecord{}}
}

func (s *memStore) CreateRollout(_ context.Context, r store.RolloutRecord, entries []store.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recs[r.ID]; ok {
		return store.ErrConflict
	}
	r.State = bytes.Clone(r.State)
	s.recs[r.ID] = r
	s.audit = append(s.audit, entries...)
	return nil
}

func (s *memStore) UpdateRollout(_ context.Context, r store.RolloutRecord, entries []store.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.recs[r.ID]
	if !ok {
		return store.ErrNotFound
	}
	if old.Version != r.Version-1 {
		return fmt.Errorf("version %d: %w", old.Version, store.ErrConflict)
	}
	r.State = bytes.Clone(r.State)
	s.recs[r.ID] = r
	s.audit = append(s.audit, entries...)
	return nil
}

func (s *memStore) GetRollout(_ context.Context, id string) (store.RolloutRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return r, store.ErrNotFound
	}
	return r, nil
}

func (s *memStore) ListRollouts(_ context.Context, f store.RolloutFilter) ([]store.RolloutRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.RolloutRecord
	for _, r := range s.recs {
		if (f.Stack == "" || r.Stack == f.Stack) && (!f.Unfinished || !r.Done) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.After(out[j].StartedAt) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (s *memStore) PutRolloutPlan(_ context.Context, p store.RolloutPlanRecord, e store.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plans[p.Stack] = p
	s.audit = append(s.audit, e)
	return nil
}

func (s *memStore) DeleteRolloutPlan(_ context.Context, stack string, e store.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.plans[stack]; !ok {
		return store.ErrNotFound
	}
	delete(s.plans, stack)
	s.audit = append(s.audit, e)
	return nil
}

func (s *memStore) ListRolloutPlans(context.Context) ([]store.RolloutPlanRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.RolloutPlanRecord
	for _, p := range s.plans {
		out = append(out, p)
	}
	return out, nil
}

func (s *memStore) PutUpdateWindows(_ context.Context, w store.UpdateWindowsRecord, e store.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.windows == nil {
		s.windows = map[string]store.UpdateWindowsRecord{}
	}
	s.windows[w.Kind+":"+w.Owner] = w
	s.audit = append(s.audit, e)
	return nil
}

func (s *memStore) DeleteUpdateWindows(_ context.Context, kind, owner string, e store.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.windows[kind+":"+owner]; !ok {
		return store.ErrNotFound
	}
	delete(s.windows, kind+":"+owner)
	s.audit = append(s.audit, e)
	return nil
}

func (s *memStore) ListUpdateWindows(context.Context) ([]store.UpdateWindowsRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.UpdateWindowsRecord
	for _, w := range s.windows {
		out = append(out, w)
	}
	return out, nil
}

func (s *memStore) actions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.audit {
		out = append(out, e.Action)
	}
	return out
}

// announcer records what OnDesired was told.
type announcer struct {
	mu  sync.Mutex
	ids [][]string
}

func (a *announcer) on(ids []string) {
	a.mu.Lock()
	a.ids = append(a.ids, append([]string(nil), ids...))
	a.mu.Unlock()
}

func (a *announcer) take() [][]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.ids
	a.ids = nil
	return out
}

// t0 is a Monday noon, UTC.
var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func member(id, customer, ring string) Member {
	return Member{Subject: rolloutplan.Subject{ID: id, Customer: customer, Cloud: "aws", Region: "eu-west-1", Labels: map[string]string{"ring": ring}},
		Stack: "shop", Running: "1.0.0", Status: fleet.StatusHealthy}
}

// sixDeployments are two canaries, two of acme and two more.
func sixDeployments() *fakeFleet {
	return newFleet(member("d1", "initech", "canary"), member("d2", "hooli", "canary"), member("d3", "acme", "main"),
		member("d4", "acme", "main"), member("d5", "globex", "main"), member("d6", "umbrella", "main"))
}

func threeWaves() rolloutplan.Plan {
	return rolloutplan.Plan{Stack: "shop", Waves: []rolloutplan.Wave{
		{Name: "canary", Select: rolloutplan.Selection{Labels: map[string]string{"ring": "canary"}}, Bake: rolloutplan.Duration(30 * time.Minute)},
		{Name: "acme", Select: rolloutplan.Selection{Customers: []string{"acme"}}, Bake: rolloutplan.Duration(time.Hour)},
		{Name: "everyone", Select: rolloutplan.Selection{Rest: true}, Bake: rolloutplan.Duration(time.Hour)},
	}}
}

type rig struct {
	e     *Engine
	fleet *fakeFleet
	note  *fakeNotifier
	st    Store
	clk   *clock.Fake
	ann   *announcer
}

func newRig(t *testing.T, cfg rolloutplan.Config, f *fakeFleet, st Store, clk *clock.Fake) *rig {
	t.Helper()
	r := &rig{fleet: f, note: &fakeNotifier{}, st: st, clk: clk, ann: &announcer{}}
	e, err := New(cfg, f, f, r.note, st, Settings{Clock: clk, Rand: rand.NewChaCha8([32]byte{7}), OnDesired: r.ann.on})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.e = e
	return r
}

func (r *rig) step(t *testing.T) {
	t.Helper()
	if err := r.e.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) decide(id string) Decision { return r.decideWith(id, "9.9.9") }

func (r *rig) decideWith(id, latest string) Decision {
	m := r.fleet.get(id)
	m.Latest = latest
	return r.e.Decide(m, r.clk.Now())
}

func (f *fakeFleet) get(id string) Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.deps[id]
}

func (r *rig) state(t *testing.T, id string) State {
	t.Helper()
	s, err := r.e.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
