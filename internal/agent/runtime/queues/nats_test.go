package queues_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/testenv"
)

const natsAddr = "127.0.0.1:4222"

func TestNATSStreamAndConsumerLag(t *testing.T) {
	testenv.Server(t, "NATS with JetStream", natsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToUpper(unique("PERISCOPE_T"))
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("create stream (is JetStream enabled?): %v", err)
	}
	t.Cleanup(func() { js.DeleteStream(context.Background(), name) })
	for i := range 500 {
		if _, err := js.Publish(ctx, name+".orders", []byte(strings.Repeat("x", 100+i%7))); err != nil {
			t.Fatal(err)
		}
	}
	billing, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "audit", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	fetch := func(n int, ack bool) {
		got := 0
		for got < n {
			batch, err := billing.Fetch(n-got, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for m := range batch.Messages() {
				got++
				if ack {
					if err := m.DoubleAck(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := batch.Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	fetch(200, true)
	fetch(10, false) // delivered, not acknowledged
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}

	for _, consumers := range [][]string{nil, {"billing", "audit"}} {
		src := &queues.NATS{SourceName: "nats/orders", URL: "nats://" + natsAddr, Stream: name, Consumers: consumers}
		got, err := collect(t, src)
		if err != nil {
			t.Fatalf("consumers %v: %v", consumers, err)
		}
		expect(t, got, series{
			queues.MetricDepth:                   500,
			queues.MetricBytes:                   float64(info.State.Bytes),
			queues.MetricPending + " billing":    290,
			queues.MetricAckPending + " billing": 10,
			queues.MetricPending + " audit":      500,
			queues.MetricAckPending + " audit":   0,
		})
		if age, ok := got[queues.MetricOldestAge]; !ok || age < 0 || age > 60 {
			t.Errorf("oldest age %v (present %v)", age, ok)
		}
	}
	if info.State.Bytes == 0 {
		t.Error("the stream holds no bytes")
	}
}

func TestNATSFailures(t *testing.T) {
	down := &queues.NATS{SourceName: "nats/down", URL: "nats://" + testenv.ClosedAddr(t), Stream: "X"}
	if _, err := collect(t, down); err == nil || !strings.Contains(err.Error(), "connect to nats") {
		t.Errorf("server down: %v", err)
	}
	testenv.Server(t, "NATS with JetStream", natsAddr)
	missing := &queues.NATS{SourceName: "nats/missing", URL: "nats://" + natsAddr, Stream: strings.ToUpper(unique("NOPE"))}
	if _, err := collect(t, missing); err == nil || !strings.Contains(err.Error(), "stream") {
		t.Errorf("no such stream: %v", err)
	}
}
