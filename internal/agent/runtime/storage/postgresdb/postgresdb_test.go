package postgresdb

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/storagetest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// build makes the source c describes or fails the test.
func build(t *testing.T, c storage.Config, env ...string) runtime.Source {
	return storagetest.Build(t, New, c, env...)
}

// scratchDatabase creates an empty database on the machine's PostgreSQL for
// one test, dropped when it ends, and returns its URL and a connection to it.
func scratchDatabase(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	url := testenv.PostgresDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return url, conn
}

func TestPostgresReportsDatabaseAndLargestTables(t *testing.T) {
	url, conn := scratchDatabase(t)
	ctx := context.Background()
	const rows = 5000
	for _, q := range []string{
		`CREATE SCHEMA sales`,
		`CREATE TABLE sales.orders (id bigint PRIMARY KEY, note text)`,
		fmt.Sprintf(`INSERT INTO sales.orders SELECT g, repeat('x', 200) FROM generate_series(1, %d) g`, rows),
		`CREATE TABLE public.tiny (id int)`,
		`INSERT INTO public.tiny VALUES (1), (2), (3)`,
		`CREATE TABLE public.never_analysed (id int)`,
		`ANALYZE sales.orders`,
		`ANALYZE public.tiny`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db := url[strings.LastIndex(url, "/")+1:]

	src := build(t, storage.Config{Kind: storage.KindPostgres, Name: "main", URL: url})
	ms, err := storagetest.Collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	at := func(table string) []string {
		return []string{"db.namespace", db, "db.collection.name", table, storage.AttrSource, "postgres/main"}
	}
	var wantOrders, wantDB int64
	if err := conn.QueryRow(ctx, `SELECT pg_total_relation_size('sales.orders'), pg_database_size(current_database())`).Scan(&wantOrders, &wantDB); err != nil {
		t.Fatal(err)
	}
	if got := storagetest.Value(t, ms, "periscope.postgresql.table.size", "By", at("sales.orders")...); got != wantOrders || got <= rows*200 {
		t.Errorf("sales.orders size %d, PostgreSQL says %d (and it holds over %d bytes of notes)", got, wantOrders, rows*200)
	}
	if got := storagetest.Value(t, ms, "periscope.postgresql.table.rows", "{row}", at("sales.orders")...); got != rows {
		t.Errorf("sales.orders rows %d, want %d", got, rows)
	}
	if got := storagetest.Value(t, ms, "periscope.postgresql.table.rows", "{row}", at("public.tiny")...); got != 3 {
		t.Errorf("public.tiny rows %d, want 3", got)
	}
	// A table never analysed has no estimate, rather than a made-up zero.
	if pts := storagetest.Points(t, ms, "periscope.postgresql.table.rows", "{row}", at("public.never_analysed")...); len(pts) != 0 {
		t.Errorf("never analysed table has a row estimate %d", pts[0].IntValue())
	}
	// Nothing wrote in between: the database's size is what PostgreSQL says,
	// and holds every table reported.
	size := storagetest.Value(t, ms, "periscope.postgresql.database.size", "By", "db.namespace", db, storage.AttrSource, "postgres/main")
	if size != wantDB {
		t.Errorf("database size %d, PostgreSQL says %d", size, wantDB)
	}
	var tables int64
	for _, p := range storagetest.Points(t, ms, "periscope.postgresql.table.size", "By") {
		tables += p.IntValue()
	}
	if tables > size {
		t.Errorf("tables hold %d bytes, more than the database's %d", tables, size)
	}

	// Bounded to one table, only the largest is reported.
	ms, err = storagetest.Collect(t, build(t, storage.Config{Kind: storage.KindPostgres, Name: "main", URL: url, MaxTables: 1}))
	if err != nil {
		t.Fatal(err)
	}
	pts := storagetest.Points(t, ms, "periscope.postgresql.table.size", "By")
	if len(pts) != 1 {
		t.Fatalf("%d tables reported with max_tables 1", len(pts))
	}
	if name, _ := pts[0].Attributes().Get("db.collection.name"); name.Str() != "sales.orders" {
		t.Errorf("the one table reported is %s, want sales.orders", name.Str())
	}
}

// TestPostgresCredentialsFromEnvironment: the user comes from the named
// variable, not the URL.
func TestPostgresCredentialsFromEnvironment(t *testing.T) {
	url, _ := scratchDatabase(t)
	noUser := strings.Replace(url, "postgres@", "nobody@", 1)
	src := build(t, storage.Config{Kind: storage.KindPostgres, Name: "main", URL: noUser, UsernameEnv: "PG_USER"}, "PG_USER=postgres")
	if _, err := storagetest.Collect(t, src); err != nil {
		t.Fatalf("with the user from PG_USER: %v", err)
	}
	src = build(t, storage.Config{Kind: storage.KindPostgres, Name: "main", URL: noUser})
	if _, err := storagetest.Collect(t, src); err == nil || !strings.Contains(err.Error(), "postgres/main") {
		t.Fatalf("as nobody: %v, want a failure naming the source", err)
	}
}

func TestPostgresUnreachableFails(t *testing.T) {
	storagetest.Unreachable(t, build(t, storage.Config{Kind: storage.KindPostgres, Name: "main", URL: "postgres://postgres@" + testenv.ClosedAddr(t) + "/postgres"}))
}

func TestNewTakesOnlyPostgres(t *testing.T) {
	if _, err := New(storage.Config{Kind: storage.KindRedis, Name: "x", URL: "redis://h:1"}, nil); err == nil {
		t.Error("New accepted a redis config")
	}
}
