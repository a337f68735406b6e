package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/periscope-dev/periscope/internal/agent"
	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/testenv"
	"github.com/periscope-dev/periscope/internal/tlsconfig"
	"github.com/periscope-dev/periscope/internal/tlsconfig/tlstest"
)

// TestAgentsReachAManagerServingTLS runs a manager serving TLS with a
// certificate of a private CA on both its listeners. A WebSocket agent and a
// polling agent trusting that CA check in, the polling one forwards logs that
// the manager keeps, and so does a gRPC sender trusting the CA; an agent trusting another CA is refused and says
// why. A certificate renewed in place is served to the next connection, and
// the agents go on without a restart.
func TestAgentsReachAManagerServingTLS(t *testing.T) {
	ctx := context.Background()
	ca := tlstest.NewCA(t, "vendor private CA")
	certDir := t.TempDir()
	first := ca.Server(t, certDir)
	store := &storeSink{seqs: map[string]int{}}
	m := startTelemetryManagerWith(t, func(cfg *config.Manager) {
		cfg.Listen, cfg.DataDir, cfg.OTLPGRPC = freePort(t), t.TempDir(), freePort(t)
		cfg.TLS.CertFile, cfg.TLS.KeyFile = first.CertFile, first.KeyFile
	}, store)
	defer m.Shutdown(ctx)
	if !strings.HasPrefix(m.URL(), "https://") {
		t.Fatalf("the manager's URL is %s, want https://", m.URL())
	}

	trust := config.ClientTLS{CAFile: ca.File}
	clientTLS, err := tlsconfig.Client(trust)
	if err != nil {
		t.Fatal(err)
	}
	// One connection per request, so each sees the certificate served now.
	api := apiclient.New(m.URL(), adminToken)
	api.HTTP.Transport = &http.Transport{TLSClientConfig: clientTLS, DisableKeepAlives: true}
	if _, err := api.CreateRelease(ctx, apitypes.NewRelease{Stack: "lighthouse", Version: "1.8.0"}); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, id := range []string{"acme-prod", "globex-prod", "initech-prod"} {
		d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: strings.TrimSuffix(id, "-prod"), Stack: "lighthouse", Platform: "aws_ecs"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[id] = d.Token
	}
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(m.URL() + "/healthz"); err == nil ||
		!strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("a client that does not trust the private CA: %v, want certificate signed by unknown authority", err)
	}
	plain, err := http.Get("http://" + m.Addr() + "/healthz")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Error("the manager answered plain HTTP on its TLS port")
		}
	}

	ws := config.DefaultAgent()
	ws.Manager, ws.Token, ws.Transport, ws.Release, ws.DataDir = m.URL(), tokens["acme-prod"], "websocket", "1.8.0", t.TempDir()
	ws.HeartbeatInterval, ws.ManagerTLS = config.Duration(time.Second), trust
	wsAgent, err := opamp.New(ws, opamp.Settings{Logger: logger(t), Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wsAgent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer wsAgent.Shutdown(ctx)

	hc := httpAgentConfig(t, m.URL(), tokens["globex-prod"])
	hc.ManagerTLS, hc.SelfMetricsInterval = trust, 0
	full := startFullAgent(t, hc, agent.Settings{Logger: logger(t), Env: []string{}})
	defer full.Shutdown(ctx)

	var refusedLog testenv.Buffer
	bad := config.DefaultAgent()
	bad.Manager, bad.Token, bad.Transport, bad.Release, bad.DataDir = m.URL(), tokens["initech-prod"], "websocket", "1.8.0", t.TempDir()
	bad.HeartbeatInterval, bad.ManagerTLS = config.Duration(time.Second), config.ClientTLS{CAFile: tlstest.NewCA(t, "someone else's CA").File}
	badAgent, err := opamp.New(bad, opamp.Settings{Logger: slog.New(slog.NewTextHandler(&refusedLog, nil)), Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := badAgent.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer badAgent.Shutdown(ctx)

	checkedIn := func(id string, mode fleet.Mode) func() error {
		return func() error {
			d, err := api.Deployment(ctx, id)
			if err != nil {
				return err
			}
			if d.Status != fleet.StatusHealthy || d.Mode != mode || d.Release != "1.8.0" {
				return fmt.Errorf("%s is %s in mode %s on %q", id, d.Status, d.Mode, d.Release)
			}
			return nil
		}
	}
	eventually(t, 20*time.Second, "the WebSocket agent checks in over TLS", checkedIn("acme-prod", fleet.ModePush))
	eventually(t, 20*time.Second, "the polling agent checks in over TLS", checkedIn("globex-prod", fleet.ModePull))

	sendLogs := func(from, n int) {
		t.Helper()
		l := plog.NewLogs()
		lrs := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
		for i := from; i < from+n; i++ {
			lrs.AppendEmpty().Attributes().PutStr("seq", strconv.Itoa(i))
		}
		body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		resp, err := http.Post("http://"+hc.OTLPHTTP+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the agent answered %d", resp.StatusCode)
		}
	}
	stored := func(n int) func() error {
		return func() error {
			store.mu.Lock()
			defer store.mu.Unlock()
			if len(store.seqs) != n {
				return fmt.Errorf("the manager keeps %d of %d log records", len(store.seqs), n)
			}
			return nil
		}
	}
	sendLogs(0, 20)
	eventually(t, 20*time.Second, "the agent's logs reach the manager over TLS", stored(20))

	// The OTLP/gRPC listener speaks TLS too: a gRPC sender trusting the CA
	// exports, one that does not is refused at the handshake.
	exportGRPC := func(creds *tls.Config, seq int) error {
		conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(creds)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		l := plog.NewLogs()
		l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Attributes().PutStr("seq", strconv.Itoa(seq))
		cctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokens["globex-prod"]), 10*time.Second)
		defer cancel()
		_, err = plogotlp.NewGRPCClient(conn).Export(cctx, plogotlp.NewExportRequestFromLogs(l))
		return err
	}
	if err := exportGRPC(clientTLS, 20); err != nil {
		t.Fatalf("OTLP/gRPC over TLS: %v", err)
	}
	eventually(t, 20*time.Second, "the gRPC sender's log reaches the manager over TLS", stored(21))
	if err := exportGRPC(&tls.Config{}, 21); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("OTLP/gRPC trusting only the system's CAs: %v, want certificate signed by unknown authority", err)
	}

	eventually(t, 20*time.Second, "the agent trusting another CA says why it cannot connect", func() error {
		if !strings.Contains(refusedLog.String(), "certificate signed by unknown authority") {
			return fmt.Errorf("its log says:\n%s", refusedLog.String())
		}
		return nil
	})
	if d, err := api.Deployment(ctx, "initech-prod"); err != nil || d.LastCheckin != nil {
		t.Errorf("the agent trusting another CA checked in: %+v, %v", d, err)
	}

	renewed := ca.Server(t, certDir)
	resp, err := api.HTTP.Get(m.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.TLS.PeerCertificates[0].SerialNumber; got.Cmp(renewed.Serial) != 0 {
		t.Errorf("after renewal the manager shows certificate %v, want the renewed %v (the first was %v)", got, renewed.Serial, first.Serial)
	}
	sendLogs(21, 20)
	eventually(t, 20*time.Second, "logs sent after the renewal reach the manager", stored(41))
	since := time.Now()
	eventually(t, 20*time.Second, "the WebSocket agent goes on checking in after the renewal", func() error {
		d, err := api.Deployment(ctx, "acme-prod")
		if err != nil {
			return err
		}
		if !d.Connected || d.LastCheckin == nil || d.LastCheckin.Before(since) {
			return fmt.Errorf("connected %v, last check-in %v", d.Connected, d.LastCheckin)
		}
		return nil
	})
}
