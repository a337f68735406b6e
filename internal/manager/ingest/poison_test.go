package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/export"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/queue"
)

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); n++ {
	}
	return n
}

// A batch the store refuses a few times is resent by the agent each time; the file
// exporter, which took it the first time, must hold it once, across a crash too.
// Before, sinks ran in order on every resend and the file got a copy per attempt.
func TestEachSinkSeesEachBatchOnceWhateverAnotherAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.jsonl")
		file, err := export.New(export.Config{Name: "file", Type: "file", Path: path})
		if err != nil {
			t.Fatal(err)
		}
		fo, err := export.NewFanout([]export.Exporter{file}, export.FanoutSettings{Dir: filepath.Join(dir, "exporters"),
			Queue: queue.Options{MaxBytes: 1 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		fo.Start(context.Background())
		defer fo.Shutdown(context.Background())

		refusals, stored := 3, 0
		store := consumer.SinkFunc(func(context.Context, consumer.Batch) error {
			if refusals > 0 {
				refusals--
				return consumer.Unavailable("disk full", time.Second)
			}
			stored++
			return nil
		})
		sinks := []Sink{{Name: "exporter/file", Sink: fo.Lanes()[0]}, {Name: "telstore", Sink: store}}
		in, err := New(deployments, sinks, Settings{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for range 2 {
			if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:1-4"))); got != 503 {
				t.Fatalf("store refusing: %d, want 503", got)
			}
		}
		// A crash now, before any periodic flush: the positions must be on disk.
		in, err = New(deployments, sinks, Settings{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:1-4"))); got != 503 {
			t.Fatalf("store refusing after restart: %d, want 503", got)
		}
		if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:1-4"))); got != 200 {
			t.Fatalf("store accepting: %d, want 200", got)
		}
		if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:5-5"))); got != 200 {
			t.Fatalf("next batch: %d, want 200", got)
		}
		synctest.Wait()
		if n := countLines(t, path); n != 2 || stored != 2 {
			t.Errorf("file exporter holds %d batches and the store took %d, want 2 each (one copy of q:1-4, one of q:5-5)", n, stored)
		}
	})
}

// A batch a sink refuses for good is answered 422, set aside (0600 in a 0700
// directory) and counted; its resend is a duplicate, and what follows is stored.
func TestUnstorableBatchIsSetAsideAndDeliveryMovesOn(t *testing.T) {
	dir := t.TempDir()
	file := &sink{}
	var stored []string
	refuse := true
	store := consumer.SinkFunc(func(_ context.Context, b consumer.Batch) error {
		if refuse {
			return consumer.Unstorable("NOT NULL constraint failed: log_rows.body")
		}
		stored = append(stored, b.DeploymentID)
		return nil
	})
	in, err := New(deployments, []Sink{{Name: "exporter/file", Sink: file}, {Name: "telstore", Sink: store}},
		Settings{Dir: dir, Clock: clock.NewFake(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:1-1"))); got != 422 {
		t.Fatalf("unstorable batch: %d, want 422", got)
	}
	refuse = false
	if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:1-1"))); got != 200 {
		t.Fatalf("its resend: %d, want 200 (a duplicate)", got)
	}
	if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:2-2"))); got != 200 {
		t.Fatalf("next batch: %d, want 200", got)
	}
	if len(file.batches) != 2 || len(stored) != 1 {
		t.Errorf("file has %d batches, store %d; want 2 and 1", len(file.batches), len(stored))
	}
	if got := testutil.ToFloat64(in.unstorable.WithLabelValues("telstore", "logs")); got != 1 {
		t.Errorf("unstorable counted %v, want 1", got)
	}
	dd := filepath.Join(dir, DeadLetterDir)
	if info, err := os.Stat(dd); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("dead-letter directory: %v, %v", info, err)
	}
	ents, _ := os.ReadDir(dd)
	if len(ents) != 1 {
		t.Fatalf("dead-letter directory holds %d files, want 1", len(ents))
	}
	info, _ := ents[0].Info()
	if info.Mode().Perm() != 0o600 {
		t.Errorf("dead letter mode %v, want 0600", info.Mode().Perm())
	}
	raw, err := os.ReadFile(filepath.Join(dd, ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	var dl DeadLetter
	if err := json.Unmarshal(raw, &dl); err != nil {
		t.Fatal(err)
	}
	if dl.Deployment != "acme-prod" || dl.Signal != "logs" || dl.Batch != "q:1-1" || dl.Sink != "telstore" ||
		!strings.Contains(dl.Error, "NOT NULL") || !strings.Contains(string(dl.Data), "hello") {
		t.Errorf("dead letter %+v", dl)
	}
}

// The dead-letter directory stays within its bound, deleting the oldest batches
// first, and counts through a restart what earlier runs left there.
func TestDeadLetterKeepsTheNewestWithinItsBound(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	b := consumer.Batch{Signal: 3, DeploymentID: "acme-prod", Records: 1, Data: make([]byte, 1000)}
	size := func() int64 {
		d := newDeadLetter(t.TempDir(), 1<<20, clk)
		path, _ := d.add(b, "", "telstore", consumer.Unstorable("x"))
		info, _ := os.Stat(path)
		os.Remove(path)
		return info.Size()
	}
	one := size()
	d := newDeadLetter(dir, 3*one+one/2, clk)
	var paths []string
	for range 5 {
		clk.Advance(time.Second)
		p, err := d.add(b, "", "telstore", consumer.Unstorable("x"))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if got := testutil.ToFloat64(d.evicted); got != 2 {
		t.Errorf("evicted %v, want 2", got)
	}
	for i, p := range paths {
		_, err := os.Stat(p)
		if kept := err == nil; kept != (i >= 2) {
			t.Errorf("batch %d kept: %v", i, kept)
		}
	}
	// A new run finds the three and evicts the oldest for a fourth.
	d = newDeadLetter(dir, 3*one+one/2, clk)
	clk.Advance(time.Second)
	if _, err := d.add(b, "", "telstore", consumer.Unstorable("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(paths[2]); err == nil {
		t.Errorf("the oldest batch of the earlier run survived")
	}
	if d.bytes != 3*one {
		t.Errorf("%d bytes counted, want %d", d.bytes, 3*one)
	}
}

// Any Periscope-Batch header either parses into a range the rules allow or is
// refused; it never yields a key another deployment or signal could share.
func FuzzParseBatchID(f *testing.F) {
	for _, s := range []string{"", "q1:1-5", "q:0-3", "q:5-1", "q:a-b", ":1-2", "q1", "q:1-18446744073709551615",
		strings.Repeat("x", 65) + ":1-2", "a/b:1-1", "q:1-2-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		key, first, last, ok, err := parseBatchID("acme-prod", 3, v)
		if v == "" {
			if ok || err != nil {
				t.Fatalf("empty header: ok %v, err %v", ok, err)
			}
			return
		}
		if err != nil {
			if ok {
				t.Fatal("refused and ok")
			}
			return
		}
		if !ok || first == 0 || first > last || !strings.HasPrefix(key, "acme-prod/logs/") {
			t.Fatalf("%q: key %q, %d-%d, ok %v", v, key, first, last, ok)
		}
	})
}
