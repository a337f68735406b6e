// Package runtimeview is the read model of a deployment's runtime state: its
// components from the agent's OpAMP health and the newest figures of its
// runtime signals (sources, ingress traffic, queues, storage) from the
// telemetry store, in one document that the REST API and the dashboard both
// serve. It ingests nothing: everything comes from what is already stored.
package runtimeview

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// Store is what the runtime view needs of the telemetry store.
type Store interface {
	Runtime(ctx context.Context, q telquery.RuntimeQuery) (telquery.RuntimeMetrics, error)
}

// Runtime is a deployment's latest runtime state.
type Runtime struct {
	Deployment string    `json:"deployment"`
	Since      time.Time `json:"since"`
	Until      time.Time `json:"until"`
	// Components are the agent's components from its OpAMP health, the ones
	// down first, then by name.
	Components []Component `json:"components"`
	// Sources are the runtime sources by periscope.source.up, down first.
	Sources []Source `json:"sources"`
	// Ingress is the traffic per ingress proxy and route over the window.
	Ingress []Route `json:"ingress"`
	// IngressTotal is the traffic of every ingress proxy and route together
	// (its Ingress and Route empty); absent when Ingress is empty.
	IngressTotal *Route  `json:"ingress_total,omitempty"`
	Queues       []Queue `json:"queues"`
	Storage      Storage `json:"storage"`
	// Truncated is true when the deployment had more series than one answer
	// holds (telquery.MaxRuntimeSeries); the figures are then incomplete.
	Truncated bool `json:"truncated,omitempty"`
}

// Empty reports whether the deployment sent no runtime signals in the window
// and its agent reported no components.
func (r Runtime) Empty() bool {
	s := r.Storage
	return len(r.Components) == 0 && len(r.Sources) == 0 && len(r.Ingress) == 0 && len(r.Queues) == 0 &&
		len(s.Buckets) == 0 && len(s.Redis) == 0 && len(s.PostgreSQL) == 0 && len(s.Filesystems) == 0
}

// Component is one component the agent runs or watches (a supervised replica,
// a runtime source).
type Component struct {
	Name      string `json:"name"`
	Healthy   bool   `json:"healthy"`
	Status    string `json:"status,omitempty"`
	Restarts  int64  `json:"restarts"`
	LastError string `json:"last_error,omitempty"`
	// Since is when the manager first saw the component in this health and
	// status; zero when unknown.
	Since time.Time `json:"since,omitzero"`
}

// Source is one runtime source's newest periscope.source.up.
type Source struct {
	Name  string    `json:"name"`
	Kind  string    `json:"kind"`
	Up    bool      `json:"up"`
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
}

// Route is the traffic of one ingress proxy's route over the window: the
// increase of the proxy's cumulative figures from the newest point before the
// window (or from zero when there is none: the proxy started within the window)
// to the newest in it.
type Route struct {
	Ingress  string `json:"ingress"`
	Route    string `json:"route"`
	Requests int64  `json:"requests"`
	// Classes counts requests per status class ("2xx", "5xx", …).
	Classes map[string]int64 `json:"classes"`
	// MeanMS is the mean duration from the http.server.request.duration
	// histogram's count and sum.
	MeanMS float64 `json:"mean_ms"`
	// P50MS, P95MS and P99MS are duration percentiles estimated from the
	// histogram's buckets over the window, interpolated inside the bucket
	// (telquery.Histogram.Quantile): as exact as the buckets are narrow. They
	// are absent when the window has no requests, or its points carry no
	// buckets (stored before the manager kept them) or buckets of different
	// bounds.
	P50MS *float64 `json:"p50_ms,omitempty"`
	P95MS *float64 `json:"p95_ms,omitempty"`
	P99MS *float64 `json:"p99_ms,omitempty"`
}

// Queue is one queue (stream, key or queue) or one of its consumers or groups;
// a figure the source does not report is absent.
type Queue struct {
	System      string   `json:"system"`
	Destination string   `json:"destination"`
	Group       string   `json:"group,omitempty"`
	Depth       *float64 `json:"depth,omitempty"`
	Bytes       *float64 `json:"bytes,omitempty"`
	OldestAgeS  *float64 `json:"oldest_age_seconds,omitempty"`
	Consumers   *float64 `json:"consumers,omitempty"`
	Unacked     *float64 `json:"unacked,omitempty"`
	Pending     *float64 `json:"pending,omitempty"`
	AckPending  *float64 `json:"ack_pending,omitempty"`
}

// Storage is how full the deployment's storage is, per source.
type Storage struct {
	Buckets     []Bucket     `json:"buckets"`
	Redis       []Redis      `json:"redis"`
	PostgreSQL  []Database   `json:"postgresql"`
	Filesystems []Filesystem `json:"filesystems"`
}

