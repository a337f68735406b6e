package queues

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// RedisStream collects a Redis stream's length (XLEN), the age of its oldest
// entry (from the first entry's id, which is its time in milliseconds unless
// the producer chose ids itself) and, per consumer group (XINFO GROUPS), its
// lag (entries not yet delivered to the group; Redis 7 and later) and pending
// entries (delivered, not acknowledged).
type RedisStream struct {
	// SourceName is the source's name, "redis-stream/<name>".
	SourceName string
	// URL is the server (redis://host:6379/0 or rediss://…).
	URL string
	// Stream is the stream's key.
	Stream string
	// Groups are the consumer groups to report; empty reports every group, at
	// most 100.
	Groups []string
	// User and Password, when set, authenticate the connection.
	User, Password string
}

// Name returns the source's name.
func (r *RedisStream) Name() string { return r.SourceName }

// Kind returns "redis-stream".
func (r *RedisStream) Kind() string { return "redis-stream" }

// Collect connects, reads the stream's length, first entry and groups, and
// closes.
func (r *RedisStream) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	opt, err := redis.ParseURL(r.URL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	if r.User != "" {
		opt.Username = r.User
	}
	if r.Password != "" {
		opt.Password = r.Password
	}
	// No retries: the collector's timeout bounds the round. A pool of two,
	// though one connection is used: go-redis starts a background redialer,
	// which outlives Close by a second, once failed dials reach the pool size.
	opt.PoolSize, opt.MaxRetries, opt.DialerRetries = 2, -1, 1
	c := redis.NewClient(opt)
	defer c.Close()

	n, err := c.XLen(ctx, r.Stream).Result()
	if err != nil {
		return fmt.Errorf("XLEN %s: %w", r.Stream, err)
	}
	f := figures{ms: ms, now: now, system: "redis", destination: r.Stream}
	f.depth(n)
	if n > 0 {
		first, err := c.XRangeN(ctx, r.Stream, "-", "+", 1).Result()
		if err != nil {
			return fmt.Errorf("XRANGE %s: %w", r.Stream, err)
		}
		if len(first) == 1 {
			if ms, ok := idTime(first[0].ID); ok {
				f.oldest(ms)
			}
		}
	}
	groups, err := c.XInfoGroups(ctx, r.Stream).Result()
	if err != nil {
		if n == 0 && strings.Contains(err.Error(), "no such key") {
			return nil // an empty stream that does not exist yet has no groups
		}
		return fmt.Errorf("XINFO GROUPS %s: %w", r.Stream, err)
	}
	want := map[string]bool{}
	for _, g := range r.Groups {
		want[g] = true
	}
	pending, ackPending := f.lag()
	seen := 0
	for _, g := range groups {
		if len(want) > 0 && !want[g.Name] || len(want) == 0 && seen >= maxGroups {
			continue
		}
		seen++
		delete(want, g.Name)
		if g.Lag >= 0 { // -1: Redis cannot tell (entries deleted in between)
			f.group(pending, g.Name, g.Lag)
		}
		f.group(ackPending, g.Name, g.Pending)
	}
	if len(want) > 0 {
		missing := make([]string, 0, len(want))
		for g := range want {
			missing = append(missing, g)
		}
		return fmt.Errorf("stream %s has no consumer group %s", r.Stream, strings.Join(missing, ", "))
	}
	return nil
}

// idTime reads the time in a stream entry id "<ms>-<seq>".
func idTime(id string) (time.Time, bool) {
	msPart, _, ok := strings.Cut(id, "-")
	v, err := strconv.ParseInt(msPart, 10, 64)
	if !ok || err != nil || v < 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(v), true
}
