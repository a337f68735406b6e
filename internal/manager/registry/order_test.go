package registry_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// mixedFleet has one deployment in each situation the problems-first order
// ranks, created in an order that is neither the ranking nor by id.
func mixedFleet(t *testing.T) *fixture {
	t.Helper()
	f := open(t, t.TempDir(), clock.NewFake(t0))
	ctx := context.Background()
	ids := []string{"a-healthy", "b-pending", "c-updating", "d-behind", "e-stale", "f-failed", "g-unhealthy", "h-healthy", "i-unhealthy"}
	var nds []registry.NewDeployment
	for _, id := range ids {
		nds = append(nds, registry.NewDeployment{ID: id, Customer: "cust-" + id[:1], Stack: "app"})
	}
	if _, err := f.reg.CreateDeployments(ctx, nds); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: "app", Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	checkin(t, f, "e-stale", registry.Report{Description: &registry.Description{Release: "2.0"}})
	f.clk.Advance(10 * time.Minute)
	on := func(rel string) *registry.Description { return &registry.Description{Release: rel} }
	checkin(t, f, "a-healthy", registry.Report{Description: on("2.0")})
	checkin(t, f, "h-healthy", registry.Report{Description: on("2.0")})
	checkin(t, f, "d-behind", registry.Report{Description: on("1.0")})
	checkin(t, f, "c-updating", registry.Report{Description: on("1.0"), Update: &fleet.UpdateState{Phase: fleet.UpdateApplying, Release: "2.0"}})
	checkin(t, f, "f-failed", registry.Report{Description: on("1.0"), Update: &fleet.UpdateState{Phase: fleet.UpdateFailed, Release: "2.0", Error: "hook exited 1"}})
	down := &fleet.Health{Reported: true, Healthy: false, LastError: "db down"}
	checkin(t, f, "g-unhealthy", registry.Report{Description: on("2.0"), Health: down})
	checkin(t, f, "i-unhealthy", registry.Report{Description: on("2.0"), Health: down})
	return f
}

func ids(vs []registry.View) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Deployment.ID
	}
	return out
}

var problemsFirst = []string{"g-unhealthy", "i-unhealthy", "f-failed", "e-stale", "d-behind", "c-updating", "b-pending", "a-healthy", "h-healthy"}

func TestProblemsFirstOrder(t *testing.T) {
	f := mixedFleet(t)
	l, err := f.reg.ListPage(fleet.Filter{}, registry.Page{Order: registry.OrderProblems})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(l.Items); !slices.Equal(got, problemsFirst) {
		t.Fatalf("problems first = %v\nwant %v", got, problemsFirst)
	}
	if l.Total != 9 || l.Offset != 0 || l.Prev != "" || l.Next != "" {
		t.Fatalf("whole list: total %d offset %d prev %q next %q; want 9, 0 and no cursors", l.Total, l.Offset, l.Prev, l.Next)
	}
	// The default order is still by id, and List honours the order asked.
	if items, total := f.reg.List(fleet.Filter{}, registry.Page{}); items[0].Deployment.ID != "a-healthy" || total != 9 {
		t.Fatalf("by id: first %s of %d", items[0].Deployment.ID, total)
	}
	if items, _ := f.reg.List(fleet.Filter{}, registry.Page{Order: registry.OrderProblems, Limit: 3}); !slices.Equal(ids(items), problemsFirst[:3]) {
		t.Fatalf("List in problems order = %v", ids(items))
	}
}

