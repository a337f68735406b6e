package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// ledgerFilter selects the numbered records the failover test sends.
var ledgerFilter = telquery.Filter{Deployment: "acme-prod", Service: "ledger"}

// ledger is an application writing numbered log records (attribute seq) to an
// agent's OTLP/HTTP receiver, one record a request, until stopped.
type ledger struct {
	agentHTTP string
	last      atomic.Int64 // the last seq sent
	stop      chan struct{}
	done      chan []int // the seqs the agent acknowledged, once stopped
}

func startLedger(agentHTTP string) *ledger {
	l := &ledger{agentHTTP: agentHTTP, stop: make(chan struct{}), done: make(chan []int, 1)}
	go l.run()
	return l
}

func (l *ledger) run() {
	var acked []int
	defer func() { l.done <- acked }()
	// A steady stream, paced so the failover happens in the middle of it and
	// the record count stays in the thousands.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		l.last.Store(int64(seq))
		if l.send(seq) {
			acked = append(acked, seq)
		}
	}
}

// send posts record seq and says whether the agent acknowledged it.
func (l *ledger) send(seq int) bool {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "ledger")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	lr.Body().SetStr("entry")
	lr.Attributes().PutStr("seq", strconv.Itoa(seq))
	body, _ := plogotlp.NewExportRequestFromLogs(logs).MarshalProto()
	resp, err := http.Post("http://"+l.agentHTTP+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return false // not acknowledged: the application would retry
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// finish stops the stream and returns the acknowledged seqs.
func (l *ledger) finish() []int {
	close(l.stop)
	return <-l.done
}

// stored reports whether the replica behind api stores record seq.
func stored(ctx context.Context, api *apiclient.Client, seq int64) error {
	page, err := api.Logs(ctx, telquery.LogQuery{Filter: ledgerFilter, Attrs: map[string]string{"seq": strconv.FormatInt(seq, 10)}, Limit: 1})
	if err != nil {
		return err
	}
	if len(page.Logs) == 0 {
		return fmt.Errorf("record %d not stored yet", seq)
	}
	return nil
}

// ledgerCounts counts the ledger records the replica behind api stores, by seq.
func ledgerCounts(ctx context.Context, api *apiclient.Client) (map[string]int, error) {
	counts := map[string]int{}
	q := telquery.LogQuery{Filter: ledgerFilter, Limit: 1000}
	for {
		page, err := api.Logs(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, l := range page.Logs {
			counts[fmt.Sprint(l.Attributes["seq"])]++
		}
		if page.Next == "" {
			return counts, nil
		}
		q.Cursor = page.Next
	}
}

// TestReplicaFailoverKeepsTelemetry runs two manager replicas on one
// PostgreSQL database and an agent process sending through replica A's load
// balancer while an application writes numbered log records to it. A is
// killed with SIGKILL in the middle of the stream and the balancer sends the
// agent to B: once the agent's queue is empty, B's log search holds every
// record the agent acknowledged, each exactly once, including the batches A
// may have committed without answering, which the agent sends B again.
func TestReplicaFailoverKeepsTelemetry(t *testing.T) {
	ctx := context.Background()
	a, b := startReplicaPair(t)
	token := createAcmeOn(t, a.api)
	eventually(t, 5*time.Second, "B knows the deployment A created", func() error {
		_, err := b.api.Deployment(ctx, "acme-prod")
		return err
	})

	lbA := newBalancer(t, a.addr)
	ag := startAgentProc(t, lbA.url(), token, t.TempDir(), freePort(t), freePort(t))
	app := startLedger(ag.http)
	stopped := false
	defer func() {
		if !stopped {
			app.finish()
		}
	}()

	// Part of the stream is on A before it dies, and A dies having stored
	// batches whose answers never reached the agent: the balancer holds the
	// answers back, so whatever A commits after it starts holding (its answer
	// is written after the commit) is stored but unanswered.
	eventually(t, 20*time.Second, "A stores record 200", func() error { return stored(ctx, a.api, 200) })
	lbA.hold()
	atHold, err := ledgerCounts(ctx, a.api)
	if err != nil {
		t.Fatal(err)
	}
	metrics := "http://" + ag.http + "/metrics"
	eventually(t, 20*time.Second, "A stores records the agent has no answer for", func() error {
		counts, err := ledgerCounts(ctx, a.api)
		if err != nil {
			return err
		}
		if len(counts) > len(atHold) {
			return nil
		}
		// The batch in flight when the hold began may have been committed
		// before atHold was read, and the agent, waiting for its answer,
		// sends nothing more: then A holds more records than the agent was
		// told A accepted (read after counts, so it can only be larger;
		// the ledger is the only source of logs).
		if acked := counter(t, metrics, "periscope_agent_sent_records_total", `signal="logs"`); float64(len(counts)) > acked {
			return nil
		}
		return fmt.Errorf("A stores %d records, as many as when it started holding and no more than the agent had answers for", len(counts))
	})
	a.kill()
	atKill := app.last.Load()
	lbA.point(b.addr)
	// And part of it arrives after, through B.
	eventually(t, 30*time.Second, "B stores a record sent after A died", func() error { return stored(ctx, b.api, atKill+200) })
	acked := app.finish()
	stopped = true

	eventually(t, 30*time.Second, "the agent's log queue empty", func() error {
		if n := counter(t, metrics, "periscope_agent_queue_entries", `signal="logs"`); n != 0 {
			return fmt.Errorf("%v requests queued", n)
		}
		return nil
	})
	if n := counter(t, metrics, "periscope_agent_dropped_records_total", `signal="logs"`); n != 0 {
		t.Errorf("the agent gave up on %v log records it had accepted", n)
	}
	if len(acked) < int(atKill)+200 {
		t.Fatalf("only %d records acknowledged, want at least %d", len(acked), atKill+200)
	}

	var counts map[string]int
	eventually(t, 30*time.Second, "every acknowledged record searchable on B", func() error {
		var err error
		if counts, err = ledgerCounts(ctx, b.api); err != nil {
			return err
		}
		missing := 0
		for _, s := range acked {
			if counts[strconv.Itoa(s)] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d acknowledged records missing", missing, len(acked))
		}
		return nil
	})
	var twice []string
	for s, n := range counts {
		if n != 1 {
			twice = append(twice, fmt.Sprintf("%s (%d times)", s, n))
		}
	}
	if len(twice) > 0 {
		slices.Sort(twice)
		t.Errorf("%d records stored more than once: %v", len(twice), twice[:min(len(twice), 10)])
	}
	// The agent sent B what A had stored unanswered, and B knew it was stored.
	resent := counter(t, b.url()+"/metrics", "periscope_telstore_duplicate_batches_total", "")
	if resent == 0 {
		t.Error("B saw no batch A had stored already: the failover did not resend what A stored unanswered")
	}
	t.Logf("%d records sent, %d acknowledged, A killed after seq %d; B refused %v resent batches A had stored",
		app.last.Load(), len(acked), atKill, resent)
}
