package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/testenv/crashtest"
)

const crashAdmin = "psk_crash-test-admin-token-0123456789"

func crashConfig(dir string) config.Manager {
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", dir, crashAdmin
	return cfg
}

// TestKilledManagerChild is the manager the crash tests kill. Its log goes to
// standard output, so each step of its start is a line the parent can wait for.
func TestKilledManagerChild(t *testing.T) {
	dir, ok := crashtest.Child()
	if !ok {
		t.Skip("runs only as the child of a crash test")
	}
	m, err := New(crashConfig(dir), Settings{Logger: slog.New(slog.NewTextHandler(os.Stdout, nil))})
	if err != nil {
		crashtest.Fail(err)
	}
	crashtest.Report("opening")
	if err := m.Start(context.Background()); err != nil {
		crashtest.Fail(err)
	}
	crashtest.Report("listening", m.URL())
	crashtest.Hold()
}

// startMarkers are lines of the child's start, in order: the kills of a start
// wait for the last marker before their point, so process start-up jitter does
// not move them.
var startMarkers = []string{"opening", `msg="fleet loaded"`, `msg="telemetry ingest ready"`, "listening http"}

// TestKilledFirstStartStartsAgain kills a manager at points spread over its
// first start on a new data directory, and starts one again on what it left:
// that start must succeed every time (issue 17: the WAL of the first start's
// migrations did not replay and the manager never started again).
func TestKilledFirstStartStartsAgain(t *testing.T) {
	kills := crashtest.Kills(t, 20)
	// Where each marker falls in an unkilled start, from "opening".
	p := crashtest.Start(t, "TestKilledManagerChild", t.TempDir())
	p.Await(t, "opening")
	began := time.Now()
	marks := []time.Duration{0}
	for _, m := range startMarkers[1:] {
		p.Await(t, m)
		marks = append(marks, time.Since(began))
	}
	p.Kill(t)
	span := marks[len(marks)-1] * 6 / 5
	for i := range kills {
		at := span * time.Duration(i) / time.Duration(kills-1)
		k := 0
		for k+1 < len(marks) && marks[k+1] <= at {
			k++
		}
		dir := t.TempDir()
		p := crashtest.Start(t, "TestKilledManagerChild", dir)
		p.Await(t, startMarkers[k])
		p.KillAfter(t, at-marks[k])
		m := startAgain(t, dir, fmt.Sprintf("killed %v into its first start (after %q)", at, startMarkers[k]))
		// The admin token of the configuration works, so the manager is usable.
		if _, err := apiclient.New(m.URL(), crashAdmin).Deployments(context.Background(), apiclient.Filter{}); err != nil {
			t.Fatalf("killed %v into its first start: list deployments after starting again: %v", at, err)
		}
		if err := m.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// startAgain starts a manager in this process on dir, failing the test with
// what happened before if it cannot.
func startAgain(t *testing.T, dir, what string) *Manager {
	t.Helper()
	m, err := New(crashConfig(dir), Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("%s: start again: %v", what, err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

// acked is what the manager acknowledged before it was killed.
type acked struct {
	mu       sync.Mutex
	deps     []string
	releases []string
	pins     map[string]string // deployment → release
	logs     map[string]string // body → deployment
	first    chan struct{}     // closed at the first acknowledged write
	once     sync.Once
}

// TestKilledUnderLoadKeepsEveryAcknowledgedWrite kills a manager while clients
// create deployments and releases, pin deployments and send telemetry, and
// checks that a manager started again on its data has every write it answered
// with success.
func TestKilledUnderLoadKeepsEveryAcknowledgedWrite(t *testing.T) {
	kills := crashtest.Kills(t, 6)
	for i := range kills {
		dir := t.TempDir()
		p := crashtest.Start(t, "TestKilledManagerChild", dir)
		url := strings.TrimPrefix(p.Await(t, "listening http"), "listening ")
		a := &acked{pins: map[string]string{}, logs: map[string]string{}, first: make(chan struct{})}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() { fleetLoad(ctx, url, fmt.Sprintf("w%d", w), a) })
		}
		select {
		case <-a.first:
		case <-time.After(time.Minute):
			t.Fatal("no write acknowledged within a minute")
		}
		// From the first acknowledged write, the kill moves through a second of load.
		at := time.Second * time.Duration(i) / time.Duration(max(1, kills-1))
		p.KillAfter(t, at)
		stop()
		wg.Wait()
		what := fmt.Sprintf("killed %v into the load (%d deployments, %d releases, %d pins, %d log batches acknowledged)",
			at, len(a.deps), len(a.releases), len(a.pins), len(a.logs))
		t.Log(what)
		m := startAgain(t, dir, what)
		checkAcked(t, m, a, what)
		if err := m.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// fleetLoad creates deployments, releases and pins through the API, and sends
// a log batch as each new deployment, until ctx ends or the manager stops
// answering.
func fleetLoad(ctx context.Context, url, name string, a *acked) {
	c := apiclient.New(url, crashAdmin)
	for n := 0; ctx.Err() == nil; n++ {
		id := fmt.Sprintf("%s-%d", name, n)
		d, err := c.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: "acme", Stack: "shop-" + name})
		if err != nil {
			return
		}
		a.mu.Lock()
		a.deps = append(a.deps, id)
		a.mu.Unlock()
		a.once.Do(func() { close(a.first) })
		rel := fmt.Sprintf("1.%d.0", n)
		if _, err := c.CreateRelease(ctx, apitypes.NewRelease{Stack: "shop-" + name, Version: rel}); err != nil {
			return
		}
		a.mu.Lock()
		a.releases = append(a.releases, "shop-"+name+" "+rel)
		a.mu.Unlock()
		if _, err := c.PinDeployment(ctx, id, rel, "crash test"); err != nil {
			return
		}
		a.mu.Lock()
		a.pins[id] = rel
		a.mu.Unlock()
		body := "log of " + id
		if err := sendLog(ctx, url, d.Token, body, ""); err != nil {
			return
		}
		a.mu.Lock()
		a.logs[body] = id
		a.mu.Unlock()
	}
}

// sendLog sends one log record as the deployment whose agent token is token,
// with the delivery protocol's batch id when batch is not empty.
func sendLog(ctx context.Context, url, token, body, batch string) error {
	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	lr.Body().SetStr(body)
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/logs", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", otlp.ContentTypeProto)
	req.Header.Set("Authorization", "Bearer "+token)
	if batch != "" {
		req.Header.Set(otlp.BatchHeader, batch)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func checkAcked(t *testing.T, m *Manager, a *acked, what string) {
	t.Helper()
	ctx := context.Background()
	c := apiclient.New(m.URL(), crashAdmin)
	for _, id := range a.deps {
		d, err := c.Deployment(ctx, id)
		if err != nil {
			t.Fatalf("%s: acknowledged deployment %s: %v", what, id, err)
		}
		if rel, ok := a.pins[id]; ok && (d.Pin == nil || d.Pin.Release != rel) {
			t.Fatalf("%s: acknowledged pin of %s to %s: deployment shows pin %+v", what, id, rel, d.Pin)
		}
	}
	rels, err := c.Releases(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range rels {
		have[r.Stack+" "+r.Version] = true
	}
	for _, r := range a.releases {
		if !have[r] {
			t.Fatalf("%s: acknowledged release %s is gone", what, r)
		}
	}
	for body, id := range a.logs {
		page, err := m.Telemetry().Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: id, Since: time.Now().Add(-time.Hour)}, Contains: body})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Logs) != 1 {
			t.Fatalf("%s: acknowledged log %q: found %d records", what, body, len(page.Logs))
		}
	}
}
