package registry

import (
	"container/heap"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
)

// Order is how a list of deployments is sorted.
type Order string

// The orders of List and ListPage.
const (
	// OrderID sorts by id; it is the default.
	OrderID Order = ""
	// OrderProblems puts problems first: unhealthy, failed, stale, then
	// deployments behind their desired release, then updating, pending and
	// healthy ones; by id within each. The fleet page's order.
	OrderProblems Order = "problems"
)

// ParseOrder reads an order's name ("" or "id" for OrderID, "problems").
func ParseOrder(s string) (Order, error) {
	switch s {
	case "", "id":
		return OrderID, nil
	case string(OrderProblems):
		return OrderProblems, nil
	}
	return "", fmt.Errorf("order %q: want id or problems: %w", s, ErrInvalid)
}

// Rank is a deployment's place in OrderProblems: the lower, the sooner it is
// listed. A status with a problem outranks being behind, which outranks the rest.
func Rank(e fleet.Evaluation) int {
	switch e.Status {
	case fleet.StatusUnhealthy:
		return 0
	case fleet.StatusFailed:
		return 1
	case fleet.StatusStale:
		return 2
	}
	if e.Behind != "" {
		return 3
	}
	switch e.Status {
	case fleet.StatusUpdating:
		return 4
	case fleet.StatusPending:
		return 5
	}
	return 6
}

// Cursor is the position of v in order o, for Page.After and Page.Before: the
// id in OrderID; the rank and the id ("0.acme-prod") in OrderProblems, so the
// next page starts where this one ended even if v's status changed since.
func Cursor(v View, o Order) string {
	if o == OrderProblems {
		return strconv.Itoa(Rank(v.Evaluation)) + "." + v.Deployment.ID
	}
	return v.Deployment.ID
}

// key is a deployment's sort key: its rank (always 0 in OrderID) and its id.
type key struct {
	rank int
	id   string
}

func (k key) less(o key) bool { return k.rank < o.rank || k.rank == o.rank && k.id < o.id }

func parseCursor(s string, o Order) (key, error) {
	if o != OrderProblems {
		return key{id: s}, nil
	}
	r, id, ok := strings.Cut(s, ".")
	n, err := strconv.Atoi(r)
	if !ok || err != nil || n < 0 || id == "" {
		return key{}, fmt.Errorf("cursor %q: not a position in the problems-first order: %w", s, ErrInvalid)
	}
	return key{rank: n, id: id}, nil
}

// Listing is one page of a sorted list of deployments.
type Listing struct {
	Items []View
	// Total is how many deployments match in all; Offset how many of them sort
	// before the first item (so the page shows Offset+1 to Offset+len(Items)).
	Total, Offset int
	// Prev and Next are the cursors of the pages before and after this one, ""
	// at either end of the list.
	Prev, Next string
}

// ListPage returns the deployments matching f, sorted by p.Order, one page at
// a time. A cursor that is not one of p.Order's is ErrInvalid. It reads the
// fleet once: at 100,000 deployments a page in OrderProblems keeps only the
// best p.Limit candidates in a heap while it counts the rest.
func (r *Registry) ListPage(f fleet.Filter, p Page) (Listing, error) {
	pg, err := newPager(p)
	if err != nil {
		return Listing{}, err
	}
	r.refresh()
	now := r.clk.Now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	if p.Order == OrderID && f.IsZero() {
		return r.listByIDLocked(p, now), nil
	}
	for _, e := range r.order {
		e.mu.Lock()
		ev := e.kept.ev
		match := f.Match(&e.d, ev)
		e.mu.Unlock()
		if match {
			pg.add(e, ev)
		}
	}
	return pg.listingLocked(r, now), nil
}

// Overview is what the fleet page reads, in one pass over the fleet: the
// Summary and Adoption of every deployment, and ListPage(f, p).
func (r *Registry) Overview(f fleet.Filter, p Page) (Summary, []Adoption, Listing, error) {
	pg, err := newPager(p)
	if err != nil {
		return Summary{}, nil, Listing{}, err
	}
	r.refresh()
	now := r.clk.Now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	sum := r.counts.summary()
	ad := r.newAdopterLocked()
	for _, e := range r.order {
		e.mu.Lock()
		ev := e.kept.ev
		ad.add(&e.d, ev)
		match := f.Match(&e.d, ev)
		e.mu.Unlock()
		if match {
			pg.add(e, ev)
		}
	}
	return sum, ad.resultLocked(r, ""), pg.listingLocked(r, now), nil
}

// pager picks one page of a sorted list out of the deployments it is shown,
// counting them all.
type pager struct {
	p             Page
	after, before *key
	limit         int
	// keep holds the page's candidates: after a cursor (or from the start) the
	// smallest keys, as a max-heap; before a cursor the largest, as a min-heap.
	keep *candidates
	// ahead counts the matches sorting before the page's window.
	total, ahead int
}

