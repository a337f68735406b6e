// Command store benchmarks the manager's telemetry store (internal/telstore): it
// loads generated logs and spans of a simulated fleet, then times the
// investigation queries against the targets of the telemetry store issue, with
// and without the RED rollups, and measures the disk the data takes.
//
//	go run ./bench/store                              # 10M logs + 10M spans, 200 deployments
//	go run ./bench/store -logs 500000 -spans 500000   # a quick check
//	go run ./bench/store -fleet 100000 -logs 0 -spans 0 -storage postgres://postgres@127.0.0.1:5432/
//	go run ./bench/store -logs 2000000 -spans 1000000 -storage postgres://postgres@127.0.0.1:5432/ -replicas 2
//
// With -fleet it first times the fleet store (deployments, check-in flushes,
// pins) with that many deployments, embedded and, with -storage, on a
// throwaway PostgreSQL database; -logs 0 -spans 0 stops after that.
//
// With -storage the same logs and spans are then loaded into the PostgreSQL
// telemetry store (pgtel; -replicas stores with a pool each, in this process)
// on a throwaway database and, chunk by chunk, by plain COPY into unpartitioned
// tables of the same columns (the peer figure), and the queries are timed on
// it too; the run ends with a markdown table of both stores and the baseline.
//
// What is timed during ingest is Consume alone: decode of the OTLP request,
// conversion to rows, append and commit. The requests are generated beforehand
// in chunks (generation is timed and printed separately, and never runs while
// Consume is timed), already tagged with the deployment context as the ingest
// path hands them to the store.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// config holds the flags.
type config struct {
	logs, spans, deployments, releases int
	batch, senders, queries, chunk     int
	dir                                string
	keep                               bool
	span                               time.Duration
	seed                               uint64
	budget                             time.Duration
	cpuProfile                         string
	threads                            int
	writers                            int
	memoryLimit                        string
	fleet                              int
	storage                            string
	replicas                           int
	embedded                           bool
}

func main() {
	var c config
	flag.IntVar(&c.logs, "logs", 10_000_000, "log records to load")
	flag.IntVar(&c.spans, "spans", 10_000_000, "spans to load")
	flag.IntVar(&c.deployments, "deployments", 200, "deployments in the fleet")
	flag.IntVar(&c.releases, "releases", 5, "releases each deployment moves through (1.0.0, 1.1.0, …)")
	flag.IntVar(&c.batch, "batch", 2000, "records per OTLP export request")
	flag.IntVar(&c.senders, "senders", 4, "concurrent Consume callers, like concurrent ingest requests")
	flag.IntVar(&c.queries, "queries", 200, "samples per query type")
	flag.DurationVar(&c.budget, "query-budget", 2*time.Minute, "stop sampling a query type after this long (the samples taken are reported)")
	flag.IntVar(&c.chunk, "chunk", 500_000, "records generated ahead of each timed ingest stretch")
	flag.StringVar(&c.dir, "dir", "", "data directory (default: a temporary one, removed afterwards unless -keep)")
	flag.BoolVar(&c.keep, "keep", false, "keep the data directory (and, with -storage, the PostgreSQL telemetry database)")
	flag.DurationVar(&c.span, "span", 2*time.Hour, "time the data covers, ending now")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the generated data")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the ingest phases (generation included, in its own frames) to this file")
	flag.IntVar(&c.writers, "writers", 0, "connections appending at once (Settings.Writers; default the store's)")
	flag.IntVar(&c.threads, "threads", 0, "DuckDB worker threads of the store (Settings.Threads; default DuckDB's, one per core)")
	flag.StringVar(&c.memoryLimit, "memory-limit", "", "DuckDB memory limit of the store (Settings.MemoryLimit), e.g. 1GB")
	flag.IntVar(&c.fleet, "fleet", 0, "deployments for the fleet store figures (none when 0)")
	flag.StringVar(&c.storage, "storage", "", "a postgres:// server URL: the fleet and telemetry store figures are also taken on a throwaway database created there")
	flag.IntVar(&c.replicas, "replicas", 1, "with -storage: PostgreSQL telemetry stores (each its own connection pool, like manager replicas) ingesting at once")
	flag.BoolVar(&c.embedded, "embedded", true, "load and query the embedded store too (-embedded=false: PostgreSQL only)")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "store:", err)
		os.Exit(1)
	}
}

