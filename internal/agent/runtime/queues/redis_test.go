package queues_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/testenv"
)

const redisAddr = "127.0.0.1:6379"

func TestRedisStreamLengthAndGroupLag(t *testing.T) {
	testenv.Server(t, "Redis", redisAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer c.Close()
	key := unique("periscope_test_stream")
	t.Cleanup(func() { c.Del(context.Background(), key) })
	start := time.Now()
	for range 500 {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"order", "x"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"billing", "audit"} {
		if err := c.XGroupCreate(ctx, key, g, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(n int64) []string {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "billing", Consumer: "w1", Streams: []string{key, ">"}, Count: n}).Result()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		if int64(len(ids)) != n {
			t.Fatalf("read %d entries, want %d", len(ids), n)
		}
		return ids
	}
	if err := c.XAck(ctx, key, "billing", read(200)...).Err(); err != nil {
		t.Fatal(err)
	}
	read(10) // delivered, not acknowledged

	for _, groups := range [][]string{nil, {"billing", "audit"}} {
		src := &queues.RedisStream{SourceName: "redis-stream/orders", URL: "redis://" + redisAddr + "/0", Stream: key, Groups: groups}
		got, err := collect(t, src)
		if err != nil {
			t.Fatalf("groups %v: %v", groups, err)
		}
		expect(t, got, series{
			queues.MetricDepth:                   500,
			queues.MetricPending + " billing":    290,
			queues.MetricAckPending + " billing": 10,
			queues.MetricPending + " audit":      500,
			queues.MetricAckPending + " audit":   0,
		})
		if age, max := got[queues.MetricOldestAge], time.Since(start).Seconds()+1; age < 0 || age > max {
			t.Errorf("oldest age %v, want between 0 and %v", age, max)
		}
	}

	src := &queues.RedisStream{SourceName: "redis-stream/orders", URL: "redis://" + redisAddr, Stream: key, Groups: []string{"nobody"}}
	if _, err := collect(t, src); err == nil || !strings.Contains(err.Error(), "no consumer group nobody") {
		t.Errorf("missing group: %v", err)
	}
	empty := &queues.RedisStream{SourceName: "redis-stream/empty", URL: "redis://" + redisAddr, Stream: unique("periscope_test_none")}
	got, err := collect(t, empty)
	if err != nil || got[queues.MetricDepth] != 0 {
		t.Errorf("stream not created yet: %v %v", got, err)
	}
}

func TestRedisStreamServerDown(t *testing.T) {
	src := &queues.RedisStream{SourceName: "redis-stream/down", URL: "redis://" + testenv.ClosedAddr(t), Stream: "x"}
	if _, err := collect(t, src); err == nil || !strings.Contains(err.Error(), "XLEN") {
		t.Errorf("server down: %v", err)
	}
}
