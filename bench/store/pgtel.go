package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/periscope-dev/periscope/bench/internal/pgscratch"
	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/pgtel"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// plainSchema holds the COPY baseline's tables: log_rows' and span_rows'
// columns, types and defaults (the seq numbering included), as ordinary
// tables, with no partitions, no indexes, no rollups and no marks.
const plainSchema = "bench_plain"

// pgIngest is one kind's ingest figures on PostgreSQL: the telemetry store,
// per replica, and the plain COPY baseline of the same batches.
type pgIngest struct {
	store, plain *ingestResult
	perReplica   []int64 // records each replica stored
}

// benchPGTel loads the same generated data into the PostgreSQL telemetry
// store (c.replicas stores, each with its own connection pool, in this
// process) on a throwaway database, and, chunk by chunk right after each
// timed store stretch, into plain tables by COPY: the peer figure. Then it
// times the investigation queries and prints the comparison with emb (the
// embedded store's figures, nil when not taken).
func benchPGTel(ctx context.Context, c config, fl *fleet, g *gen, logReqs, spanReqs []request, emb *figures) error {
	url, drop, err := pgscratch.Create(ctx, c.storage, "telemetry")
	if err != nil {
		return err
	}
	defer func() {
		if c.keep {
			// Kept for EXPLAIN and index work on the loaded window; drop it by hand.
			fmt.Printf("  kept the PostgreSQL database: %s\n", url)
			return
		}
		if err := drop(); err != nil {
			fmt.Println("  ", err)
		}
	}()
	stores := make([]*pgtel.Store, c.replicas)
	for r := range stores {
		// No retention loop: every record is inside the window, and a loop
		// would only add queries to the timed ingest.
		st, err := pgtel.Open(ctx, url, pgtel.Settings{RetainEvery: -1})
		if err != nil {
			return fmt.Errorf("open PostgreSQL telemetry store %d: %w", r+1, err)
		}
		defer st.Close()
		stores[r] = st
	}
	plain, err := pgxpool.New(ctx, url)
	if err != nil {
		return fmt.Errorf("connect for the COPY baseline: %w", err)
	}
	defer plain.Close()
	for _, t := range []string{"log_rows", "span_rows"} {
		if _, err := plain.Exec(ctx, fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s; CREATE TABLE %s.%s (LIKE %s.%s INCLUDING DEFAULTS)",
			plainSchema, plainSchema, t, pgtel.DefaultSchema, t)); err != nil {
			return fmt.Errorf("create the COPY baseline's table %s: %w", t, err)
		}
	}
	senders := c.senders * c.replicas
	load0 := procstat.LoadAvg()
	fmt.Printf("PostgreSQL telemetry store: %d replica(s) in this process, each its own pool, %d senders each (one agent queue per sender);\n"+
		"  plain COPY baseline into %s (same columns, no partitions, indexes, rollups or marks) by %d senders; load average %s\n\n",
		c.replicas, c.senders, plainSchema, senders, load0)

	fmt.Println("PostgreSQL phase 1: ingest logs (store, then the same chunk by plain COPY)")
	logs, err := ingestPG(ctx, c, stores, plain, "logs", logReqs, func(r request) (consumer.Batch, string) { return g.logs(r), "" })
	if err != nil {
		return err
	}
	logs.print(c, "logs")
	fmt.Println("PostgreSQL phase 2: ingest spans (store, then the same chunk by plain COPY)")
	spans, err := ingestPG(ctx, c, stores, plain, "spans", spanReqs, func(r request) (consumer.Batch, string) {
		o := g.spans(r)
		return o.batch, o.sample
	})
	if err != nil {
		return err
	}
	spans.print(c, "spans")
	load1 := procstat.LoadAvg()

	// Autovacuum analyzes the partitions as rows arrive, but not the
	// partitioned parents, and not within the seconds a query phase follows
	// a bulk load: analyze now, as a running window would have been.
	t := time.Now()
	if _, err := plain.Exec(ctx, "ANALYZE "+pgtel.DefaultSchema+".log_rows, "+pgtel.DefaultSchema+".span_rows, "+
		pgtel.DefaultSchema+".resources, "+pgtel.DefaultSchema+".red_minute, "+pgtel.DefaultSchema+".red_hist"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	fmt.Printf("  ANALYZE %s\n", time.Since(t).Round(time.Millisecond))
	sizes, err := pgSizes(ctx, plain)
	if err != nil {
		return err
	}
	fmt.Println("PostgreSQL phase 3: queries over the last hour of the data (on replica 1)")
	qs, err := runQueries(ctx, stores[0], c, fl, logReqs, spanReqs, spans.store.samples)
	if err != nil {
		return err
	}
	printComparison(c, emb, logs, spans, qs, sizes, load0, load1)
	return nil
}

