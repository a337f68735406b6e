package storage

import (
	"context"
	"errors"
	"sync/atomic"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/storagetest"
)

func TestFilesystemFiguresMatchStatfs(t *testing.T) {
	dir := t.TempDir()
	src := newSource(t, Config{Kind: KindFilesystem, Name: "data", Paths: []string{dir}})
	ms, err := storagetest.Collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	bsize := int64(st.Bsize)
	at := []string{"periscope.filesystem.path", dir, AttrSource, "filesystem/data"}
	state := func(s string) []string { return append(at, "system.filesystem.state", s) }

	used := storagetest.Value(t, ms, "system.filesystem.usage", "By", state("used")...)
	free := storagetest.Value(t, ms, "system.filesystem.usage", "By", state("free")...)
	reserved := storagetest.Value(t, ms, "system.filesystem.usage", "By", state("reserved")...)
	limit := storagetest.Value(t, ms, "system.filesystem.limit", "By", at...)
	// The volume's size does not move while the machine writes; the split
	// between used and free does, by what others wrote in between.
	if want := int64(st.Blocks) * bsize; limit != want {
		t.Errorf("limit %d, statfs says %d", limit, want)
	}
	if used+free+reserved != limit {
		t.Errorf("used %d + free %d + reserved %d != limit %d", used, free, reserved, limit)
	}
	const slack = 256 << 20
	if want := int64(st.Blocks-st.Bfree) * bsize; math.Abs(float64(used-want)) > slack {
		t.Errorf("used %d, statfs says %d", used, want)
	}
	if want := int64(st.Bavail) * bsize; math.Abs(float64(free-want)) > slack {
		t.Errorf("free %d, statfs says %d", free, want)
	}
	util := storagetest.Points(t, ms, "system.filesystem.utilization", "1", at...)
	if len(util) != 1 || math.Abs(util[0].DoubleValue()-float64(used)/float64(used+free)) > 1e-9 {
		t.Errorf("utilization %v, want used/(used+free) = %v", util, float64(used)/float64(used+free))
	}
	if st.Files > 0 {
		iu := storagetest.Value(t, ms, "periscope.filesystem.inodes.usage", "{inode}", state("used")...)
		ifree := storagetest.Value(t, ms, "periscope.filesystem.inodes.usage", "{inode}", state("free")...)
		if iu+ifree != int64(st.Files) {
			t.Errorf("inodes used %d + free %d != statfs total %d", iu, ifree, st.Files)
		}
	}

	// The mount point is an ancestor of the path on the same device, and its
	// parent (if any) is on another.
	mp, _ := storagetest.Points(t, ms, "system.filesystem.limit", "By", at...)[0].Attributes().Get("system.filesystem.mountpoint")
	if !strings.HasPrefix(dir, mp.Str()) || !sameDevice(t, mp.Str(), dir) {
		t.Errorf("mountpoint %q is not an ancestor of %s on its device", mp.Str(), dir)
	}
	if parent := filepath.Dir(mp.Str()); parent != mp.Str() && sameDevice(t, parent, dir) {
		t.Errorf("mountpoint %q: its parent %s is on the same device", mp.Str(), parent)
	}
}

func sameDevice(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev
}

// TestFilesystemMissingPathFailsAlone: a missing path is an error naming it,
// and the other paths are still measured.
func TestFilesystemMissingPathFailsAlone(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "gone")
	src := newSource(t, Config{Kind: KindFilesystem, Name: "data", Paths: []string{missing, dir}})
	ms, err := storagetest.Collect(t, src)
	if err == nil || !strings.Contains(err.Error(), "filesystem/data") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Collect: %v, want an error naming the source and %s", err, missing)
	}
	if n := len(storagetest.Points(t, ms, "system.filesystem.limit", "By", "periscope.filesystem.path", dir)); n != 1 {
		t.Errorf("%d limit points for the path that exists, want 1", n)
	}
	if n := len(storagetest.Points(t, ms, "system.filesystem.limit", "By", "periscope.filesystem.path", missing)); n != 0 {
		t.Errorf("%d limit points for the missing path", n)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatal("the missing path exists")
	}
}

// TestFilesystemAbandonsABlockedStatfs: a statfs that does not return (a dead
// network mount) fails the collection at its deadline, is not started again
// while it hangs, and the path is measured again once it returns.
func TestFilesystemAbandonsABlockedStatfs(t *testing.T) {
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		src := newSource(t, Config{Kind: KindFilesystem, Name: "nfs", Paths: []string{dir}}).(*filesystem)
		release := make(chan struct{})
		var calls atomic.Int32
		src.statfs = func(path string, st *syscall.Statfs_t) error {
			if calls.Add(1) == 1 {
				<-release
			}
			return syscall.Statfs(path, st)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ms := pmetric.NewMetricSlice()
		// In the bubble, the deadline passes as soon as everything waits on it.
		if err := src.Collect(ctx, storagetest.Now, ms); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("blocked Collect: %v, want the deadline", err)
		}
		if ms.Len() != 0 {
			t.Errorf("blocked Collect sent %v", storagetest.Names(ms))
		}
		if _, err := storagetest.Collect(t, src); err == nil || !strings.Contains(err.Error(), "still blocked") {
			t.Fatalf("Collect while statfs hangs: %v, want still blocked", err)
		}
		close(release)
		synctest.Wait() // the first statfs returns and frees its path
		ms, err := storagetest.Collect(t, src)
		if err != nil {
			t.Fatalf("Collect after statfs returned: %v", err)
		}
		if n := len(storagetest.Points(t, ms, "system.filesystem.limit", "By")); n != 1 {
			t.Errorf("%d limit points after recovery, want 1", n)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("statfs called %d times, want 2 (never again while the first hung)", n)
		}
	})
}
