package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// fleet is the simulated fleet: who runs what, where, and which release when.
// Everything comes from one seeded source, so a run can be repeated exactly.
type fleet struct {
	deps     []*deployment
	releases []string
	start    time.Time
	end      time.Time
}

type deployment struct {
	id, customer, cloud, region, platform, stack, namespace string
	// weight is the deployment's share of the fleet's traffic: sizes differ by an
	// order of magnitude in a real fleet, so a few deployments dominate.
	weight   float64
	services []*service
	// switches[k] is when the deployment moved from release k to k+1.
	switches []time.Time
	// badRelease is a release that made this deployment worse (more errors,
	// slower), or -1: what a release comparison is for.
	badRelease int
}

type service struct {
	name   string
	lang   string
	routes []route
	// replicas[k] are the replica (pod) names while release k runs: a rollout
	// replaces the pods, so each release has its own.
	replicas [][]string
}

type route struct {
	method, path, function string
	// medianMS is the route's typical latency; durations spread log-normally
	// around it.
	medianMS float64
}

var (
	customerWords = []string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne",
		"soylent", "aperture", "massive", "oscorp", "vandelay", "pied-piper", "dunder", "monarch", "gringotts", "nakatomi",
		"prestige", "sterling", "vehement", "krusty", "bluth", "duff", "ollivander", "zorg", "tricell", "abstergo"}
	envs   = []string{"prod", "staging", "eu", "us", "apac", "dr", "canary"}
	clouds = []struct {
		name, platform string
		regions        []string
		share          float64
	}{
		{"aws", "aws_eks", []string{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"}, 0.5},
		{"gcp", "gcp_kubernetes_engine", []string{"us-central1", "europe-west4", "asia-northeast1"}, 0.3},
		{"azure", "azure_aks", []string{"eastus", "westeurope", "uksouth"}, 0.2},
	}
	stacks = map[string][]string{
		"shop":      {"gateway", "checkout", "payments", "catalog", "inventory", "cart", "shipping", "notifications"},
		"fintech":   {"gateway", "accounts", "ledger", "payments", "fraud", "statements", "auth", "notifications"},
		"logistics": {"gateway", "orders", "routing", "tracking", "fleet", "billing", "auth"},
		"saas":      {"gateway", "auth", "users", "projects", "search", "billing", "reports", "webhooks"},
	}
	stackNames = []string{"shop", "fintech", "logistics", "saas"}
	languages  = []string{"go", "java", "python", "nodejs", "dotnet"}
	// resources are the nouns routes are made of, per service.
	resources = map[string][]string{
		"gateway": {"session", "config", "health"}, "checkout": {"checkout", "quote", "coupon"},
		"payments": {"payment", "refund", "method"}, "catalog": {"product", "category", "price"},
		"inventory": {"stock", "reservation", "warehouse"}, "cart": {"cart", "item"},
		"shipping": {"shipment", "label", "rate"}, "notifications": {"notification", "template", "subscription"},
		"accounts": {"account", "holder", "limit"}, "ledger": {"entry", "balance", "journal"},
		"fraud": {"score", "rule", "case"}, "statements": {"statement", "export"},
		"auth": {"token", "login", "mfa"}, "orders": {"order", "line", "status"},
		"routing": {"route", "plan", "stop"}, "tracking": {"event", "position", "eta"},
		"fleet": {"vehicle", "driver", "schedule"}, "billing": {"invoice", "usage", "plan"},
		"users": {"user", "team", "invite"}, "projects": {"project", "member", "setting"},
		"search": {"query", "index", "suggestion"}, "reports": {"report", "dashboard", "export"},
		"webhooks": {"webhook", "delivery"},
	}
)

// newFleet builds n deployments running nRel releases over [end-span, end).
func newFleet(rng *rand.Rand, n, nRel int, end time.Time, span time.Duration) *fleet {
	f := &fleet{start: end.Add(-span), end: end}
	for k := range nRel {
		f.releases = append(f.releases, fmt.Sprintf("1.%d.0", k))
	}
	used := map[string]bool{}
	var customer string
	left := 0
	for len(f.deps) < n {
		// Customers run one to five deployments each.
		if left == 0 {
			customer = customerWords[rng.IntN(len(customerWords))]
			if used[customer] {
				customer = fmt.Sprintf("%s-%d", customer, rng.IntN(900)+100)
			}
			used[customer] = true
			left = 1 + rng.IntN(5)
		}
		left--
		id := customer + "-" + envs[rng.IntN(len(envs))]
		for used[id] {
			id = fmt.Sprintf("%s-%s-%d", customer, envs[rng.IntN(len(envs))], rng.IntN(90)+10)
		}
		used[id] = true
		d := &deployment{id: id, customer: customer, namespace: customer, badRelease: -1,
			weight: math.Exp(rng.NormFloat64() * 0.8)}
		x := rng.Float64()
		for _, c := range clouds {
			if x < c.share || c.name == "azure" {
				d.cloud, d.platform, d.region = c.name, c.platform, c.regions[rng.IntN(len(c.regions))]
				break
			}
			x -= c.share
		}
		d.stack = stackNames[rng.IntN(len(stackNames))]
		pool := append([]string(nil), stacks[d.stack]...)
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		nSvc := min(len(pool), 3+rng.IntN(4))
		for _, name := range pool[:nSvc] {
			d.services = append(d.services, newService(rng, name, nRel))
		}
		// Release k runs for about a fifth of the span (with five releases), each
		// deployment upgrading at its own moment, as a rollout through a fleet does.
		slot := float64(span) / float64(nRel)
		for k := 1; k < nRel; k++ {
			at := f.start.Add(time.Duration(slot*float64(k) + (rng.Float64()-0.5)*0.8*slot))
			d.switches = append(d.switches, at)
		}
		sort.Slice(d.switches, func(i, j int) bool { return d.switches[i].Before(d.switches[j]) })
		if nRel > 1 && rng.Float64() < 0.2 {
			d.badRelease = nRel - 2 + rng.IntN(2)
		}
		f.deps = append(f.deps, d)
	}
	return f
}

func newService(rng *rand.Rand, name string, nRel int) *service {
	s := &service{name: name, lang: languages[rng.IntN(len(languages))]}
	nouns := resources[name]
	type shape struct{ method, path, verb string }
	var shapes []shape
	for _, noun := range nouns {
		plural := "/api/v1/" + noun + "s"
		shapes = append(shapes,
			shape{"GET", plural, "List"}, shape{"GET", plural + "/{id}", "Get"}, shape{"POST", plural, "Create"},
			shape{"PUT", plural + "/{id}", "Update"}, shape{"DELETE", plural + "/{id}", "Delete"})
	}
	rng.Shuffle(len(shapes), func(i, j int) { shapes[i], shapes[j] = shapes[j], shapes[i] })
	n := min(len(shapes), 3+rng.IntN(6))
	for _, sh := range shapes[:n] {
		noun := sh.path[len("/api/v1/"):]
		if i := indexByte(noun, '/'); i >= 0 {
			noun = noun[:i]
		}
		s.routes = append(s.routes, route{method: sh.method, path: sh.path,
			function: title(noun[:len(noun)-1]) + "Handler." + sh.verb, medianMS: 5 * math.Exp(rng.NormFloat64()*0.9+1)})
	}
	nRep := 2 + rng.IntN(3)
	for range nRel {
		hash := fmt.Sprintf("%08x", rng.Uint32())[:6]
		var reps []string
		for range nRep {
			reps = append(reps, fmt.Sprintf("%s-%s-%s", name, hash, randToken(rng, 5)))
		}
		s.replicas = append(s.replicas, reps)
	}
	return s
}

// releaseAt is the index of the release d runs at t.
func (d *deployment) releaseAt(t time.Time) int {
	k := 0
	for _, sw := range d.switches {
		if !t.Before(sw) {
			k++
		}
	}
	return k
}

// releaseSpan is when d ran release k, within the fleet's span.
func (f *fleet) releaseSpan(d *deployment, k int) (from, to time.Time) {
	from, to = f.start, f.end
	if k > 0 {
		from = d.switches[k-1]
	}
	if k < len(d.switches) {
		to = d.switches[k]
	}
	return from, to
}

// expected estimates how many of the planned records fall in [from, to) per
// deployment and release; records spread evenly over their request's window.
func (f *fleet) expected(reqs []request, from, to time.Time) map[depRelease]float64 {
	out := map[depRelease]float64{}
	for _, r := range reqs {
		width := r.to.Sub(r.from)
		if width <= 0 {
			continue
		}
		for k := range f.releases {
			a, b := f.releaseSpan(r.dep, k)
			lo := slices.MaxFunc([]time.Time{r.from, from, a}, time.Time.Compare)
			hi := slices.MinFunc([]time.Time{r.to, to, b}, time.Time.Compare)
			if hi.After(lo) {
				out[depRelease{r.dep.id, f.releases[k]}] += float64(r.records) * float64(hi.Sub(lo)) / float64(width)
			}
		}
	}
	return out
}

func title(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

const tokenChars = "abcdefghijklmnopqrstuvwxyz0123456789"

func randToken(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = tokenChars[rng.IntN(len(tokenChars))]
	}
	return string(b)
}

// request is one OTLP export request to generate: one deployment's records over
// (from, to], as an agent that flushes every batch records would send them.
type request struct {
	index    int
	dep      *deployment
	from, to time.Time
	records  int
}

// plan lays out total records in requests of batch records, spread over the
// deployments by weight and ordered by send time, so ingest order follows time
// order as it does for a live fleet. The last request takes the remainder.
func (f *fleet) plan(rng *rand.Rand, total, batch int) []request {
	nReq := (total + batch - 1) / batch
	var wsum float64
	for _, d := range f.deps {
		wsum += d.weight
	}
	// Largest remainder, so the counts add up to nReq exactly.
	counts := make([]int, len(f.deps))
	type rem struct {
		i int
		r float64
	}
	var rems []rem
	given := 0
	for i, d := range f.deps {
		share := float64(nReq) * d.weight / wsum
		counts[i] = int(share)
		given += counts[i]
		rems = append(rems, rem{i, share - float64(counts[i])})
	}
	sort.Slice(rems, func(a, b int) bool { return rems[a].r > rems[b].r })
	for j := 0; given < nReq; j++ {
		counts[rems[j%len(rems)].i]++
		given++
	}
	span := f.end.Sub(f.start)
	var out []request
	for i, d := range f.deps {
		n := counts[i]
		if n == 0 {
			continue
		}
		// Each deployment flushes at a steady pace with its own phase.
		step := span / time.Duration(n)
		phase := time.Duration(rng.Float64() * float64(step))
		prev := f.start
		for k := range n {
			to := f.start.Add(step*time.Duration(k) + phase)
			if k == n-1 {
				to = f.end
			}
			from := to.Add(-step)
			if from.Before(prev) {
				from = prev
			}
			out = append(out, request{dep: d, from: from, to: to, records: batch})
			prev = to
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].to.Before(out[b].to) })
	for i := range out {
		out[i].index = i
	}
	out[len(out)-1].records = total - batch*(nReq-1)
	return out
}
