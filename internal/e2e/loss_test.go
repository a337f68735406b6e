package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/agent"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
)

// TestTelemetryLossIsCountedAndShown runs an agent with a small drop_oldest queue
// while the manager is away: once it is back, every record the application sent is
// either in the store or counted dropped, exactly, on the agent's metric and on the
// deployment, which shows telemetry-dropped beside its healthy status.
func TestTelemetryLossIsCountedAndShown(t *testing.T) {
	ctx := context.Background()
	store := &storeSink{seqs: map[string]int{}}
	listen, mdir := freePort(t), t.TempDir()
	m := startTelemetryManager(t, listen, mdir, nil, store)
	token := createAcme(t, m)

	cfg := httpAgentConfig(t, m.URL(), token)
	cfg.Cloud, cfg.Region, cfg.Platform = "aws", "us-east-1", "aws_ecs"
	cfg.Queue.MaxBytes, cfg.Queue.OnFull = 16<<10, "drop_oldest"
	a := startFullAgent(t, cfg, agent.Settings{Logger: logger(t), Env: []string{}, LossInterval: 500 * time.Millisecond})
	defer a.Shutdown(ctx)
	api := apiclient.New(m.URL(), adminToken)
	eventually(t, 10*time.Second, "the agent checked in", func() error {
		d, err := api.Deployment(ctx, "acme-prod")
		if err == nil && d.Status != fleet.StatusHealthy {
			err = fmt.Errorf("status %s", d.Status)
		}
		return err
	})

	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	sent, seq := 0, 0
	for i := range 400 {
		l := plog.NewLogs()
		lrs := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
		for range i%5 + 1 {
			seq++
			lr := lrs.AppendEmpty()
			lr.Body().SetStr("entry " + strings.Repeat("z", seq%40))
			lr.Attributes().PutStr("seq", strconv.Itoa(seq))
		}
		body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		resp, err := http.Post("http://"+cfg.OTLPHTTP+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: a drop_oldest queue accepts everything", resp.StatusCode)
		}
		sent += i%5 + 1
	}
	m = startTelemetryManager(t, listen, mdir, nil, store)
	defer m.Shutdown(ctx)

	dropped := func() int {
		return int(counter(t, "http://"+cfg.OTLPHTTP+"/metrics", "periscope_agent_dropped_records_total", `reason="queue_full",signal="logs"`))
	}
	stored := func() int {
		store.mu.Lock()
		defer store.mu.Unlock()
		return len(store.seqs)
	}
	eventually(t, 30*time.Second, "every record sent stored or counted dropped", func() error {
		if s, d := stored(), dropped(); s+d != sent || d == 0 {
			return fmt.Errorf("stored %d + dropped %d, sent %d", s, d, sent)
		}
		return nil
	})
	lost := dropped()
	store.mu.Lock()
	for s, n := range store.seqs {
		if n != 1 {
			t.Errorf("record %s stored %d times", s, n)
		}
	}
	store.mu.Unlock()

	eventually(t, 20*time.Second, "the deployment shows the loss beside its status", func() error {
		d, err := api.Deployment(ctx, "acme-prod")
		switch {
		case err != nil:
			return err
		case d.Status != fleet.StatusHealthy || d.Loss != fleet.ReasonTelemetryDropped || d.TelemetryLoss == nil:
			return fmt.Errorf("status %s, loss %q, %+v", d.Status, d.Loss, d.TelemetryLoss)
		case d.TelemetryLoss.Counts["logs/queue_full"] != int64(lost):
			return fmt.Errorf("manager counts %v, agent dropped %d", d.TelemetryLoss.Counts, lost)
		case !strings.Contains(d.LossReason, "logs/queue_full "+strconv.Itoa(lost)) || d.TelemetryLoss.LastAt.IsZero():
			return fmt.Errorf("loss reason %q, last at %v", d.LossReason, d.TelemetryLoss.LastAt)
		}
		return nil
	})
	t.Logf("%d records sent: %d stored, %d dropped", sent, stored(), lost)
}
