package queues_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unique returns a name no other test run uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s_%s", prefix, strings.ToLower(rand.Text()[:10]))
}

// series is a collected metric point keyed "<metric> <group>" (group empty for
// destination-wide figures).
type series map[string]float64

func collect(t *testing.T, src runtime.Source) (series, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms := pmetric.NewMetricSlice()
	err := src.Collect(ctx, time.Now(), ms)
	out := series{}
	for _, m := range ms.All() {
		for _, dp := range m.Gauge().DataPoints().All() {
			key := m.Name()
			if g, ok := dp.Attributes().Get("messaging.consumer.group.name"); ok {
				key += " " + g.AsString()
			}
			if _, dup := out[key]; dup {
				t.Errorf("%s reported twice", key)
			}
			if dp.ValueType() == pmetric.NumberDataPointValueTypeDouble {
				out[key] = dp.DoubleValue()
			} else {
				out[key] = float64(dp.IntValue())
			}
			if _, ok := dp.Attributes().Get("messaging.system"); !ok {
				t.Errorf("%s has no messaging.system", key)
			}
		}
	}
	return out, err
}

func expect(t *testing.T, got series, want series) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

func TestFromConfig(t *testing.T) {
	env := []string{"Q_USER=alice", "Q_PASS=pw"}
	for _, q := range []config.QueueSource{
		{Kind: config.QueueNATS, Name: "a", URL: "nats://127.0.0.1:4222", Stream: "S", UsernameEnv: "Q_USER", PasswordEnv: "Q_PASS"},
		{Kind: config.QueueRedisStream, Name: "b", URL: "redis://127.0.0.1:6379", Stream: "k", UsernameEnv: "Q_USER", PasswordEnv: "Q_PASS"},
		{Kind: config.QueueRabbitMQ, Name: "c", URL: "amqp://127.0.0.1:5672/", Queue: "q", UsernameEnv: "Q_USER", PasswordEnv: "Q_PASS"},
	} {
		src, err := queues.FromConfig(q, env)
		if err != nil {
			t.Fatal(err)
		}
		if src.Name() != q.Kind+"/"+q.Name {
			t.Errorf("name %q", src.Name())
		}
		var user, pass string
		switch s := src.(type) {
		case *queues.NATS:
			user, pass = s.User, s.Password
		case *queues.RedisStream:
			user, pass = s.User, s.Password
		case *queues.RabbitMQ:
			user, pass = s.User, s.Password
		}
		if user != "alice" || pass != "pw" {
			t.Errorf("%s: credentials %q %q", src.Name(), user, pass)
		}
	}
	if _, err := queues.FromConfig(config.QueueSource{Kind: config.QueueSQS, Name: "x"}, nil); err == nil || !strings.Contains(err.Error(), "sqsqueue.FromConfig") {
		t.Errorf("sqs: %v", err)
	}
}
