package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/agent"
	"github.com/periscope-dev/periscope/internal/agent/record"
	"github.com/periscope-dev/periscope/internal/cli/agentcmd"
	"github.com/periscope-dev/periscope/internal/config"
)

// TestAgentReportMatchesWhatWasSent runs a real agent and manager, sends logs some of
// which carry e-mail addresses, IP addresses and URLs with query values, and reads the
// agent's local record: on its HTTP port while it runs, and with `periscope-agent
// report` once it stopped. The sent records and the removed values match what the test
// sent, exactly, and no removed value is in the record.
func TestAgentReportMatchesWhatWasSent(t *testing.T) {
	ctx := context.Background()
	store := &storeSink{seqs: map[string]int{}}
	m := startTelemetryManager(t, freePort(t), t.TempDir(), nil, store)
	defer m.Shutdown(ctx)
	token := createAcme(t, m)

	cfg := httpAgentConfig(t, m.URL(), token)
	cfg.SelfMetricsInterval = 0 // only what the test sends is in the record
	a := startFullAgent(t, cfg, agent.Settings{Logger: logger(t), Env: []string{}, RecordInterval: 200 * time.Millisecond})
	defer a.Shutdown(ctx)

	sent, emails, ips, urls, seq := 0, 0, 0, 0, 0
	for i := range 40 {
		l := plog.NewLogs()
		lrs := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
		for j := range i%4 + 1 {
			seq++
			lr := lrs.AppendEmpty()
			lr.Attributes().PutStr("seq", strconv.Itoa(seq))
			switch j {
			case 0:
				lr.Body().SetStr(fmt.Sprintf("password reset for user%d@example.com", seq))
				emails++
			case 1:
				lr.Attributes().PutStr("client.address", fmt.Sprintf("198.51.100.%d", seq%250+1))
				lr.Body().SetStr("login")
				ips++
			case 2:
				lr.Attributes().PutStr("url.full", fmt.Sprintf("https://shop.example.com/cart?session=s%d&page=2", seq))
				lr.Body().SetStr("cart viewed")
				urls++
			default:
				lr.Body().SetStr("order 1234567890123 shipped")
			}
		}
		body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		resp, err := http.Post("http://"+cfg.OTLPHTTP+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		sent += i%4 + 1
	}
	want := map[string]int64{"email": int64(emails), "ip": int64(ips), "url": int64(urls)}
	check := func(s record.Summary) error {
		if got := s.Records["logs"]; got != int64(sent) {
			return fmt.Errorf("record says %d log records sent, the test sent %d", got, sent)
		}
		for _, k := range s.Removed {
			if n, ok := want[k.Kind]; ok && k.Count != n {
				return fmt.Errorf("record says %d %s removed, the test sent %d", k.Count, k.Kind, n)
			}
			delete(want, k.Kind)
		}
		if len(want) > 0 {
			return fmt.Errorf("record misses removals %v (has %+v)", want, s.Removed)
		}
		if len(s.Destinations) != 1 || s.Destinations[0].URL != m.URL() {
			return fmt.Errorf("destinations %+v, want the manager", s.Destinations)
		}
		return nil
	}

	// While the agent runs: its HTTP port answers with the same summary.
	eventually(t, 20*time.Second, "the agent's /report counts everything sent", func() error {
		resp, err := http.Get("http://" + cfg.OTLPHTTP + "/report?since=1h&format=json")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var s record.Summary
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			return err
		}
		want = map[string]int64{"email": int64(emails), "ip": int64(ips), "url": int64(urls)}
		return check(s)
	})
	store.mu.Lock()
	stored := len(store.seqs)
	store.mu.Unlock()
	if stored != sent {
		t.Errorf("the manager stored %d of %d records", stored, sent)
	}

	// Once stopped: the CLI verb reads the files.
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"report", "--data-dir", cfg.DataDir, "--since", "1h", "--json"}, {"report", "--data-dir", cfg.DataDir, "--since", "1h"}} {
		cmd := agentcmd.New()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("periscope-agent %s: %v", strings.Join(args, " "), err)
		}
		if args[len(args)-1] == "--json" {
			var s record.Summary
			if err := json.Unmarshal(out.Bytes(), &s); err != nil {
				t.Fatal(err)
			}
			want = map[string]int64{"email": int64(emails), "ip": int64(ips), "url": int64(urls)}
			if err := check(s); err != nil {
				t.Error(err)
			}
			continue
		}
		text := out.String()
		t.Logf("periscope-agent report:\n%s", text)
		for _, w := range []string{strconv.Itoa(sent) + " log records", strconv.Itoa(emails) + " e-mail addresses", strconv.Itoa(ips) + " IP addresses"} {
			if !strings.Contains(text, w) {
				t.Errorf("the report does not say %q", w)
			}
		}
		if strings.Contains(text, "@example.com") || strings.Contains(text, "198.51.100.") {
			t.Error("the report shows a removed value")
		}
	}
}

// httpAgentConfig is an agent of release 1.8.0 that polls m every second, with its
// OTLP/HTTP receiver on a free port and its data in a temporary directory.
func httpAgentConfig(t *testing.T, manager, token string) config.Agent {
	cfg := config.DefaultAgent()
	cfg.Manager, cfg.Token, cfg.Transport, cfg.Release = manager, token, "http", "1.8.0"
	cfg.DataDir, cfg.OTLPGRPC, cfg.OTLPHTTP = t.TempDir(), "off", freePort(t)
	cfg.HeartbeatInterval = config.Duration(time.Second)
	return cfg
}

// startFullAgent starts a real agent (check-in and telemetry); the caller shuts it down.
func startFullAgent(t *testing.T, cfg config.Agent, s agent.Settings) *agent.Agent {
	t.Helper()
	a, err := agent.New(cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}
