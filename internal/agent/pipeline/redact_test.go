package pipeline

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/agent/forward"
	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// readLogs reads the forwarder's request as the manager would.
func readLogs(r *http.Request) (plog.Logs, error) {
	data, err := otlp.Decompress(r.Header.Get("Content-Encoding"), r.Body, 64<<20)
	if err != nil {
		return plog.Logs{}, err
	}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(data); err != nil {
		return plog.Logs{}, err
	}
	return req.Logs(), nil
}

// bodies is a manager stand-in that keeps the log bodies it receives.
type bodies struct {
	mu  sync.Mutex
	got []string
	hit chan struct{}
}

func (b *bodies) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	logs, err := readLogs(r)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	b.mu.Lock()
	rls := logs.ResourceLogs()
	for i := range rls.Len() {
		for _, sl := range rls.At(i).ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				b.got = append(b.got, lr.Body().AsString())
			}
		}
	}
	b.mu.Unlock()
	b.hit <- struct{}{}
}

// recorder keeps what the pipeline tells its Recorder.
type recorder struct {
	mu      sync.Mutex
	sent    int
	removed map[string]int
	kick    chan struct{}
}

func (r *recorder) Sent(_ otlp.Signal, records, _ int) {
	r.mu.Lock()
	r.sent += records
	r.mu.Unlock()
	r.kick <- struct{}{}
}

func (r *recorder) Removed(_ otlp.Signal, st *redact.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rm := range st.Removals {
		r.removed[rm.Reason.String()+" "+rm.Key] += rm.Count
	}
}

// Personal data the application logs never reaches the manager; what was removed is
// counted in the self-metrics and told to the recorder; records the policy drops are
// acknowledged and never sent.
func TestRedactionBeforeTheQueue(t *testing.T) {
	up := &bodies{hit: make(chan struct{}, 16)}
	srv := httptest.NewServer(up)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	rec := &recorder{removed: map[string]int{}, kick: make(chan struct{}, 16)}
	p, err := New(Settings{
		HTTPAddr: "127.0.0.1:0", QueueDir: filepath.Join(t.TempDir(), "queue"),
		Queue:      queue.Options{MaxBytes: 64 << 20},
		Forward:    forward.Settings{Endpoint: srv.URL, Token: "pdt_x", Linger: -1, InitialBackoff: 10 * time.Millisecond},
		Registerer: reg, Recorder: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Redaction(); got.Off || got.Detectors["email"] != "mask" || len(got.URLKeys) == 0 {
		t.Fatalf("a pipeline without a policy runs %+v, want the default", got)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	_, addr := p.Addrs()
	post := func(lines ...string) {
		t.Helper()
		l := plog.NewLogs()
		sl := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
		for _, s := range lines {
			sl.LogRecords().AppendEmpty().Body().SetStr(s)
		}
		body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		resp, err := http.Post("http://"+addr+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	post("login failed for alice@example.com", "order 1234567890123 shipped")
	<-up.hit
	if err := p.SetRedaction(redactpolicy.Merge(redactpolicy.Policy{Body: redactpolicy.BodyRules{DropPatterns: []string{"^TRACE"}}}, redactpolicy.Policy{})); err != nil {
		t.Fatal(err)
	}
	post("TRACE dump of bob@example.com")        // dropped whole: nothing is sent
	post("TRACE again", "card 4111111111111111") // one of two dropped
	<-up.hit

	up.mu.Lock()
	got := strings.Join(up.got, " | ")
	up.mu.Unlock()
	if want := "login failed for [REDACTED:email] | order 1234567890123 shipped | card [REDACTED:card]"; got != want {
		t.Errorf("the manager got %q, want %q", got, want)
	}
	for reason, want := range map[string]float64{"email": 1, "card": 1, "dropped_record": 2} {
		if n := testutil.ToFloat64(p.metrics.redactions.WithLabelValues("logs", reason)); n != want {
			t.Errorf("periscope_agent_redactions_total{reason=%q} = %v, want %v", reason, n, want)
		}
	}
	if n := testutil.ToFloat64(p.metrics.redactedRecords.WithLabelValues("logs")); n != 2 {
		t.Errorf("redacted records = %v, want 2", n)
	}
	// The forwarder tells the recorder once the manager has answered.
	<-rec.kick
	<-rec.kick
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.sent != 3 || rec.removed["email log.body"] != 1 || rec.removed["card log.body"] != 1 || rec.removed["dropped_record log.body"] != 2 {
		t.Errorf("recorder: sent %d, removed %v", rec.sent, rec.removed)
	}
}