// Bucket is an S3-compatible bucket, or one prefix of it.
type Bucket struct {
	Source  string  `json:"source"`
	Bucket  string  `json:"bucket"`
	Prefix  string  `json:"prefix,omitempty"`
	Objects float64 `json:"objects"`
	Bytes   float64 `json:"bytes"`
	// Partial is true when the listing was cut: the figures are lower bounds.
	Partial bool `json:"partial,omitempty"`
}

// Redis is one Redis server's memory and keys.
type Redis struct {
	Source      string   `json:"source"`
	MemoryUsed  float64  `json:"memory_used_bytes"`
	MemoryLimit *float64 `json:"memory_limit_bytes,omitempty"`
	// Keys per database index.
	Keys map[string]float64 `json:"keys"`
}

// Database is one PostgreSQL database with its largest tables, largest first.
type Database struct {
	Source   string  `json:"source"`
	Database string  `json:"database"`
	Bytes    float64 `json:"bytes"`
	Tables   []Table `json:"tables"`
}

// Table is one PostgreSQL table; Rows is absent when never vacuumed or analysed.
type Table struct {
	Name  string   `json:"name"`
	Bytes float64  `json:"bytes"`
	Rows  *float64 `json:"rows,omitempty"`
}

// Filesystem is one configured path's volume.
type Filesystem struct {
	Source      string  `json:"source"`
	Path        string  `json:"path"`
	Mountpoint  string  `json:"mountpoint"`
	Used        float64 `json:"used_bytes"`
	Free        float64 `json:"free_bytes"`
	Reserved    float64 `json:"reserved_bytes"`
	Limit       float64 `json:"limit_bytes"`
	Utilization float64 `json:"utilization"`
}

// Load reads the deployment's runtime signals from st and combines them with
// its health.
func Load(ctx context.Context, st Store, h fleet.Health, q telquery.RuntimeQuery) (Runtime, error) {
	m, err := st.Runtime(ctx, q)
	if err != nil {
		return Runtime{}, fmt.Errorf("runtime state of %s: %w", q.Deployment, err)
	}
	return Build(q.Deployment, h, m), nil
}

// Build combines a deployment's health and runtime series into its document.
func Build(deployment string, h fleet.Health, m telquery.RuntimeMetrics) Runtime {
	r := Runtime{Deployment: deployment, Since: m.Since, Until: m.Until, Truncated: m.Truncated,
		Components: []Component{}, Sources: []Source{}, Ingress: []Route{}, Queues: []Queue{},
		Storage: Storage{Buckets: []Bucket{}, Redis: []Redis{}, PostgreSQL: []Database{}, Filesystems: []Filesystem{}}}
	for name, c := range h.Components {
		r.Components = append(r.Components, Component{Name: name, Healthy: c.Healthy, Status: c.Status, Restarts: c.Restarts, LastError: c.LastError, Since: c.Since})
	}
	slices.SortFunc(r.Components, func(a, b Component) int {
		if a.Healthy != b.Healthy {
			return boolOrder(a.Healthy, b.Healthy)
		}
		return cmp.Compare(a.Name, b.Name)
	})
	b := builder{r: &r, routes: map[[2]string]*routeAcc{}, queues: map[[3]string]*Queue{}, buckets: map[[3]string]*Bucket{},
		redis: map[string]*Redis{}, dbs: map[[2]string]*Database{}, fss: map[[2]string]*Filesystem{}}
	for _, s := range m.Series {
		b.add(s)
	}
	b.finish()
	return r
}

// boolOrder sorts false (down) before true.
func boolOrder(a, b bool) int {
	if a == b {
		return 0
	}
	if !a {
		return -1
	}
	return 1
}

type routeAcc struct {
	Route
	histCount, histSum float64
	hasCounter         bool
	histClasses        map[string]int64
	// hist merges the window's bucket increases of the route's series; noHist
	// says some series had none to merge, so percentiles would leave it out.
	hist   telquery.Histogram
	noHist bool
}

// latency sets r's mean and percentiles from a's histogram figures.
func (a *routeAcc) latency() {
	if a.histCount > 0 {
		a.MeanMS = ms(a.histSum / a.histCount)
	}
	if a.noHist {
		return
	}
	for _, p := range []struct {
		q   float64
		out **float64
	}{{0.5, &a.P50MS}, {0.95, &a.P95MS}, {0.99, &a.P99MS}} {
		if v, ok := a.hist.Quantile(p.q); ok {
			*p.out = ptr(ms(v))
		}
	}
}

// ms converts seconds, the unit of http.server.request.duration, to
// milliseconds rounded to the microsecond.
func ms(seconds float64) float64 { return math.Round(seconds*1e6) / 1e3 }