// Targets of the issue.
const (
	targetIngest   = 150_000 // log records/s
	targetRED      = 100 * time.Millisecond
	targetLogPage  = 200 * time.Millisecond
	targetTrace    = 50 * time.Millisecond
	targetDiskByte = 60.0 // per stored log record
)

func run(c config) error {
	ctx := context.Background()
	if c.storage == "" && (c.replicas != 1 || !c.embedded) || c.replicas < 1 {
		return errNoStorage
	}
	dir := c.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "periscope-bench-store")
		if err != nil {
			return fmt.Errorf("create data directory: %w", err)
		}
		dir = d
		if !c.keep {
			defer os.RemoveAll(dir)
		}
	}
	if c.fleet > 0 {
		if err := benchFleetStores(ctx, c, dir); err != nil {
			return err
		}
	}
	if c.logs == 0 && c.spans == 0 {
		return nil
	}
	end := time.Now().UTC().Truncate(time.Second)
	rng := rand.New(rand.NewPCG(c.seed, 0))
	fl := newFleet(rng, c.deployments, c.releases, end, c.span)
	g := &gen{f: fl, seed: c.seed}
	logReqs := fl.plan(rng, c.logs, c.batch)
	spanReqs := fl.plan(rng, c.spans, c.batch)
	services, routes := 0, 0
	for _, d := range fl.deps {
		services += len(d.services)
		for _, s := range d.services {
			routes += len(s.routes)
		}
	}
	fmt.Printf("fleet: %d deployments, %d services, %d routes, releases %s..%s; data over %s ending %s\n",
		len(fl.deps), services, routes, fl.releases[0], fl.releases[len(fl.releases)-1], c.span, end.Format(time.RFC3339))
	fmt.Printf("load: %d log records and %d spans in requests of %d records, %d concurrent senders, into %s\n",
		c.logs, c.spans, c.batch, c.senders, dir)
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d); the store shares them with this process's generator and whatever else runs\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("timed during ingest: Consume only (decode, convert, append, commit); requests are generated in chunks of %d records\n"+
		"before each timed stretch, never while Consume is timed\n\n", c.chunk)

	var emb *figures
	if c.embedded {
		f, err := runEmbedded(ctx, c, dir, fl, g, logReqs, spanReqs)
		if err != nil {
			return err
		}
		emb = f
	}
	if c.storage != "" {
		return benchPGTel(ctx, c, fl, g, logReqs, spanReqs, emb)
	}
	return nil
}

// figures are one store's ingest and query figures, for the comparison.
type figures struct {
	logs, spans *ingestResult
	queries     []*querySet
}

