package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/agent/forward"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// upstream is a manager stand-in that answers 503 until it is up, then counts records
// and kicks got.
type upstream struct {
	up      atomic.Bool
	mu      sync.Mutex
	records int
	got     chan struct{}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !u.up.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	logs, err := readLogs(r)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	u.mu.Lock()
	u.records += logs.LogRecordCount()
	u.mu.Unlock()
	select {
	case u.got <- struct{}{}:
	default: // a kick is pending already
	}
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.records
}

// logWatch is a log handler that kicks seen whenever a record with message msg is
// logged: the pipeline logs its state changes, and a test can wait for one.
type logWatch struct {
	msg  string
	seen chan struct{}
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *logWatch) WithGroup(string) slog.Handler            { return w }
func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message == w.msg {
		select {
		case w.seen <- struct{}{}:
		default: // a kick is pending already
		}
	}
	return nil
}

// TestFullDiskIsRefusedThenRecovered fills the disk under the agent's queue: the
// application is told 503 (and loses nothing it was told was accepted), and once
// space is back the agent accepts again without a restart and delivers everything.
func TestFullDiskIsRefusedThenRecovered(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk")
	os.Mkdir(disk, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", disk).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "a full disk is simulated with a small tmpfs, and mounting one is not permitted here (run as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", disk).Run() })

	up := &upstream{got: make(chan struct{}, 1)}
	srv := httptest.NewServer(up)
	defer srv.Close()
	reopened := &logWatch{msg: "agent queue reopened after a write failure", seen: make(chan struct{}, 1)}
	p, err := New(Settings{
		Logger:   slog.New(reopened),
		HTTPAddr: "127.0.0.1:0", QueueDir: filepath.Join(disk, "queue"),
		Queue:          queue.Options{MaxBytes: 64 << 20, SegmentBytes: 1 << 20},
		Forward:        forward.Settings{Endpoint: srv.URL, Token: "pdt_x", Linger: -1, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		RepairInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	_, httpAddr := p.Addrs()

	post := func() int {
		l := plog.NewLogs()
		random := make([]byte, 16<<10) // incompressible, so the queue really fills the disk
		rand.Read(random)
		l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr(hex.EncodeToString(random))
		body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		resp, err := http.Post("http://"+httpAddr+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	acked, refused := 0, 0
	for i := 0; i < 400 && refused == 0; i++ {
		switch code := post(); code {
		case 200:
			acked++
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("unexpected status %d while the disk fills", code)
		}
	}
	if refused == 0 || acked == 0 {
		t.Fatalf("acked %d, refused %d: the disk never filled", acked, refused)
	}
	// Space comes back (the manager returns and the queue drains). Every refusal
	// from here on is followed by a reopening of the queue, so try again after each.
	up.up.Store(true)
	timeout := time.After(15 * time.Second)
	for post() != 200 {
		select {
		case <-reopened.seen:
		case <-timeout:
			t.Fatal("the agent did not accept again after the disk had room")
		}
	}
	acked++
	for up.count() < acked {
		select {
		case <-up.got:
		case <-timeout:
			t.Fatalf("upstream has %d of %d acknowledged records", up.count(), acked)
		}
	}
	if got := up.count(); got != acked {
		t.Errorf("upstream has %d records, want exactly the %d acknowledged", got, acked)
	}
}