// ingestPG generates reqs chunk by chunk; each chunk is timed into the stores
// (sender k on store k mod replicas, as agent queue "bench/kind/k") and then
// into the plain table by COPY, by as many senders.
func ingestPG(ctx context.Context, c config, stores []*pgtel.Store, plain *pgxpool.Pool, kind string, reqs []request,
	build func(request) (consumer.Batch, string)) (*pgIngest, error) {
	res := &pgIngest{store: &ingestResult{}, plain: &ingestResult{}, perReplica: make([]int64, len(stores))}
	senders := c.senders * len(stores)
	seq := make([]uint64, senders) // each sender's queue position; only sender k touches seq[k]
	per := make([]atomic.Int64, len(stores))
	table, cols := pgx.Identifier{plainSchema, "log_rows"}, telstore.LogColumns
	if kind == "spans" {
		table, cols = pgx.Identifier{plainSchema, "span_rows"}, telstore.SpanColumns
	}
	for lo := 0; lo < len(reqs); lo += c.perChunk() {
		batches, err := res.store.generate(reqs[lo:min(len(reqs), lo+c.perChunk())], build)
		if err != nil {
			return nil, err
		}
		err = res.store.timeChunk(senders, batches, func(k int, b consumer.Batch) error {
			r := k % len(stores)
			b.Stream, b.First, b.Last = fmt.Sprintf("bench/%s/%d", kind, k), seq[k]+1, seq[k]+uint64(b.Records)
			seq[k] = b.Last
			if err := stores[r].Consume(ctx, b); err != nil {
				return err
			}
			per[r].Add(int64(b.Records))
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("consume %s: %w", kind, err)
		}
		err = res.plain.timeChunk(senders, batches, func(_ int, b consumer.Batch) error {
			return copyPlain(ctx, plain, table, cols, b)
		})
		if err != nil {
			return nil, fmt.Errorf("plain COPY of %s: %w", kind, err)
		}
	}
	for r := range per {
		res.perReplica[r] = per[r].Load()
	}
	return res, nil
}

// copyPlain decodes b as the store does and copies its rows into table, one
// COPY (its own transaction) per batch.
func copyPlain(ctx context.Context, pool *pgxpool.Pool, table pgx.Identifier, cols []string, b consumer.Batch) error {
	d, err := telstore.Decode(b)
	if err != nil {
		return err
	}
	nl, ns, _ := d.Counts()
	n, values := nl, d.LogValues
	if table[1] == "span_rows" {
		n, values = ns, d.SpanValues
	}
	rows := make([][]any, n)
	for i := range rows {
		rows[i] = values(make([]any, 0, len(cols)), i)
	}
	_, err = pool.CopyFrom(ctx, table, cols, pgx.CopyFromRows(rows))
	return err
}

func (p *pgIngest) print(c config, what string) {
	fmt.Printf("  PostgreSQL telemetry store, %d replica(s):\n", len(p.perReplica))
	p.store.print(what)
	for r, n := range p.perReplica {
		fmt.Printf("    replica %d: %d %s = %.0f/s\n", r+1, n, what, float64(n)/p.store.timed.Seconds())
	}
	fmt.Println("  plain COPY of the same batches:")
	p.plain.print(what)
	fmt.Printf("  store / plain COPY: %.2f\n\n", p.store.rate()/p.plain.rate())
}

// pgSize is a table's size on disk with its indexes (partitions summed).
type pgSize struct {
	name  string
	bytes int64
}

// pgSizes measures the store's row tables and the baseline's.
func pgSizes(ctx context.Context, pool *pgxpool.Pool) ([]pgSize, error) {
	var out []pgSize
	for _, t := range []string{pgtel.DefaultSchema + ".log_rows", pgtel.DefaultSchema + ".span_rows", plainSchema + ".log_rows", plainSchema + ".span_rows"} {
		var n int64
		err := pool.QueryRow(ctx, `SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass)),
			pg_total_relation_size($1::regclass))::bigint`, t).Scan(&n)
		if err != nil {
			return nil, fmt.Errorf("measure %s: %w", t, err)
		}
		out = append(out, pgSize{t, n})
	}
	return out, nil
}

// printComparison prints the run's figures as markdown tables, ready for
// docs/benchmarks.md.
func printComparison(c config, emb *figures, logs, spans *pgIngest, qs []*querySet, sizes []pgSize, load0, load1 string) {
	fmt.Printf("\nmarkdown summary (%d logs, %d spans, %d deployments, requests of %d records; PostgreSQL: %d replica(s) in one process, %d senders each; load average %s → %s):\n\n",
		c.logs, c.spans, c.deployments, c.batch, c.replicas, c.senders, load0, load1)
	embCol := func(f func(*figures) string) string {
		if emb == nil {
			return "(not run)"
		}
		return f(emb)
	}
	perReplica := func(p *pgIngest) string {
		if len(p.perReplica) < 2 {
			return ""
		}
		var s []string
		for _, n := range p.perReplica {
			s = append(s, fmt.Sprintf("%.0f", float64(n)/p.store.timed.Seconds()))
		}
		return " (" + strings.Join(s, " + ") + ")"
	}
	fmt.Println("| figure | embedded DuckDB | PostgreSQL store | plain COPY, same rows | store / COPY |")
	fmt.Println("|---|---|---|---|---|")
	for _, k := range []struct {
		name string
		p    *pgIngest
		e    func(*figures) *ingestResult
	}{{"logs", logs, func(f *figures) *ingestResult { return f.logs }}, {"spans", spans, func(f *figures) *ingestResult { return f.spans }}} {
		target := ""
		if k.name == "logs" {
			target = " (target on PostgreSQL ≥ 50,000)"
		}
		fmt.Printf("| ingest %s, records/s%s | %s | %.0f%s | %.0f | %.2f |\n", k.name, target,
			embCol(func(f *figures) string { return fmt.Sprintf("%.0f", k.e(f).rate()) }), k.p.store.rate(), perReplica(k.p), k.p.plain.rate(), k.p.store.rate()/k.p.plain.rate())
		lat := func(r *ingestResult) string {
			s := append([]time.Duration(nil), r.calls...)
			slices.Sort(s)
			return fmt.Sprintf("%v / %v", pctOf(s, 0.5), pctOf(s, 0.99))
		}
		fmt.Printf("| … %s call p50 / p99 | %s | %s | %s | |\n", k.name, embCol(func(f *figures) string { return lat(k.e(f)) }), lat(k.p.store), lat(k.p.plain))
	}
	if len(sizes) == 4 {
		fmt.Printf("| disk per log record (table + indexes) | | %.1f B | %.1f B | |\n", float64(sizes[0].bytes)/float64(max(1, c.logs)), float64(sizes[2].bytes)/float64(max(1, c.logs)))
		fmt.Printf("| disk per span (table + indexes) | | %.1f B | %.1f B | |\n", float64(sizes[1].bytes)/float64(max(1, c.spans)), float64(sizes[3].bytes)/float64(max(1, c.spans)))
	}
	fmt.Println()
	fmt.Println("| query, ms p50 / p95 / p99 | embedded DuckDB | PostgreSQL store |")
	fmt.Println("|---|---|---|")
	byName := map[string]*querySet{}
	if emb != nil {
		for _, q := range emb.queries {
			byName[q.name] = q
		}
	}
	for _, q := range qs {
		e := "(not run)"
		if eq := byName[q.name]; eq != nil {
			e = eq.triple()
		}
		fmt.Printf("| %s | %s | %s |\n", q.name, e, q.triple())
	}
}

func (q *querySet) triple() string {
	if len(q.lat) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f", msOf(q.pct(0.5)), msOf(q.pct(0.95)), msOf(q.pct(0.99)))
}

// errNoStorage is returned when -replicas asks for PostgreSQL without -storage.
var errNoStorage = errors.New("-replicas and -embedded=false need -storage (a postgres:// server URL)")