type builder struct {
	r       *Runtime
	routes  map[[2]string]*routeAcc
	queues  map[[3]string]*Queue
	buckets map[[3]string]*Bucket
	redis   map[string]*Redis
	dbs     map[[2]string]*Database
	fss     map[[2]string]*Filesystem
}

func str(s telquery.RuntimeSeries, k string) string {
	switch v := s.Attrs[k].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// increase is a cumulative series' increase over the window; a value below its
// baseline means the agent (and its counters) restarted, so the whole value is
// the increase.
func increase(last, base float64, hasBase bool) float64 {
	if !hasBase || last < base {
		return last
	}
	return last - base
}

func ptr(v float64) *float64 { return &v }

func (b *builder) add(s telquery.RuntimeSeries) {
	source := str(s, "periscope.source.name")
	switch s.Name {
	case "periscope.source.up":
		b.r.Sources = append(b.r.Sources, Source{Name: source, Kind: str(s, "periscope.source.kind"), Up: s.Value == 1,
			Error: str(s, "periscope.source.error"), Time: s.Time})
	case "periscope.ingress.requests", "http.server.request.duration":
		name := str(s, "periscope.ingress.name")
		if name == "" {
			return // the application's own HTTP metrics, not an ingress proxy's
		}
		k := [2]string{name, str(s, "http.route")}
		a := b.routes[k]
		if a == nil {
			a = &routeAcc{Route: Route{Ingress: k[0], Route: k[1], Classes: map[string]int64{}}, histClasses: map[string]int64{}}
			b.routes[k] = a
		}
		class := str(s, "periscope.http.status_class")
		if s.Name == "periscope.ingress.requests" {
			n := int64(math.Round(increase(s.Value, s.BaseValue, s.HasBase)))
			a.hasCounter = true
			a.Requests += n
			a.Classes[class] += n
			return
		}
		n := increase(float64(s.Count), float64(s.BaseCount), s.HasBase)
		sum := s.Sum
		if s.HasBase && s.Count >= s.BaseCount {
			sum -= s.BaseSum
		}
		a.histCount += n
		a.histSum += sum
		a.histClasses[class] += int64(n)
		if n == 0 {
			return // nothing in the window: its buckets, or lack of them, change nothing
		}
		if s.Histogram == nil {
			a.noHist = true
			return
		}
		var base telquery.Histogram
		if s.BaseHistogram != nil {
			base = *s.BaseHistogram
		}
		if inc, ok := telquery.Increase(*s.Histogram, base, s.HasBase); !ok || !a.hist.Add(inc) {
			a.noHist = true
		}
	case "periscope.queue.depth", "periscope.queue.bytes", "periscope.queue.oldest_age", "periscope.queue.consumers",
		"periscope.queue.unacked", "periscope.queue.consumer.pending", "periscope.queue.consumer.ack_pending", "periscope.queue.delayed":
		k := [3]string{str(s, "messaging.system"), str(s, "messaging.destination.name"), str(s, "messaging.consumer.group.name")}
		q := b.queues[k]
		if q == nil {
			q = &Queue{System: k[0], Destination: k[1], Group: k[2]}
			b.queues[k] = q
		}
		v := ptr(s.Value)
		switch s.Name {
		case "periscope.queue.depth":
			q.Depth = v
		case "periscope.queue.bytes":
			q.Bytes = v
		case "periscope.queue.oldest_age":
			q.OldestAgeS = v
		case "periscope.queue.consumers":
			q.Consumers = v
		case "periscope.queue.unacked":
			q.Unacked = v
		case "periscope.queue.consumer.pending":
			q.Pending = v
		case "periscope.queue.consumer.ack_pending":
			q.AckPending = v
		}
	case "periscope.storage.objects", "periscope.storage.size":
		k := [3]string{source, str(s, "aws.s3.bucket"), str(s, "periscope.storage.prefix")}
		bk := b.buckets[k]
		if bk == nil {
			bk = &Bucket{Source: k[0], Bucket: k[1], Prefix: k[2]}
			b.buckets[k] = bk
		}
		if p, _ := s.Attrs["periscope.partial"].(bool); p {
			bk.Partial = true
		}
		if s.Name == "periscope.storage.objects" {
			bk.Objects = s.Value
		} else {
			bk.Bytes = s.Value
		}
	case "periscope.redis.memory.used", "periscope.redis.memory.limit", "periscope.redis.keys":
		rd := b.redis[source]
		if rd == nil {
			rd = &Redis{Source: source, Keys: map[string]float64{}}
			b.redis[source] = rd
		}
		switch s.Name {
		case "periscope.redis.memory.used":
			rd.MemoryUsed = s.Value
		case "periscope.redis.memory.limit":
			rd.MemoryLimit = ptr(s.Value)
		default:
			rd.Keys[str(s, "db.namespace")] = s.Value
		}
	case "periscope.postgresql.database.size", "periscope.postgresql.table.size", "periscope.postgresql.table.rows":
		k := [2]string{source, str(s, "db.namespace")}
		db := b.dbs[k]
		if db == nil {
			db = &Database{Source: k[0], Database: k[1], Tables: []Table{}}
			b.dbs[k] = db
		}
		if s.Name == "periscope.postgresql.database.size" {
			db.Bytes = s.Value
			return
		}
		name := str(s, "db.collection.name")
		i := slices.IndexFunc(db.Tables, func(t Table) bool { return t.Name == name })
		if i < 0 {
			db.Tables = append(db.Tables, Table{Name: name})
			i = len(db.Tables) - 1
		}
		if s.Name == "periscope.postgresql.table.size" {
			db.Tables[i].Bytes = s.Value
		} else {
			db.Tables[i].Rows = ptr(s.Value)
		}
	case "system.filesystem.usage", "system.filesystem.limit", "system.filesystem.utilization":
		path := str(s, "periscope.filesystem.path")
		if path == "" {
			return // a host metrics receiver's, not the agent's runtime source
		}
		k := [2]string{source, path}
		fs := b.fss[k]
		if fs == nil {
			fs = &Filesystem{Source: k[0], Path: k[1], Mountpoint: str(s, "system.filesystem.mountpoint")}
			b.fss[k] = fs
		}
		switch s.Name {
		case "system.filesystem.limit":
			fs.Limit = s.Value
		case "system.filesystem.utilization":
			fs.Utilization = s.Value
		default:
			switch str(s, "system.filesystem.state") {
			case "used":
				fs.Used = s.Value
			case "free":
				fs.Free = s.Value
			case "reserved":
				fs.Reserved = s.Value
			}
		}
	}
}

func (b *builder) finish() {
	r := b.r
	slices.SortFunc(r.Sources, func(a, b Source) int {
		if a.Up != b.Up {
			return boolOrder(a.Up, b.Up)
		}
		return cmp.Compare(a.Name, b.Name)
	})
	total := routeAcc{Route: Route{Classes: map[string]int64{}}}
	for _, a := range b.routes {
		if !a.hasCounter {
			// Only the histogram arrived: its count is the same figure.
			a.Requests = int64(math.Round(a.histCount))
			a.Classes = a.histClasses
		}
		a.latency()
		r.Ingress = append(r.Ingress, a.Route)
		total.Requests += a.Requests
		for c, n := range a.Classes {
			total.Classes[c] += n
		}
		total.histCount += a.histCount
		total.histSum += a.histSum
		// A route whose requests have no buckets (none stored, or only its
		// counter arrived) would be missing from the total's percentiles.
		if a.noHist || (a.Requests > 0 && a.hist.Total() == 0) || (a.hist.Total() > 0 && !total.hist.Add(a.hist)) {
			total.noHist = true
		}
	}
	if len(b.routes) > 0 {
		total.latency()
		r.IngressTotal = &total.Route
	}
	slices.SortFunc(r.Ingress, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Ingress, b.Ingress), cmp.Compare(a.Route, b.Route))
	})
	for _, q := range b.queues {
		r.Queues = append(r.Queues, *q)
	}
	slices.SortFunc(r.Queues, func(a, b Queue) int {
		return cmp.Or(cmp.Compare(a.System, b.System), cmp.Compare(a.Destination, b.Destination), cmp.Compare(a.Group, b.Group))
	})
	for _, bk := range b.buckets {
		r.Storage.Buckets = append(r.Storage.Buckets, *bk)
	}
	slices.SortFunc(r.Storage.Buckets, func(a, b Bucket) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Bucket, b.Bucket), cmp.Compare(a.Prefix, b.Prefix))
	})
	for _, rd := range b.redis {
		r.Storage.Redis = append(r.Storage.Redis, *rd)
	}
	slices.SortFunc(r.Storage.Redis, func(a, b Redis) int { return cmp.Compare(a.Source, b.Source) })
	for _, db := range b.dbs {
		slices.SortFunc(db.Tables, func(a, b Table) int { return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.Name, b.Name)) })
		r.Storage.PostgreSQL = append(r.Storage.PostgreSQL, *db)
	}
	slices.SortFunc(r.Storage.PostgreSQL, func(a, b Database) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Database, b.Database))
	})
	for _, fs := range b.fss {
		r.Storage.Filesystems = append(r.Storage.Filesystems, *fs)
	}
	slices.SortFunc(r.Storage.Filesystems, func(a, b Filesystem) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Path, b.Path))
	})
}
