//go:build unix

package manager

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/periscope-dev/periscope/internal/config"
)

// TestDataFilesArePrivate runs a manager, as a process with the usual umask
// 022 would, on a data directory an older release left readable (0755, with a
// 0644 file), writes through every part that keeps files there, and checks that
// no file or directory under it is open to group or others: the fleet and
// telemetry databases, their write-ahead logs, the delivered-batch positions
// and the exporters' queues.
func TestDataFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ingest-watermarks.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := crashConfig(dir)
	// An exporter nobody listens to keeps what it is given in its disk queue.
	cfg.Exporters = []config.Exporter{{Name: "vendor", Type: "otlphttp", Endpoint: "http://127.0.0.1:1"}}
	m, err := New(cfg, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	ctx := context.Background()
	writeThroughEveryStore(ctx, t, m)
	checkPrivate(t, dir, "while the manager runs")
	if err := m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, dir, "after shutdown")
}

func checkPrivate(t *testing.T, dir, when string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		seen[rel] = true
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %s has mode %v, open to group or others", when, rel, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have seen what the test is about.
	for _, want := range []string{".", "periscope.duckdb", "telemetry.duckdb", "ingest-watermarks.json", "exporters"} {
		if !seen[want] {
			t.Errorf("%s: no %s in the data directory (have %v)", when, want, seen)
		}
	}
	if when != "after shutdown" && !seen["periscope.duckdb.wal"] && !seen["telemetry.duckdb.wal"] {
		t.Errorf("%s: no write-ahead log to check (have %v)", when, seen)
	}
}