// runEmbedded loads the data into the embedded store in dir, times the
// queries and prints the figures against the targets.
func runEmbedded(ctx context.Context, c config, dir string, fl *fleet, g *gen, logReqs, spanReqs []request) (*figures, error) {
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return nil, fmt.Errorf("create CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, fmt.Errorf("start CPU profile: %w", err)
		}
	}
	open := func() (*telstore.Store, time.Duration, error) {
		t := time.Now()
		st, err := telstore.Open(ctx, dir, telstore.Settings{Threads: c.threads, Writers: c.writers, MemoryLimit: c.memoryLimit})
		if err != nil {
			return nil, 0, fmt.Errorf("open store: %w", err)
		}
		return st, time.Since(t), nil
	}
	// reopen closes the store, which checkpoints, so the file holds every row in
	// its compressed form, and opens it again.
	reopen := func(st *telstore.Store) (*telstore.Store, time.Duration, time.Duration, error) {
		t := time.Now()
		if err := st.Close(); err != nil {
			return nil, 0, 0, fmt.Errorf("close store: %w", err)
		}
		closed := time.Since(t)
		st, opened, err := open()
		return st, closed, opened, err
	}
	st, _, err := open()
	if err != nil {
		return nil, err
	}
	defer func() { st.Close() }()

	fmt.Println("phase 1: ingest logs")
	logRes, err := ingest(ctx, st, c, logReqs, func(r request) (consumer.Batch, string) { return g.logs(r), "" })
	if err != nil {
		return nil, err
	}
	logRes.print("logs")
	fmt.Println("  closing and reopening the store to checkpoint the logs-only file")
	st, closeDur, openDur, err := reopen(st)
	if err != nil {
		return nil, err
	}
	logsFile, err := fileSize(dir)
	if err != nil {
		return nil, err
	}
	logsUsed, err := st.UsedBytes(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Printf("  close (checkpoint) %s, reopen %s; logs only: file %s, used %s = %.1f / %.1f bytes per log record\n\n",
		closeDur.Round(time.Millisecond), openDur.Round(time.Millisecond), mib(logsFile), mib(logsUsed),
		float64(logsFile)/float64(c.logs), float64(logsUsed)/float64(c.logs))

	fmt.Println("phase 2: ingest spans")
	spanRes, err := ingest(ctx, st, c, spanReqs, func(r request) (consumer.Batch, string) {
		o := g.spans(r)
		return o.batch, o.sample
	})
	if err != nil {
		return nil, err
	}
	spanRes.print("spans")
	if c.cpuProfile != "" {
		pprof.StopCPUProfile()
	}

	fmt.Println("phase 3: flush rollups, checkpoint")
	t := time.Now()
	if err := st.Flush(ctx); err != nil {
		return nil, fmt.Errorf("flush: %w", err)
	}
	flushDur := time.Since(t)
	st, closeDur, openDur, err = reopen(st)
	if err != nil {
		return nil, err
	}
	totalFile, err := fileSize(dir)
	if err != nil {
		return nil, err
	}
	totalUsed, err := st.UsedBytes(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Printf("  flush %s, close (checkpoint) %s, reopen %s; logs + spans + rollups: file %s, used %s\n\n",
		flushDur.Round(time.Millisecond), closeDur.Round(time.Millisecond), openDur.Round(time.Millisecond), mib(totalFile), mib(totalUsed))

	fmt.Println("phase 4: queries over the last hour of the data")
	qs, err := runQueries(ctx, st, c, fl, logReqs, spanReqs, spanRes.samples)
	if err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, fmt.Errorf("close store: %w", err)
	}
	tables, err := tableBytes(ctx, filepath.Join(dir, telstore.FileName))
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	cpu, err := procstat.CPU(self)
	if err != nil {
		return nil, fmt.Errorf("read CPU time: %w", err)
	}
	rss := procstat.PeakRSS(self)

	fmt.Println()
	fmt.Println("query latencies (ms), each over its samples with varied parameters:")
	fmt.Printf("  %-64s %7s %8s %8s %8s %8s\n", "query", "samples", "p50", "p95", "p99", "max")
	for _, q := range qs {
		fmt.Printf("  %-64s %7d %8.1f %8.1f %8.1f %8.1f%s\n", q.name, len(q.lat), msOf(q.pct(0.50)), msOf(q.pct(0.95)), msOf(q.pct(0.99)), msOf(q.pct(1)), q.note())
	}
	fmt.Println()
	fmt.Println("disk after checkpoint:")
	fmt.Printf("  logs only (after phase 1): file %s = %.1f B/log record; used blocks + WAL %s = %.1f B/log record\n",
		mib(logsFile), float64(logsFile)/float64(c.logs), mib(logsUsed), float64(logsUsed)/float64(c.logs))
	fmt.Printf("  everything (after phase 3): file %s, used %s, for %d logs + %d spans\n", mib(totalFile), mib(totalUsed), c.logs, c.spans)
	if len(tables) > 0 {
		fmt.Printf("  per table (distinct blocks in pragma_storage_info × block size; an upper bound, blocks can be shared):\n")
		for _, tb := range tables {
			per := ""
			switch tb.name {
			case "log_rows":
				per = fmt.Sprintf(" = %.1f B/log record", float64(tb.bytes)/float64(c.logs))
			case "span_rows":
				per = fmt.Sprintf(" = %.1f B/span", float64(tb.bytes)/float64(c.spans))
			}
			fmt.Printf("    %-14s %10s%s\n", tb.name, mib(tb.bytes), per)
		}
	}
	fmt.Printf("process: %.1f CPU-s in total (generation included), peak RSS %d MiB (generated chunks included)\n\n", cpu, rss/1024)

	// The summary against the targets.
	bpr := float64(logsFile) / float64(c.logs)
	fmt.Printf("%-66s %-12s %-12s %s\n", "metric", "target", "reached", "")
	row := func(metric, target, reached string, pass bool) {
		verdict := "FAIL"
		if pass {
			verdict = "pass"
		}
		fmt.Printf("%-66s %-12s %-12s %s\n", metric, target, reached, verdict)
	}
	row("ingest logs, sustained (Consume only)", "≥ 150,000/s", fmt.Sprintf("%.0f/s", logRes.rate()), logRes.rate() >= targetIngest)
	fmt.Printf("%-66s %-12s %-12s %s\n", "ingest spans, sustained (Consume only)", "—", fmt.Sprintf("%.0f/s", spanRes.rate()), "")
	for _, q := range qs {
		if q.target == 0 {
			continue
		}
		p95 := q.pct(0.95)
		if len(q.lat) == 0 {
			fmt.Printf("%-66s %-12s %-12s %s\n", q.name+", p95", "< "+fmt.Sprint(q.target.Milliseconds())+" ms", "no samples", "n/a")
			continue
		}
		row(q.name+", p95", "< "+fmt.Sprint(q.target.Milliseconds())+" ms", fmt.Sprintf("%.1f ms", msOf(p95)), p95 < q.target && len(q.lat) > 0)
	}
	row("disk per stored log record (logs-only file size)", "≤ 60 B", fmt.Sprintf("%.1f B", bpr), bpr <= targetDiskByte)
	ubpr := float64(logsUsed) / float64(c.logs)
	row("disk per stored log record (logs-only used blocks + WAL)", "≤ 60 B", fmt.Sprintf("%.1f B", ubpr), ubpr <= targetDiskByte)
	return &figures{logs: logRes, spans: spanRes, queries: qs}, nil
}

