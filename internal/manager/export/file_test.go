package export

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/retry"
)

// readLines decodes every line of the file at path as an OTLP-JSON export request,
// telling the signal from the line's top-level key as a reader of the file would.
func readLines(t *testing.T, path string) []received {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []received
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &top); err != nil {
			t.Fatalf("%s line %d is not JSON: %v", path, len(out)+1, err)
		}
		var sig otlp.Signal
		switch {
		case top["resourceSpans"] != nil:
			sig = otlp.Traces
		case top["resourceMetrics"] != nil:
			sig = otlp.Metrics
		case top["resourceLogs"] != nil:
			sig = otlp.Logs
		default:
			t.Fatalf("%s line %d has no resource key: %.100s", path, len(out)+1, sc.Bytes())
		}
		r, err := decodeOTLP(sig, sc.Bytes(), true)
		if err != nil {
			t.Fatalf("%s line %d does not decode as OTLP-JSON: %v", path, len(out)+1, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFileWritesJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "telemetry.jsonl")
	e, err := New(Config{Name: "local", Type: "file", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var wantLines []received
	for _, sig := range otlp.Signals {
		if err := e.Export(context.Background(), testBatch(t, sig, "dep-a", 7)); err != nil {
			t.Fatalf("Export(%s) = %v", sig, err)
		}
		wantLines = append(wantLines, want(sig, "dep-a", 7))
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := e.Export(context.Background(), testBatch(t, otlp.Logs, "dep-a", 1)); err == nil {
		t.Error("Export after Close succeeded")
	}

	// A restarted manager appends rather than truncating what is already there.
	e2 := newExporter(t, Config{Name: "local", Type: "file", Path: path})
	if err := e2.Export(context.Background(), testBatch(t, otlp.Logs, "dep-b", 2)); err != nil {
		t.Fatal(err)
	}
	if err := e2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantLines = append(wantLines, want(otlp.Logs, "dep-b", 2))

	got := readLines(t, path)
	if len(got) != len(wantLines) {
		t.Fatalf("file has %d lines, want %d", len(got), len(wantLines))
	}
	for i := range got {
		if !equalReceived(got[i], wantLines[i]) {
			t.Errorf("line %d = %+v\nwant %+v", i+1, got[i], wantLines[i])
		}
	}

	garbage := testBatch(t, otlp.Logs, "dep-a", 1)
	garbage.Data = []byte{0xff}
	if err := newExporter(t, Config{Name: "local", Type: "file", Path: path}).Export(context.Background(), garbage); err == nil ||
		!retry.IsPermanent(err) || !strings.Contains(err.Error(), `file exporter "local"`) {
		t.Errorf("Export of an undecodable batch = %v, want a permanent error naming the exporter", err)
	}
}

func TestFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "telemetry.jsonl")
	const maxBytes = 1 << 20
	e := newExporter(t, Config{Name: "local", Type: "file", Path: path, MaxSizeMB: 1, MaxBackups: 2})

	// Each batch is about 200 KiB of JSON, so four or five fit in a file and twenty
	// batches need more files than are kept.
	pad := strings.Repeat("x", 2000)
	const batches = 20
	for i := range batches {
		b := testBatch(t, otlp.Logs, fmt.Sprintf("dep-%02d", i), 100)
		b.Data = testPayload(t, otlp.Logs, b.DeploymentID, 100, pad)
		if err := e.Export(context.Background(), b); err != nil {
			t.Fatalf("Export %d = %v", i, err)
		}
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	if want := []string{"telemetry.jsonl", "telemetry.jsonl.1", "telemetry.jsonl.2"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("directory holds %v, want %v", names, want)
	}

	// Reading the kept files oldest first must give the newest batches, in order and
	// without a gap: rotation drops only whole, oldest files.
	var deployments []string
	for _, name := range []string{"telemetry.jsonl.2", "telemetry.jsonl.1", "telemetry.jsonl"} {
		p := filepath.Join(dir, name)
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > maxBytes {
			t.Errorf("%s is %d bytes, want at most %d", name, info.Size(), maxBytes)
		}
		for _, r := range readLines(t, p) {
			deployments = append(deployments, r.Deployments[0])
		}
	}
	if len(deployments) == 0 || len(deployments) >= batches {
		t.Fatalf("kept %d batches of %d, want some but not all", len(deployments), batches)
	}
	for i, d := range deployments {
		if want := fmt.Sprintf("dep-%02d", batches-len(deployments)+i); d != want {
			t.Fatalf("kept batches %v, want the newest %d in order", deployments, len(deployments))
		}
	}
}

func TestFileConcurrentExports(t *testing.T) {
	path := filepath.Join(t.TempDir(), "telemetry.jsonl")
	e := newExporter(t, Config{Name: "local", Type: "file", Path: path, MaxSizeMB: 1, MaxBackups: 50})

	const writers, each = 8, 25
	var batches [writers][]consumer.Batch
	for w := range writers {
		for i := range each {
			sig := otlp.Signals[i%len(otlp.Signals)]
			batches[w] = append(batches[w], testBatch(t, sig, fmt.Sprintf("dep-%d", w), 200))
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range batches[w] {
				if err := e.Export(context.Background(), b); err != nil {
					t.Errorf("Export = %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Every line, across every rotated file, must be whole.
	files, err := filepath.Glob(path + "*")
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for _, f := range files {
		for _, r := range readLines(t, f) {
			if w := want(r.Signal, r.Deployments[0], 200); !equalReceived(r, w) {
				t.Fatalf("%s holds a damaged batch %+v", f, r)
			}
			lines++
		}
	}
	if lines != writers*each {
		t.Errorf("found %d lines in %d files, want %d", lines, len(files), writers*each)
	}
	if len(files) < 2 {
		t.Errorf("expected the writes to rotate the file at least once, found %v", files)
	}
}

func TestFileNewFailsOnUnwritablePath(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Config{Name: "local", Type: "file", Path: filepath.Join(blocker, "telemetry.jsonl")})
	if err == nil || !strings.Contains(err.Error(), `file exporter "local"`) {
		t.Errorf("New under a regular file = %v, want an error naming the exporter", err)
	}
}
