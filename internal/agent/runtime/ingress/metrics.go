package ingress

import (
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
)

// Metric names, as listed in docs/signals.md ("HTTP traffic").
const (
	// MetricDuration is the semantic conventions' server request duration.
	MetricDuration = "http.server.request.duration"
	// MetricRequests counts requests; the conventions have no counter of their
	// own (the histogram's count is one), but a plain counter is what most
	// backends chart.
	MetricRequests = "periscope.ingress.requests"
)

// Attribute names: the semantic conventions' where they exist.
const (
	AttrMethod      = "http.request.method"
	AttrRoute       = "http.route"
	AttrStatusCode  = "http.response.status_code"
	AttrStatusClass = "periscope.http.status_class"
	AttrServerAddr  = "server.address"
	AttrServerPort  = "server.port"
	AttrURLScheme   = "url.scheme"
	AttrIngressName = "periscope.ingress.name"
)

// durationBounds are the explicit bucket boundaries, in seconds, the semantic
// conventions recommend for http.server.request.duration.
var durationBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// boundsNanos are durationBounds as durations, so the hot path compares integers.
var boundsNanos = func() (b [len(durationBounds)]time.Duration) {
	for i, s := range durationBounds {
		b[i] = time.Duration(s * float64(time.Second))
	}
	return b
}()

// methods are the methods the semantic conventions know; any other is recorded
// as "_OTHER", so a client cannot grow the metrics by inventing methods.
var methods = [...]string{
	http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
	http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace, "QUERY", "_OTHER",
}

// methodIndex returns m's index in methods, the last one for an unknown method.
func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 2
	case http.MethodPost:
		return 6
	}
	for i, k := range methods[:len(methods)-1] {
		if m == k {
			return i
		}
	}
	return len(methods) - 1
}

// statusKey maps a status code to itself when net/http knows it (a bounded set
// of about sixty), else to the first code of its class with a flag saying the
// exact code is not recorded: an upstream answering with invented codes cannot
// grow the metrics either.
func statusKey(code int) (key int, exact bool) {
	if code < 100 || code > 599 {
		return 0, false
	}
	if http.StatusText(code) != "" {
		return code, true
	}
	return code / 100 * 100, false
}

// cellKey identifies one series: route × method × status.
type cellKey struct {
	route  uint16
	method uint8
	exact  bool
	status uint16
}

// cell holds one series' cumulative figures, updated with atomics only.
type cell struct {
	count   atomic.Uint64
	sumNano atomic.Int64
	buckets [len(durationBounds) + 1]atomic.Uint64
}

func (c *cell) record(d time.Duration) {
	i := 0
	for i < len(boundsNanos) && d > boundsNanos[i] {
		i++
	}
	c.buckets[i].Add(1)
	c.sumNano.Add(int64(d))
	c.count.Add(1)
}

// recorder keeps every series of one proxy. A series' cell is created once
// (sync.Map's Load is lock-free for keys already present) and then updated with
// atomic adds, so the hot path takes no lock.
type recorder struct {
	cells sync.Map // cellKey → *cell
}

func (r *recorder) record(route, method, code int, d time.Duration) {
	status, exact := statusKey(code)
	k := cellKey{route: uint16(route), method: uint8(method), exact: exact, status: uint16(status)}
	v, ok := r.cells.Load(k)
	if !ok {
		v, _ = r.cells.LoadOrStore(k, new(cell))
	}
	v.(*cell).record(d)
}

// statusClass names the class of a status code, "1xx" to "5xx", or "other"
// for a response without a valid code.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return string(rune('0'+code/100)) + "xx"
}

// series is what Collect labels each point with.
type series struct {
	name, addr, scheme string
	port               int64
	routes             *router
}

// collect appends the cumulative request counter and duration histogram of
// every series seen since start.
func (r *recorder) collect(s series, start, now time.Time, ms pmetric.MetricSlice) {
	type entry struct {
		k cellKey
		c *cell
	}
	var all []entry
	r.cells.Range(func(k, v any) bool {
		all = append(all, entry{k.(cellKey), v.(*cell)})
		return true
	})
	slices.SortFunc(all, func(a, b entry) int {
		if a.k.route != b.k.route {
			return int(a.k.route) - int(b.k.route)
		}
		if a.k.method != b.k.method {
			return int(a.k.method) - int(b.k.method)
		}
		return int(a.k.status) - int(b.k.status)
	})
	counts := runtime.Sum(ms, MetricRequests, "{request}", "Requests through the ingress proxy by route, method and status.", true)
	hm := ms.AppendEmpty()
	hm.SetName(MetricDuration)
	hm.SetUnit("s")
	hm.SetDescription("Duration of HTTP server requests through the ingress proxy, until the response is sent whole.")
	h := hm.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	startTS, nowTS := pcommon.NewTimestampFromTime(start), pcommon.NewTimestampFromTime(now)
	for _, e := range all {
		// Read the buckets first and count from them, so a request recorded
		// during Collect cannot make count and buckets disagree.
		var bs [len(durationBounds) + 1]uint64
		var n uint64
		for i := range bs {
			bs[i] = e.c.buckets[i].Load()
			n += bs[i]
		}
		sum := time.Duration(e.c.sumNano.Load()).Seconds()

		p := counts.AppendEmpty()
		p.SetStartTimestamp(startTS)
		p.SetTimestamp(nowTS)
		p.SetIntValue(int64(n))
		s.attributes(e.k, p.Attributes())

		hp := h.DataPoints().AppendEmpty()
		hp.SetStartTimestamp(startTS)
		hp.SetTimestamp(nowTS)
		hp.SetCount(n)
		hp.SetSum(sum)
		hp.ExplicitBounds().FromRaw(durationBounds[:])
		hp.BucketCounts().FromRaw(bs[:])
		s.attributes(e.k, hp.Attributes())
	}
}

func (s series) attributes(k cellKey, a pcommon.Map) {
	a.EnsureCapacity(8)
	a.PutStr(AttrIngressName, s.name)
	a.PutStr(AttrRoute, s.routes.name(int(k.route)))
	a.PutStr(AttrMethod, methods[k.method])
	if k.exact {
		a.PutInt(AttrStatusCode, int64(k.status))
	}
	a.PutStr(AttrStatusClass, statusClass(int(k.status)))
	a.PutStr(AttrServerAddr, s.addr)
	a.PutInt(AttrServerPort, s.port)
	a.PutStr(AttrURLScheme, s.scheme)
}