func TestProblemsFirstPagesForwardAndBack(t *testing.T) {
	f := mixedFleet(t)
	var got []string
	var pages []registry.Listing
	p := registry.Page{Order: registry.OrderProblems, Limit: 2}
	for {
		l, err := f.reg.ListPage(fleet.Filter{}, p)
		if err != nil {
			t.Fatal(err)
		}
		if l.Offset != len(got) || l.Total != 9 {
			t.Fatalf("page %d: offset %d of %d; want %d of 9", len(pages), l.Offset, l.Total, len(got))
		}
		got = append(got, ids(l.Items)...)
		pages = append(pages, l)
		if l.Next == "" {
			break
		}
		p.After = l.Next
	}
	if !slices.Equal(got, problemsFirst) || len(pages) != 5 {
		t.Fatalf("paged forward: %v in %d pages", got, len(pages))
	}
	// Back from the last page, each page is the one seen going forward.
	p = registry.Page{Order: registry.OrderProblems, Limit: 2, Before: pages[4].Prev}
	for i := 3; i >= 0; i-- {
		l, err := f.reg.ListPage(fleet.Filter{}, p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(l.Items), ids(pages[i].Items)) || l.Offset != pages[i].Offset || l.Next != pages[i].Next {
			t.Fatalf("back to page %d: %v offset %d next %q; want %v offset %d next %q", i,
				ids(l.Items), l.Offset, l.Next, ids(pages[i].Items), pages[i].Offset, pages[i].Next)
		}
		p.Before = l.Prev
	}
	if p.Before != "" {
		t.Fatalf("the first page has a previous page %q", p.Before)
	}
	// A deployment that changes status between pages does not repeat or vanish
	// from the pages after the cursor: the cursor holds its own position.
	checkin(t, f, "a-healthy", registry.Report{Health: &fleet.Health{Reported: true, Healthy: false}})
	l, err := f.reg.ListPage(fleet.Filter{}, registry.Page{Order: registry.OrderProblems, Limit: 2, After: pages[2].Next})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b-pending", "h-healthy"}; !slices.Equal(ids(l.Items), want) {
		t.Fatalf("after %q once a-healthy turned unhealthy: %v; want %v", pages[2].Next, ids(l.Items), want)
	}
}

func TestProblemsFirstWithAFilterAndBadCursors(t *testing.T) {
	f := mixedFleet(t)
	l, err := f.reg.ListPage(fleet.Filter{Behind: "any"}, registry.Page{Order: registry.OrderProblems, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	// f-failed is behind (update-failed) as well as failed, and failed ranks first.
	if got := ids(l.Items); !slices.Equal(got, []string{"f-failed"}) || l.Total != 2 || l.Next == "" {
		t.Fatalf("behind: %v of %d, next %q; want f-failed of 2 with a next page", got, l.Total, l.Next)
	}
	// The whole list, without a limit: by id, or problems first.
	if items, total := f.reg.List(fleet.Filter{Behind: "any"}, registry.Page{}); !slices.Equal(ids(items), []string{"d-behind", "f-failed"}) || total != 2 {
		t.Fatalf("all behind by id: %v of %d", ids(items), total)
	}
	if items, _ := f.reg.List(fleet.Filter{Behind: "any"}, registry.Page{Order: registry.OrderProblems}); !slices.Equal(ids(items), []string{"f-failed", "d-behind"}) {
		t.Fatalf("all behind, problems first: %v", ids(items))
	}
	for _, p := range []registry.Page{
		{Order: registry.OrderProblems, After: "acme"},
		{Order: registry.OrderProblems, After: "x.acme"},
		{Order: registry.OrderProblems, After: "1.a", Before: "2.b"},
		{Order: "newest"},
	} {
		if _, err := f.reg.ListPage(fleet.Filter{}, p); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%+v: err = %v; want ErrInvalid", p, err)
		}
	}
	// By id, Before pages back too.
	l, err = f.reg.ListPage(fleet.Filter{}, registry.Page{Limit: 2, Before: "c-updating"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(l.Items); !slices.Equal(got, []string{"a-healthy", "b-pending"}) || l.Offset != 0 || l.Prev != "" || l.Next != "b-pending" {
		t.Fatalf("before c-updating by id: %+v", l)
	}
}

func TestOverviewIsSummaryAdoptionAndPageInOnePass(t *testing.T) {
	f := mixedFleet(t)
	filter, page := fleet.Filter{Behind: "any"}, registry.Page{Order: registry.OrderProblems, Limit: 1}
	sum, ad, l, err := f.reg.Overview(filter, page)
	if err != nil {
		t.Fatal(err)
	}
	wantL, _ := f.reg.ListPage(filter, page)
	if !reflect.DeepEqual(sum, f.reg.Summary(fleet.Filter{})) || !reflect.DeepEqual(ad, f.reg.Adoption("")) || !reflect.DeepEqual(l, wantL) {
		t.Fatalf("overview differs from its parts:\n%+v\n%+v\n%+v", sum, ad, l)
	}
	if sum.Total != 9 || len(l.Items) != 1 || l.Total != 2 {
		t.Fatalf("overview: %d in the fleet, page of %d of %d", sum.Total, len(l.Items), l.Total)
	}
	if _, _, _, err := f.reg.Overview(fleet.Filter{}, registry.Page{Order: registry.OrderProblems, After: "bad"}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
}
