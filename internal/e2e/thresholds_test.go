package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/testenv"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

const thresholdsNATS = "127.0.0.1:4222"

// TestQueueLagThresholdFromTheManager runs a real agent watching a real NATS
// JetStream consumer 1,200 messages behind. A lag threshold of 1,000 set
// through the manager's API makes the deployment unhealthy with the reason
// naming the queue and its lag; raising it to 5,000 makes it healthy again.
func TestQueueLagThresholdFromTheManager(t *testing.T) {
	testenv.Server(t, "NATS with JetStream", thresholdsNATS)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	nc, err := nats.Connect("nats://" + thresholdsNATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream := fmt.Sprintf("PERISCOPE_E2E_ORDERS_%d", time.Now().UnixNano())
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("create stream (is JetStream enabled?): %v", err)
	}
	t.Cleanup(func() { js.DeleteStream(context.Background(), stream) })
	for range 1200 {
		if _, err := js.Publish(ctx, stream+".new", []byte("order")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	m := startTelemetryManager(t, "127.0.0.1:0", t.TempDir(), nil)
	defer m.Shutdown(context.Background())
	token := createAcme(t, m)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
runtime:
  interval: 1s
  timeout: 1s
  queues:
    - {kind: nats, name: orders, url: "nats://%s", stream: %s, consumers: [workers]}
`, thresholdsNATS, stream)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfgPath, "--token", token, "--release", "1.8.0", "--transport", "websocket",
		"--heartbeat-interval", "1s", "--data-dir", filepath.Join(dir, "agent")}
	ag := runAgent(t, freePort(t), freePort(t), append(args, "--manager", m.URL())...)

	api := apiclient.New(m.URL(), adminToken)
	status := func(want fleet.Status, code string, reason ...string) func() error {
		return func() error {
			d, err := api.Deployment(ctx, "acme-prod")
			if err != nil {
				return err
			}
			if d.Status != want || d.StatusReasonCode != code {
				return fmt.Errorf("status %s (%s) %q", d.Status, d.StatusReasonCode, d.StatusReason)
			}
			for _, r := range reason {
				if !strings.Contains(d.StatusReason, r) {
					return fmt.Errorf("reason %q lacks %q", d.StatusReason, r)
				}
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, "healthy with no threshold", status(fleet.StatusHealthy, ""))

	set := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}
	if _, err := api.SetThresholds(ctx, "acme-prod", set, "orders pile up before customers notice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "unhealthy past the lag threshold", status(fleet.StatusUnhealthy, fleet.ReasonThresholdExceeded,
		"threshold exceeded: nats/orders lag: "+stream+" consumer workers lag 1200 > 1000"))
	eventually(t, 10*time.Second, "the agent reported holding the thresholds", func() error {
		got, err := api.Thresholds(ctx, "acme-prod")
		if err != nil || !got.InSync {
			return fmt.Errorf("thresholds %+v, %v", got, err)
		}
		return nil
	})

	if _, err := api.SetThresholds(ctx, "acme-prod", thresholds.Set{Queues: []thresholds.QueueRule{{Source: "nats/orders", MaxLag: 5000}}}, "raised for the sale"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "healthy again under the raised threshold", status(fleet.StatusHealthy, ""))

	ag.stop(t)
}