func newPager(p Page) (*pager, error) {
	pg := &pager{p: p, limit: p.Limit}
	if p.After != "" {
		k, err := parseCursor(p.After, p.Order)
		if err != nil {
			return nil, err
		}
		pg.after = &k
	}
	if p.Before != "" {
		k, err := parseCursor(p.Before, p.Order)
		if err != nil {
			return nil, err
		}
		pg.before = &k
	}
	if pg.after != nil && pg.before != nil {
		return nil, fmt.Errorf("a page is either after a cursor or before one, not both: %w", ErrInvalid)
	}
	if p.Order != OrderID && p.Order != OrderProblems {
		return nil, fmt.Errorf("order %q: %w", p.Order, ErrInvalid)
	}
	pg.keep = &candidates{max: pg.before == nil}
	return pg, nil
}

// add considers a deployment that matches the filter.
func (pg *pager) add(e *entry, ev fleet.Evaluation) {
	pg.total++
	k := key{id: e.d.ID}
	if pg.p.Order == OrderProblems {
		k.rank = Rank(ev)
	}
	switch {
	case pg.after != nil && !pg.after.less(k):
		pg.ahead++
		return
	case pg.before != nil && !k.less(*pg.before):
		return
	case pg.before != nil:
		pg.ahead++ // counted back out for the items kept
	}
	c, keep := candidate{k, e}, pg.keep
	switch {
	case pg.limit <= 0:
		// The whole list: no page to choose, so no heap; sorted at the end.
		keep.items = append(keep.items, c)
	case keep.Len() < pg.limit:
		heap.Push(keep, c)
	case keep.better(c, keep.items[0]):
		keep.items[0] = c
		heap.Fix(keep, 0)
	}
}

// listingLocked is the page; the caller holds r.mu.
func (pg *pager) listingLocked(r *Registry, now time.Time) Listing {
	items := pg.keep.items
	if pg.p.Order != OrderID || pg.limit > 0 {
		// r.order is by id already: a whole list by id needs no sort.
		sort.Slice(items, func(i, j int) bool { return items[i].k.less(items[j].k) })
	}
	out := Listing{Total: pg.total, Offset: pg.ahead, Items: make([]View, len(items))}
	if pg.before != nil {
		out.Offset = pg.ahead - len(items)
	}
	for i, c := range items {
		out.Items[i] = r.viewLocked(c.e, now)
	}
	if len(out.Items) > 0 {
		if out.Offset > 0 {
			out.Prev = Cursor(out.Items[0], pg.p.Order)
		}
		if out.Offset+len(out.Items) < pg.total {
			out.Next = Cursor(out.Items[len(out.Items)-1], pg.p.Order)
		}
	}
	return out
}

// listByIDLocked pages the whole fleet by id, which r.order already is: no
// deployment is evaluated but those on the page.
func (r *Registry) listByIDLocked(p Page, now time.Time) Listing {
	n := len(r.order)
	limit := p.Limit
	if limit <= 0 {
		limit = n
	}
	from := 0
	switch {
	case p.After != "":
		from = sort.Search(n, func(i int) bool { return r.order[i].d.ID > p.After })
	case p.Before != "":
		from = max(0, sort.Search(n, func(i int) bool { return r.order[i].d.ID >= p.Before })-limit)
	}
	to := min(n, from+limit)
	if p.Before != "" {
		to = min(to, sort.Search(n, func(i int) bool { return r.order[i].d.ID >= p.Before }))
	}
	out := Listing{Total: n, Offset: from, Items: make([]View, 0, to-from)}
	for _, e := range r.order[from:to] {
		out.Items = append(out.Items, r.viewLocked(e, now))
	}
	if len(out.Items) > 0 {
		if from > 0 {
			out.Prev = out.Items[0].Deployment.ID
		}
		if to < n {
			out.Next = out.Items[len(out.Items)-1].Deployment.ID
		}
	}
	return out
}

type candidate struct {
	k key
	e *entry
}

// candidates is a heap of the best candidates seen so far, with the worst on
// top so a better one replaces it: a max-heap of keys when the page takes the
// smallest keys, a min-heap when it takes the largest.
type candidates struct {
	max   bool
	items []candidate
}

// better reports whether a belongs on the page rather than b.
func (c *candidates) better(a, b candidate) bool {
	if c.max {
		return a.k.less(b.k)
	}
	return b.k.less(a.k)
}

func (c *candidates) Len() int           { return len(c.items) }
func (c *candidates) Less(i, j int) bool { return c.better(c.items[j], c.items[i]) }
func (c *candidates) Swap(i, j int)      { c.items[i], c.items[j] = c.items[j], c.items[i] }
func (c *candidates) Push(x any)         { c.items = append(c.items, x.(candidate)) }
func (c *candidates) Pop() any {
	x := c.items[len(c.items)-1]
	c.items = c.items[:len(c.items)-1]
	return x
}