func fileSize(dir string) (int64, error) {
	fi, err := os.Stat(filepath.Join(dir, telstore.FileName))
	if err != nil {
		return 0, fmt.Errorf("measure the database file: %w", err)
	}
	n := fi.Size()
	// A WAL left beside the file is data too.
	if wi, err := os.Stat(filepath.Join(dir, telstore.FileName+".wal")); err == nil {
		n += wi.Size()
	}
	return n, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func msOf(d time.Duration) float64 { return float64(d) / 1e6 }

// ingestResult is one ingest phase's figures.
type ingestResult struct {
	records int
	// timed is the wall time spent inside Consume stretches, generation excluded.
	timed   time.Duration
	genTime time.Duration
	// cpu is the process's CPU seconds during the timed stretches.
	cpu float64
	// progress holds, per acknowledged request, the timed clock and the records
	// acknowledged so far, for the slowest-window figure.
	progress []point
	calls    []time.Duration
	chunks   []float64 // records/s per chunk
	samples  []string
}

type point struct {
	at      time.Duration
	records int
}

func (r *ingestResult) rate() float64 { return float64(r.records) / r.timed.Seconds() }

// slowest returns the lowest rate over any window of at least w on the timed
// clock (generation pauses cut out), or 0 if the load was shorter than 2w.
func (r *ingestResult) slowest(w time.Duration) float64 {
	if r.timed < 2*w {
		return 0
	}
	p := append([]point{{}}, r.progress...)
	low := -1.0
	j := 0
	for i := range p {
		for j < len(p) && p[j].at-p[i].at < w {
			j++
		}
		if j == len(p) {
			break
		}
		rate := float64(p[j].records-p[i].records) / (p[j].at - p[i].at).Seconds()
		if low < 0 || rate < low {
			low = rate
		}
	}
	return low
}

func (r *ingestResult) print(what string) {
	sort.Slice(r.calls, func(i, j int) bool { return r.calls[i] < r.calls[j] })
	fmt.Printf("  %d %s stored in %s of Consume (%.0f records/s sustained; %.1f CPU-s = %.1f µs CPU per record while timed)\n",
		r.records, what, r.timed.Round(time.Millisecond), r.rate(), r.cpu, r.cpu*1e6/float64(r.records))
	if s := r.slowest(10 * time.Second); s > 0 {
		fmt.Printf("  slowest 10 s window: %.0f records/s\n", s)
	}
	var parts []string
	for _, c := range r.chunks {
		parts = append(parts, fmt.Sprintf("%.0fk", c/1000))
	}
	fmt.Printf("  records/s per chunk, first to last: %s\n", strings.Join(parts, " "))
	fmt.Printf("  Consume call (ack) latency p50 %s p99 %s max %s\n", pctOf(r.calls, 0.5), pctOf(r.calls, 0.99), pctOf(r.calls, 1))
	fmt.Printf("  generation (not timed above): %s for %d requests\n\n", r.genTime.Round(time.Millisecond), len(r.calls))
}

func pctOf(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[int(float64(len(s)-1)*p)].Round(100 * time.Microsecond)
}

// ingest generates the requests chunk by chunk and, for each chunk, times
// -senders goroutines calling Consume on it.
func ingest(ctx context.Context, st *telstore.Store, c config, reqs []request, build func(request) (consumer.Batch, string)) (*ingestResult, error) {
	res := &ingestResult{}
	for lo := 0; lo < len(reqs); lo += c.perChunk() {
		batches, err := res.generate(reqs[lo:min(len(reqs), lo+c.perChunk())], build)
		if err != nil {
			return nil, err
		}
		if err := res.timeChunk(c.senders, batches, func(_ int, b consumer.Batch) error { return st.Consume(ctx, b) }); err != nil {
			return nil, fmt.Errorf("consume: %w", err)
		}
	}
	return res, nil
}

// perChunk is how many requests hold -chunk records.
func (c config) perChunk() int { return max(1, c.chunk/c.batch) }

// generate builds reqs' batches on every core, adding the time it took and the
// whole traces' ids to r.
func (r *ingestResult) generate(reqs []request, build func(request) (consumer.Batch, string)) ([]consumer.Batch, error) {
	t := time.Now()
	batches := make([]consumer.Batch, len(reqs))
	samples := make([]string, len(reqs))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(reqs); i += workers {
				batches[i], samples[i] = build(reqs[i])
			}
		}()
	}
	wg.Wait()
	r.genTime += time.Since(t)
	for _, s := range samples {
		if s != "" {
			r.samples = append(r.samples, s)
		}
	}
	return batches, nil
}

