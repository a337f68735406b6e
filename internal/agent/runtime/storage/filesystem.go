package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
)

// filesystem measures the volumes holding the configured paths with statfs(2).
type filesystem struct {
	Base
	paths []string
	// mu guards blocked: the paths whose statfs has not returned. A statfs on a
	// dead network mount can block in the kernel past any deadline; the source
	// stops waiting at the deadline but never starts a second call on that path
	// while the first is stuck, so stuck goroutines stay one per path.
	mu      sync.Mutex
	blocked map[string]bool
	// statfs is syscall.Statfs; tests make it block.
	statfs func(string, *syscall.Statfs_t) error
}

func newFilesystem(c Config) *filesystem {
	return &filesystem{Base: NewBase(c), paths: c.Paths, blocked: map[string]bool{}, statfs: syscall.Statfs}
}

// volume is what statfs and the mount lookup say about one path.
type volume struct {
	st         syscall.Statfs_t
	mountpoint string
	err        error
}

// Collect appends system.filesystem.usage (used, free, reserved),
// system.filesystem.limit, system.filesystem.utilization and
// periscope.filesystem.inodes.usage for each path; a path that cannot be
// measured is skipped and named in the error.
func (f *filesystem) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	defer DropEmpty(ms, ms.Len())
	usage := runtime.Sum(ms, "system.filesystem.usage", "By", "Bytes of the volume by state: used, free (available to unprivileged users) and reserved (for root).", false)
	limit := runtime.Sum(ms, "system.filesystem.limit", "By", "Total bytes of the volume.", false)
	util := runtime.Gauge(ms, "system.filesystem.utilization", "1", "Fraction of the volume used, of what is used or available to unprivileged users (as df's Use%).")
	inodes := runtime.Sum(ms, "periscope.filesystem.inodes.usage", "{inode}", "Inodes of the volume by state: used or free.", false)
	var errs []error
	for _, p := range f.paths {
		v, err := f.stat(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bsize := uint64(v.st.Bsize)
		// Some network and FUSE filesystems report more available than free
		// blocks; the differences saturate rather than wrap around.
		used, free, reserved := sub(v.st.Blocks, v.st.Bfree)*bsize, v.st.Bavail*bsize, sub(v.st.Bfree, v.st.Bavail)*bsize
		kv := []string{"system.filesystem.mountpoint", Clip(v.mountpoint, MaxAttrLen), "periscope.filesystem.path", Clip(p, MaxAttrLen), AttrSource, f.Name()}
		runtime.Point(usage, now, int64(used), append(kv, "system.filesystem.state", "used")...)
		runtime.Point(usage, now, int64(free), append(kv, "system.filesystem.state", "free")...)
		runtime.Point(usage, now, int64(reserved), append(kv, "system.filesystem.state", "reserved")...)
		runtime.Point(limit, now, int64(v.st.Blocks*bsize), kv...)
		if used+free > 0 {
			runtime.FloatPoint(util, now, float64(used)/float64(used+free), kv...)
		}
		// Some filesystems (btrfs, overlay on some kernels) report no inode
		// table at all; zeros would read as "no inodes left".
		if v.st.Files > 0 {
			runtime.Point(inodes, now, int64(sub(v.st.Files, v.st.Ffree)), append(kv, "system.filesystem.state", "used")...)
			runtime.Point(inodes, now, int64(v.st.Ffree), append(kv, "system.filesystem.state", "free")...)
		}
	}
	if len(errs) > 0 {
		return f.Errorf("%w", errors.Join(errs...))
	}
	return nil
}

// sub is a - b, or 0 when b is larger.
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// stat runs statfs and the mount lookup for path, giving up at ctx's deadline.
func (f *filesystem) stat(ctx context.Context, path string) (volume, error) {
	f.mu.Lock()
	if f.blocked[path] {
		f.mu.Unlock()
		return volume{}, fmt.Errorf("statfs %s: still blocked since an earlier collection", path)
	}
	f.blocked[path] = true
	f.mu.Unlock()
	done := make(chan volume, 1) // buffered: a late answer never blocks the goroutine
	go func() {
		var v volume
		if err := f.statfs(path, &v.st); err != nil {
			v.err = fmt.Errorf("statfs %s: %w", path, err)
		} else {
			v.mountpoint, v.err = mountpoint(path)
		}
		f.mu.Lock()
		delete(f.blocked, path)
		f.mu.Unlock()
		done <- v
	}()
	select {
	case v := <-done:
		return v, v.err
	case <-ctx.Done():
		return volume{}, fmt.Errorf("statfs %s: %w", path, ctx.Err())
	}
}

// mountpoint finds the mount point of the volume holding path: the highest
// directory above it on the same device. It reads no mount table, so it needs
// nothing from /proc and works inside any container.
func mountpoint(path string) (string, error) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", path, err)
	}
	dev := func(p string) (uint64, error) {
		fi, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, fmt.Errorf("stat %s: no device number", p)
		}
		return uint64(st.Dev), nil
	}
	d, err := dev(p)
	if err != nil {
		return "", fmt.Errorf("stat %s: %w", path, err)
	}
	for {
		parent := filepath.Dir(p)
		if parent == p {
			return p, nil
		}
		pd, err := dev(parent)
		if err != nil || pd != d {
			// An unreadable parent is above anything this agent may measure.
			return p, nil
		}
		p = parent
	}
}
