package rolloutplan

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func ptr[T any](v T) *T { return &v }

func TestThresholdArithmetic(t *testing.T) {
	cases := []struct {
		name        string
		th          Threshold
		count, size int
		pass        bool
	}{
		{"none allowed, none found", Threshold{Max: ptr(0)}, 0, 5, true},
		{"none allowed, one found", Threshold{Max: ptr(0)}, 1, 5, false},
		{"count at max", Threshold{Max: ptr(1)}, 1, 2, true},
		{"count past max", Threshold{Max: ptr(1)}, 2, 100, false},
		{"10% of 10 is 1", Threshold{MaxPercent: ptr(10.0)}, 1, 10, true},
		{"10% of 9 rounds down to 0", Threshold{MaxPercent: ptr(10.0)}, 1, 9, false},
		{"10% of 20 is 2", Threshold{MaxPercent: ptr(10.0)}, 2, 20, true},
		{"10% of 20 is not 3", Threshold{MaxPercent: ptr(10.0)}, 3, 20, false},
		{"max floors a small wave", Threshold{Max: ptr(1), MaxPercent: ptr(10.0)}, 1, 3, true},
		{"percent scales a large wave", Threshold{Max: ptr(1), MaxPercent: ptr(10.0)}, 10, 100, true},
		{"past both", Threshold{Max: ptr(1), MaxPercent: ptr(10.0)}, 11, 100, false},
		{"a fractional share, exactly at it", Threshold{MaxPercent: ptr(2.5)}, 1, 40, true},
		{"a fractional share, just under it", Threshold{MaxPercent: ptr(2.5)}, 1, 39, false},
		{"33.33% of 3 is 0", Threshold{MaxPercent: ptr(33.33)}, 1, 3, false},
		{"33.34% of 3 is 1", Threshold{MaxPercent: ptr(33.34)}, 1, 3, true},
		{"100% allows all", Threshold{MaxPercent: ptr(100.0)}, 7, 7, true},
		{"an empty wave passes even a zero gate", Threshold{Max: ptr(0)}, 0, 0, true},
		{"an empty wave under a share", Threshold{MaxPercent: ptr(0.0)}, 0, 0, true},
	}
	for _, c := range cases {
		if got := c.th.Allows(c.count, c.size); got != c.pass {
			t.Errorf("%s: %s, %d of %d: pass = %v, want %v", c.name, c.th, c.count, c.size, got, c.pass)
		}
	}
}

func TestThresholdSaysItself(t *testing.T) {
	if got := (Threshold{Max: ptr(1), MaxPercent: ptr(10.0)}).String(); got != "at most 1 or 10% of the wave" {
		t.Errorf("String() = %q", got)
	}
}

func TestDefaultGatesHaltAtTheFirstProblem(t *testing.T) {
	g := Wave{}.Effective()
	for name, th := range map[string]*Threshold{"regressed": g.Regressed, "failed_updates": g.FailedUpdates, "components_down": g.ComponentsDown} {
		if th == nil || th.Allows(1, 1000) {
			t.Errorf("default %s gate allows one offender", name)
		}
	}
	if g.Stale != nil {
		t.Error("default gates check stale deployments; a wave would halt on a customer's maintenance")
	}
	if got := (Wave{Gates: &Gates{}}).Effective(); got.Regressed != nil {
		t.Error("an empty gates section must check nothing")
	}
}

func subject(i int) Subject {
	return Subject{ID: fmt.Sprintf("dep-%05d", i), Customer: fmt.Sprintf("cust-%d", i%7), Cloud: []string{"aws", "gcp"}[i%2],
		Region: "eu-west-1", Labels: map[string]string{"ring": []string{"canary", "main", "main", "main"}[i%4]}}
}

func TestSelectionByAttributes(t *testing.T) {
	d := Subject{ID: "d1", Customer: "acme", Cloud: "aws", Region: "eu-west-1", Labels: map[string]string{"ring": "canary", "tier": "gold"}}
	for _, c := range []struct {
		sel  Selection
		want bool
	}{
		{Selection{Labels: map[string]string{"ring": "canary"}}, true},
		{Selection{Labels: map[string]string{"ring": "canary", "tier": "silver"}}, false},
		{Selection{Labels: map[string]string{"zone": ""}}, false},
		{Selection{Customers: []string{"globex", "acme"}}, true},
		{Selection{Customers: []string{"globex"}}, false},
		{Selection{Clouds: []string{"aws"}, Regions: []string{"us-east-1"}}, false},
		{Selection{Clouds: []string{"aws"}, Regions: []string{"eu-west-1"}}, true},
		{Selection{Rest: true}, true},
		{Selection{Percent: 100}, true},
	} {
		if got := c.sel.Matches(d, "r1", 0); got != c.want {
			t.Errorf("%+v selects %v, want %v", c.sel, got, c.want)
		}
	}
}