// timeChunk times senders goroutines calling send (with the sender's number)
// on the batches, and adds the figures to r. Nothing else runs in this
// process meanwhile.
func (r *ingestResult) timeChunk(senders int, batches []consumer.Batch, send func(sender int, b consumer.Batch) error) error {
	jobs := make(chan consumer.Batch, len(batches))
	n := 0
	for _, b := range batches {
		jobs <- b
		n += b.Records
	}
	close(jobs)
	var mu sync.Mutex
	var firstErr error
	offset := r.timed
	done := r.records
	cpu0, _ := procstat.CPU(os.Getpid())
	start := time.Now()
	var wg sync.WaitGroup
	for k := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range jobs {
				t := time.Now()
				err := send(k, b)
				now := time.Now()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				r.calls = append(r.calls, now.Sub(t))
				done += b.Records
				r.progress = append(r.progress, point{offset + now.Sub(start), done})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	cpu1, _ := procstat.CPU(os.Getpid())
	if firstErr != nil {
		return firstErr
	}
	r.timed += took
	r.cpu += cpu1 - cpu0
	r.records += n
	r.chunks = append(r.chunks, float64(n)/took.Seconds())
	return nil
}

// querySet is one query type's samples.
type querySet struct {
	name   string
	target time.Duration
	lat    []time.Duration
	empty  int // answers with no data
	// skipped counts samples not taken: a second page after a first page that
	// was the last.
	skipped int
	capped  bool
}

func (q *querySet) pct(p float64) time.Duration {
	s := append([]time.Duration(nil), q.lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return pctOf(s, p)
}

func (q *querySet) note() string {
	var n []string
	if q.empty > 0 {
		n = append(n, fmt.Sprintf("%d empty", q.empty))
	}
	if q.skipped > 0 {
		n = append(n, fmt.Sprintf("%d without a second page", q.skipped))
	}
	if q.capped {
		n = append(n, "stopped at -query-budget")
	}
	if len(n) == 0 {
		return ""
	}
	return "  (" + strings.Join(n, ", ") + ")"
}

// errSkip marks a query sample that does not apply.
var errSkip = errors.New("skip")

// depRelease is a deployment and a release it ran in the queried hour.
type depRelease struct{ dep, release string }

// investigator is the investigation queries both telemetry stores answer.
type investigator interface {
	RED(context.Context, telquery.REDQuery) (telquery.RED, error)
	Logs(context.Context, telquery.LogQuery) (telquery.LogPage, error)
	Trace(context.Context, string) (telquery.Trace, error)
	CompareReleases(context.Context, telquery.CompareQuery) (telquery.Comparison, error)
}

func runQueries(ctx context.Context, st investigator, c config, fl *fleet, logReqs, spanReqs []request, traces []string) ([]*querySet, error) {
	since, until := fl.end.Add(-time.Hour), fl.end
	rng := rand.New(rand.NewPCG(c.seed, 3))
	// Query what exists: deployment and release pairs with spans in the hour
	// (at least 50, so about a dozen requests), deployments with logs in it.
	var pairs []depRelease
	for p, n := range fl.expected(spanReqs, since, until) {
		if n >= 50 {
			pairs = append(pairs, p)
		}
	}
	logDeps := map[string]float64{}
	for p, n := range fl.expected(logReqs, since, until) {
		logDeps[p.dep] += n
	}
	var deps []string
	for d, n := range logDeps {
		if n >= 200 {
			deps = append(deps, d)
		}
	}
	// Map order is random; sort so the seed alone decides the picks.
	sort.Slice(pairs, func(i, j int) bool {
		return pairs[i].dep < pairs[j].dep || pairs[i].dep == pairs[j].dep && pairs[i].release < pairs[j].release
	})
	sort.Strings(deps)
	if len(pairs) == 0 || len(deps) == 0 {
		return nil, errors.New("no deployment has data in the last hour; load more records")
	}
	fmt.Printf("  %d deployment+release pairs with spans and %d deployments with logs in the hour to pick from\n", len(pairs), len(deps))
	pick := func() depRelease { return pairs[rng.IntN(len(pairs))] }
	pickDep := func() string { return deps[rng.IntN(len(deps))] }
	hour := telquery.Filter{Since: since, Until: until}

	var out []*querySet
	// measure runs fn -queries times (or until the budget is spent); fn reports
	// whether the answer had data. A sample fn returns errSkip for is not taken.
	measure := func(name string, target time.Duration, fn func(i int) (bool, error)) error {
		q := &querySet{name: name, target: target}
		began := time.Now()
		for i := range c.queries {
			if time.Since(began) > c.budget {
				q.capped = true
				break
			}
			t := time.Now()
			ok, err := fn(i)
			if errors.Is(err, errSkip) {
				q.skipped++
				continue
			}
			q.lat = append(q.lat, time.Since(t))
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if !ok {
				q.empty++
			}
		}
		fmt.Printf("  %-64s p95 %8.1f ms (%d samples)\n", name, msOf(q.pct(0.95)), len(q.lat))
		out = append(out, q)
		return nil
	}

	// The same parameters for rollups and raw, so the two differ only in the path.
	params := make([]depRelease, c.queries)
	for i := range params {
		params[i] = pick()
	}
	redOne := func(raw bool) func(int) (bool, error) {
		return func(i int) (bool, error) {
			f := hour
			f.Deployment, f.Release = params[i].dep, params[i].release
			r, err := st.RED(ctx, telquery.REDQuery{Filter: f, Raw: raw})
			return len(r.Series) > 0 && r.Series[0].Total.Requests > 0, err
		}
	}
	redFleet := func(raw bool) func(int) (bool, error) {
		return func(int) (bool, error) {
			r, err := st.RED(ctx, telquery.REDQuery{Filter: hour, GroupBy: telquery.ByRelease, Raw: raw})
			return len(r.Series) > 0, err
		}
	}
	// The rollups must agree with the raw rows on counts; a benchmark of wrong
	// answers would be worthless.
	mismatch := 0
	for i := range min(20, len(params)) {
		f := hour
		f.Deployment, f.Release = params[i].dep, params[i].release
		a, err := st.RED(ctx, telquery.REDQuery{Filter: f})
		if err != nil {
			return nil, fmt.Errorf("RED check: %w", err)
		}
		b, err := st.RED(ctx, telquery.REDQuery{Filter: f, Raw: true})
		if err != nil {
			return nil, fmt.Errorf("RED check: %w", err)
		}
		if total(a) != total(b) {
			mismatch++
		}
	}
	fmt.Printf("  check: RED request and error counts from rollups and raw rows agree in %d of %d sampled queries\n", min(20, len(params))-mismatch, min(20, len(params)))

	if err := measure("RED deployment+release, last hour (rollups)", targetRED, redOne(false)); err != nil {
		return nil, err
	}
	if err := measure("RED deployment+release, last hour (raw)", targetRED, redOne(true)); err != nil {
		return nil, err
	}
	if err := measure("RED fleet by release, last hour (rollups)", 0, redFleet(false)); err != nil {
		return nil, err
	}
	if err := measure("RED fleet by release, last hour (raw)", 0, redFleet(true)); err != nil {
		return nil, err
	}

	for _, lq := range []struct {
		name string
		q    func(dep string) telquery.LogQuery
	}{
		{"logs deployment + severity ≥ WARN, last hour", func(dep string) telquery.LogQuery {
			f := hour
			f.Deployment = dep
			return telquery.LogQuery{Filter: f, MinSeverity: int(sevWarn), Limit: 100}
		}},
		{"logs deployment + contains \"timeout\", last hour", func(dep string) telquery.LogQuery {
			f := hour
			f.Deployment = dep
			return telquery.LogQuery{Filter: f, Contains: "timeout", Limit: 100}
		}},
	} {
		chosen := make([]string, c.queries)
		for i := range chosen {
			chosen[i] = pickDep()
		}
		cursors := make([]string, c.queries)
		if err := measure(lq.name+", first page", targetLogPage, func(i int) (bool, error) {
			p, err := st.Logs(ctx, lq.q(chosen[i]))
			cursors[i] = p.Next
			return len(p.Logs) > 0, err
		}); err != nil {
			return nil, err
		}
		if err := measure(lq.name+", second page", targetLogPage, func(i int) (bool, error) {
			if cursors[i] == "" {
				return false, errSkip
			}
			q := lq.q(chosen[i])
			q.Cursor = cursors[i]
			p, err := st.Logs(ctx, q)
			return len(p.Logs) > 0, err
		}); err != nil {
			return nil, err
		}
	}

	if len(traces) == 0 {
		return nil, errors.New("no trace was generated whole; load more spans")
	}
	if err := measure("trace by id", targetTrace, func(int) (bool, error) {
		tr, err := st.Trace(ctx, traces[rng.IntN(len(traces))])
		return tr.SpanCount > 0, err
	}); err != nil {
		return nil, err
	}
	if err := measure("compare releases, one deployment (rollups; no raw path)", 0, func(int) (bool, error) {
		_, err := st.CompareReleases(ctx, telquery.CompareQuery{Filter: telquery.Filter{Deployment: pick().dep}})
		if errors.Is(err, telquery.ErrInvalid) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// total sums a RED answer's requests and errors over its series.
func total(r telquery.RED) [2]int64 {
	var t [2]int64
	for _, s := range r.Series {
		t[0] += s.Total.Requests
		t[1] += s.Total.Errors
	}
	return t
}

type tableSize struct {
	name  string
	bytes int64
}

// tableBytes counts the blocks each table's segments use in the closed file.
func tableBytes(ctx context.Context, path string) ([]tableSize, error) {
	db, err := sql.Open("duckdb", path+"?access_mode=READ_ONLY")
	if err != nil {
		return nil, fmt.Errorf("open %s to measure tables: %w", path, err)
	}
	defer db.Close()
	var blockSize int64
	if err := db.QueryRowContext(ctx, "SELECT block_size FROM pragma_database_size()").Scan(&blockSize); err != nil {
		return nil, fmt.Errorf("read block size: %w", err)
	}
	var out []tableSize
	for _, t := range []string{"log_rows", "span_rows", "resources", "red_minute", "red_hist"} {
		var blocks int64
		err := db.QueryRowContext(ctx, `SELECT count(DISTINCT b) FROM (
			SELECT block_id b FROM pragma_storage_info('`+t+`') WHERE block_id >= 0
			UNION ALL SELECT unnest(additional_block_ids) FROM pragma_storage_info('`+t+`'))`).Scan(&blocks)
		if err != nil {
			return nil, fmt.Errorf("measure table %s: %w", t, err)
		}
		out = append(out, tableSize{t, blocks * blockSize})
	}
	return out, nil
}
