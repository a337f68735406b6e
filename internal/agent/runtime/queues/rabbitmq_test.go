package queues_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/testenv"
)

const (
	rabbitAddr = "127.0.0.1:5672"
	rabbitURL  = "amqp://guest:guest@" + rabbitAddr + "/"
)

// rabbitQueue makes a queue holding 500 messages of which 200 were consumed
// and acknowledged and 10 are delivered to a consumer and not acknowledged.
func rabbitQueue(t *testing.T) string {
	t.Helper()
	testenv.Server(t, "RabbitMQ", rabbitAddr)
	conn, err := amqp.Dial(rabbitURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	name := unique("periscope_test_queue")
	if _, err := ch.QueueDeclare(name, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c, err := conn.Channel(); err == nil {
			c.QueueDelete(name, false, false, false)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", name, false, false, amqp.Publishing{Body: []byte("order")})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := conf.WaitContext(ctx); !ok || err != nil {
			t.Fatalf("publish not confirmed: %v", err)
		}
	}
	for range 200 {
		d, ok, err := ch.Get(name, false)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(name, "holder", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		select {
		case <-deliveries:
		case <-ctx.Done():
			t.Fatal("no delivery")
		}
	}
	return name
}

func TestRabbitMQReadyAndConsumers(t *testing.T) {
	name := rabbitQueue(t)
	src := &queues.RabbitMQ{SourceName: "rabbitmq/mail", URL: "amqp://" + rabbitAddr + "/", Queue: name, User: "guest", Password: "guest"}
	got, err := collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, series{queues.MetricDepth: 290, queues.MetricConsumers: 1})
	if _, ok := got[queues.MetricUnacked]; ok {
		t.Error("unacked reported without the management API")
	}
}

// TestRabbitMQManagementAPI serves the management API's answer for the
// queue (the machine's RabbitMQ has no management plugin) beside the real
// AMQP figures.
func TestRabbitMQManagementAPI(t *testing.T) {
	name := rabbitQueue(t)
	var gotPath, gotUser string
	mgmt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.EscapedPath()
		gotUser, _, _ = r.BasicAuth()
		if strings.Contains(r.URL.Path, "missing") {
			http.Error(w, `{"error":"Object Not Found"}`, http.StatusNotFound)
			return
		}
		w.Write([]byte(`{"messages_ready":290,"messages_unacknowledged":10,"name":"` + name + `"}`))
	}))
	defer mgmt.Close()
	src := &queues.RabbitMQ{SourceName: "rabbitmq/mail", URL: "amqp://" + rabbitAddr + "/", Queue: name,
		User: "guest", Password: "guest", ManagementURL: mgmt.URL + "/"}
	got, err := collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, series{queues.MetricDepth: 290, queues.MetricConsumers: 1, queues.MetricUnacked: 10})
	if gotPath != "/api/queues/%2F/"+name || gotUser != "guest" {
		t.Errorf("asked %s as %q", gotPath, gotUser)
	}

	// A management API that fails keeps the AMQP figures and says why.
	src.ManagementURL = mgmt.URL + "/missing"
	got, err = collect(t, src)
	if err == nil || !strings.Contains(err.Error(), "management API") || !strings.Contains(err.Error(), "404") {
		t.Errorf("failing management API: %v", err)
	}
	expect(t, got, series{queues.MetricDepth: 290})
}

// TestRabbitMQRealManagementAPI runs where the rabbitmq_management plugin is
// enabled (it is not on our machines' RabbitMQ, so it does not fail CI when absent).
func TestRabbitMQRealManagementAPI(t *testing.T) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:15672", time.Second)
	if err != nil {
		t.Skip("no RabbitMQ management API at 127.0.0.1:15672 (rabbitmq-plugins enable rabbitmq_management)")
	}
	c.Close()
	name := rabbitQueue(t)
	src := &queues.RabbitMQ{SourceName: "rabbitmq/mail", URL: "amqp://" + rabbitAddr + "/", Queue: name,
		User: "guest", Password: "guest", ManagementURL: "http://127.0.0.1:15672"}
	// The management API's figures lag the broker by its stats interval (5s).
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := collect(t, src)
		if err == nil && got[queues.MetricUnacked] == 10 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("unacked never reached 10: %v %v", got, err)
		}
		time.Sleep(time.Second) // polling a server's own refresh, not synchronising our code
	}
}

func TestRabbitMQFailures(t *testing.T) {
	down := &queues.RabbitMQ{SourceName: "rabbitmq/down", URL: "amqp://" + testenv.ClosedAddr(t) + "/", Queue: "x"}
	if _, err := collect(t, down); err == nil || !strings.Contains(err.Error(), "connect to rabbitmq") {
		t.Errorf("server down: %v", err)
	}
	testenv.Server(t, "RabbitMQ", rabbitAddr)
	missing := &queues.RabbitMQ{SourceName: "rabbitmq/missing", URL: rabbitURL, Queue: unique("periscope_test_none")}
	if _, err := collect(t, missing); err == nil || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Errorf("no such queue: %v", err)
	}
}
