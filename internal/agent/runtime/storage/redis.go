package storage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
)

// Bounds on what the Redis source reads from INFO.
const (
	// maxInfoBytes bounds the INFO text parsed; the sections read are a few
	// hundred bytes, and a larger answer is not a Redis worth believing.
	maxInfoBytes = 64 << 10
	// maxRedisDBs bounds the databases reported (Redis has 16 unless
	// configured otherwise).
	maxRedisDBs = 256
)

// redisSource reads used memory and keys per database from INFO.
type redisSource struct {
	Base
	opts *redis.Options
}

func newRedis(c Config, env []string) (*redisSource, error) {
	opts, err := redis.ParseURL(c.URL)
	if err != nil {
		// redis' error may quote the URL, and the URL may hold a password.
		return nil, fmt.Errorf("redis/%s.url: is not a redis:// URL", c.Name)
	}
	user, pass := c.Credentials(env)
	if user != "" {
		opts.Username = user
	}
	if pass != "" {
		opts.Password = pass
	}
	// One connection, no retries: a collection is two commands, and a server
	// that fails them is reported, not hammered. The context's deadline bounds
	// dialling, reading and writing.
	opts.PoolSize, opts.MaxRetries, opts.ContextTimeoutEnabled, opts.DisableIdentity = 1, -1, true, true
	return &redisSource{Base: NewBase(c), opts: opts}, nil
}

// Collect appends periscope.redis.memory.used, periscope.redis.memory.limit
// (when maxmemory is set) and periscope.redis.keys per database.
func (r *redisSource) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	conn, err := r.dial(ctx)
	if err != nil {
		return r.Errorf("dial: %w", err)
	}
	// The client gets the one connection dialled above and no other: go-redis's
	// pool, failing to dial itself, logs to a global logger and leaves a
	// goroutine probing the server after Close.
	opts := *r.opts
	var mu sync.Mutex
	opts.Dialer = func(context.Context, string, string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		c := conn
		conn = nil
		if c == nil {
			return nil, errors.New("connection lost")
		}
		return c, nil
	}
	c := redis.NewClient(&opts)
	defer c.Close()
	// Two calls: INFO with several sections needs Redis 7.
	mem, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return r.Errorf("INFO memory: %w", err)
	}
	ks, err := c.Info(ctx, "keyspace").Result()
	if err != nil {
		return r.Errorf("INFO keyspace: %w", err)
	}
	m := parseInfo(mem)
	used, err := strconv.ParseInt(m["used_memory"], 10, 64)
	if err != nil {
		return r.Errorf("INFO memory: used_memory %q is not a number", Clip(m["used_memory"], 32))
	}
	runtime.Point(runtime.Gauge(ms, "periscope.redis.memory.used", "By", "Memory Redis has allocated (INFO used_memory)."), now, used, AttrSource, r.Name())
	if lim, err := strconv.ParseInt(m["maxmemory"], 10, 64); err == nil && lim > 0 {
		runtime.Point(runtime.Gauge(ms, "periscope.redis.memory.limit", "By", "Redis's memory limit (maxmemory), when one is set."), now, lim, AttrSource, r.Name())
	}
	dbs := keyspace(parseInfo(ks))
	if len(dbs) > 0 {
		keys := runtime.Gauge(ms, "periscope.redis.keys", "{key}", "Keys in a Redis database (INFO keyspace); a database with none is absent.")
		for _, d := range dbs {
			runtime.Point(keys, now, d.keys, "db.namespace", strconv.Itoa(d.index), AttrSource, r.Name())
		}
	}
	return nil
}

// dial connects to the server as go-redis would, within ctx's deadline.
func (r *redisSource) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{}
	if r.opts.TLSConfig != nil {
		return (&tls.Dialer{NetDialer: d, Config: r.opts.TLSConfig}).DialContext(ctx, r.opts.Network, r.opts.Addr)
	}
	return d.DialContext(ctx, r.opts.Network, r.opts.Addr)
}

// parseInfo reads the field:value lines of an INFO answer, at most
// maxInfoBytes of it; section headers, blank and malformed lines are skipped.
func parseInfo(text string) map[string]string {
	text = Clip(text, maxInfoBytes)
	m := map[string]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// dbKeys is one database's line of INFO keyspace.
type dbKeys struct {
	index int
	keys  int64
}

// keyspace picks the dbN:keys=…,expires=… fields out of INFO keyspace, in
// database order, at most maxRedisDBs of them.
func keyspace(info map[string]string) []dbKeys {
	var out []dbKeys
	for k, v := range info {
		n, ok := strings.CutPrefix(k, "db")
		if !ok {
			continue
		}
		idx, err := strconv.Atoi(n)
		if err != nil || idx < 0 {
			continue
		}
		for _, kv := range strings.Split(v, ",") {
			if num, ok := strings.CutPrefix(kv, "keys="); ok {
				if keys, err := strconv.ParseInt(num, 10, 64); err == nil && keys >= 0 {
					out = append(out, dbKeys{idx, keys})
				}
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	if len(out) > maxRedisDBs {
		out = out[:maxRedisDBs]
	}
	return out
}
