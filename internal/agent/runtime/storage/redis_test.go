package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/storagetest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

const (
	redisAddr = "127.0.0.1:6379"
	// redisTestDB is the database this package's tests own on the machine's
	// Redis: they fill it and flush it, and touch no other.
	redisTestDB = 13
)

func TestRedisReportsMemoryAndKeysPerDatabase(t *testing.T) {
	testenv.Server(t, "Redis", redisAddr)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, DB: redisTestDB})
	t.Cleanup(func() { rdb.Close() }) // after the flush below: cleanups run last first
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.FlushDB(context.Background()) })
	const n = 347
	pipe := rdb.Pipeline()
	for i := range n {
		pipe.Set(ctx, fmt.Sprintf("periscope-test:%d", i), strings.Repeat("v", i), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	src := newSource(t, Config{Kind: KindRedis, Name: "cache", URL: "redis://" + redisAddr})
	ms, err := storagetest.Collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	db := strconv.Itoa(redisTestDB)
	if got := storagetest.Value(t, ms, "periscope.redis.keys", "{key}", "db.namespace", db, AttrSource, "redis/cache"); got != n {
		t.Errorf("keys in db %s = %d, want %d", db, got, n)
	}
	used := storagetest.Value(t, ms, "periscope.redis.memory.used", "By", AttrSource, "redis/cache")
	info := parseInfo(rdb.Info(ctx, "memory").Val())
	now, _ := strconv.ParseInt(info["used_memory"], 10, 64)
	if used <= 0 || used > 2*now || now > 2*used {
		t.Errorf("used memory %d, Redis now says %d", used, now)
	}
	limits := storagetest.Points(t, ms, "periscope.redis.memory.limit", "By")
	if maxmem, _ := strconv.ParseInt(info["maxmemory"], 10, 64); maxmem > 0 {
		if len(limits) != 1 || limits[0].IntValue() != maxmem {
			t.Errorf("memory limit points %v, want one of %d", limits, maxmem)
		}
	} else if len(limits) != 0 {
		t.Errorf("memory limit reported with no maxmemory set")
	}

	// Emptied, the database leaves the keyspace and the figures.
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ms, err = storagetest.Collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	if pts := storagetest.Points(t, ms, "periscope.redis.keys", "{key}", "db.namespace", db); len(pts) != 0 {
		t.Errorf("flushed db %s still reported with %d keys", db, pts[0].IntValue())
	}
}

// TestRedisReportsTheMemoryLimit sets maxmemory on the machine's Redis for a
// moment (far above what it uses, so no other test notices) and restores it.
func TestRedisReportsTheMemoryLimit(t *testing.T) {
	testenv.Server(t, "Redis", redisAddr)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { rdb.Close() }) // after maxmemory is restored: cleanups run last first
	was, err := rdb.ConfigGet(ctx, "maxmemory").Result()
	if err != nil {
		t.Fatal(err)
	}
	const limit = 3 << 30
	if err := rdb.ConfigSet(ctx, "maxmemory", strconv.Itoa(limit)).Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rdb.ConfigSet(context.Background(), "maxmemory", was["maxmemory"]).Err(); err != nil {
			t.Errorf("restore maxmemory %s: %v", was["maxmemory"], err)
		}
	})
	ms, err := storagetest.Collect(t, newSource(t, Config{Kind: KindRedis, Name: "cache", URL: "redis://" + redisAddr}))
	if err != nil {
		t.Fatal(err)
	}
	if got := storagetest.Value(t, ms, "periscope.redis.memory.limit", "By", AttrSource, "redis/cache"); got != limit {
		t.Errorf("memory limit %d, want %d", got, limit)
	}
}

func TestRedisInfoParsing(t *testing.T) {
	info := "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:0\r\n\r\n# Keyspace\r\n" +
		"db0:keys=12,expires=1,avg_ttl=0\r\ndb13:keys=347,expires=0,avg_ttl=0\r\ndb2:keys=-4,expires=0\r\ndbx:keys=1\r\ndb3:expires=2\r\n"
	m := parseInfo(info)
	if m["used_memory"] != "1048576" || m["maxmemory"] != "0" {
		t.Errorf("parseInfo: %v", m)
	}
	got := keyspace(m)
	want := []dbKeys{{0, 12}, {13, 347}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("keyspace = %v, want %v (negative, unnamed and keyless lines skipped)", got, want)
	}
}

// FuzzRedisInfo feeds INFO answers as a hostile server could send them: the
// parser must not panic, and what it reports stays bounded and ordered.
func FuzzRedisInfo(f *testing.F) {
	f.Add("# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\n# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\n")
	f.Add("db1:keys=1\ndb1:keys=2\ndb-1:keys=3\ndb99999999999999999999:keys=4\n:::\n#\n")
	f.Add(strings.Repeat("db7:keys=9,", 1000))
	f.Fuzz(func(t *testing.T, text string) {
		dbs := keyspace(parseInfo(text))
		if len(dbs) > maxRedisDBs {
			t.Fatalf("%d databases, bound %d", len(dbs), maxRedisDBs)
		}
		for i, d := range dbs {
			if d.keys < 0 || d.index < 0 || (i > 0 && dbs[i-1].index > d.index) {
				t.Fatalf("keyspace %v: negative or out of order", dbs)
			}
		}
	})
}