func TestPercentSelectionIsStableAndFair(t *testing.T) {
	sel := Selection{Percent: 10}
	picked := func(n int, rollout string, wave int) map[string]bool {
		out := map[string]bool{}
		for i := range n {
			if d := subject(i); sel.Matches(d, rollout, wave) {
				out[d.ID] = true
			}
		}
		return out
	}
	first := picked(10000, "ro-1", 1)
	if n := len(first); n < 900 || n > 1100 {
		t.Errorf("10%% of 10,000 picked %d", n)
	}
	// The same rollout picks the same deployments every time.
	again := picked(10000, "ro-1", 1)
	for id := range first {
		if !again[id] {
			t.Fatalf("%s picked once and not again", id)
		}
	}
	// The fleet grows by half: everyone picked stays picked, nobody else joins
	// from the first 10,000, and about 10% of the newcomers join.
	grown := picked(15000, "ro-1", 1)
	joined := 0
	for id := range grown {
		var i int
		fmt.Sscanf(id, "dep-%05d", &i)
		if i < 10000 && !first[id] {
			t.Fatalf("%s joined the wave when the fleet grew", id)
		}
		if i >= 10000 {
			joined++
		}
	}
	for id := range first {
		if !grown[id] {
			t.Fatalf("%s left the wave when the fleet grew", id)
		}
	}
	if joined < 400 || joined > 600 {
		t.Errorf("10%% of 5,000 newcomers: %d joined", joined)
	}
	// Another rollout, or another wave, picks other canaries.
	other, wave2 := picked(10000, "ro-2", 1), picked(10000, "ro-1", 2)
	same, same2 := 0, 0
	for id := range first {
		if other[id] {
			same++
		}
		if wave2[id] {
			same2++
		}
	}
	if same > 200 || same2 > 200 { // independent draws share about 1% (100)
		t.Errorf("another rollout shares %d and another wave %d of the same 1,000", same, same2)
	}
}

func TestPointIsUniform(t *testing.T) {
	var buckets [10]int
	for i := range 20000 {
		p := Point("r", 0, fmt.Sprint(i))
		if p < 0 || p >= 1 || math.IsNaN(p) {
			t.Fatalf("point %v out of [0,1)", p)
		}
		buckets[int(p*10)]++
	}
	for i, n := range buckets {
		if n < 1800 || n > 2200 {
			t.Errorf("decile %d holds %d of 20,000", i, n)
		}
	}
}

const goodPlans = `
plans:
  - stack: shop
    waves:
      - name: canary
        select: {labels: {ring: canary}}
        bake: 30m
        gates:
          regressed: {max: 0}
          failed_updates: {max: 1, max_percent: 10}
      - name: early
        select: {customers: [acme, globex], percent: 25}
        bake: 1h
      - name: everyone
        select: {rest: true}
        bake: 0s
windows:
  customers:
    acme: ["Sat 02:00-06:00 Europe/Berlin"]
`

func TestValidPlanLoads(t *testing.T) {
	var c Config
	if err := yaml.Unmarshal([]byte(goodPlans), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	w := c.Plans[0].Waves[0]
	if w.Gates.FailedUpdates.Allowed(30) != 3 || w.Effective().ComponentsDown != nil {
		t.Errorf("canary gates: %+v", w.Gates)
	}
	if c.Plans[0].Waves[1].Gates != nil || c.Plans[0].Waves[1].Effective().Regressed == nil {
		t.Error("a wave without gates must take the defaults")
	}
}

func TestValidateReportsEveryProblemWithItsPath(t *testing.T) {
	c := Config{Plans: []Plan{
		{Stack: "shop", Waves: []Wave{
			{Name: "a", Select: Selection{}},
			{Name: "a", Select: Selection{Rest: true, Percent: 10}, Bake: -1},
			{Name: "", Select: Selection{Percent: 120}, Gates: &Gates{Regressed: &Threshold{}, Stale: &Threshold{Max: ptr(-1), MaxPercent: ptr(1.234)}}},
		}},
		{Stack: "shop"},
		{Waves: []Wave{{Name: "x", Select: Selection{Customers: []string{""}}}}},
	}}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"plans[0].waves[0].select: select something",
		"plans[0].waves[1].name: \"a\" is used twice",
		"plans[0].waves[1].select.rest: takes every deployment left, so it stands alone",
		"plans[0].waves[1].select.rest: only the last wave can take the rest",
		"plans[0].waves[1].bake: -1ns is not between 0",
		"plans[0].waves[2].name: must be set",
		"plans[0].waves[2].select.percent: 120 is not a share between 0 and 100",
		"plans[0].waves[2].gates.regressed: set max, max_percent or both",
		"plans[0].waves[2].gates.stale.max: must not be negative",
		"plans[0].waves[2].gates.stale.max_percent: 1.234 has more than two decimals",
		"plans[1].stack: stack \"shop\" has two plans",
		"plans[1].waves: a plan needs at least one wave",
		"plans[2].stack: must be set",
		"plans[2].waves[0].select.customers: an entry is empty",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}
