package manager

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// private is the permission bits no file or directory under the data directory
// may have: none for group or others. The directory holds the fleet (agent
// token hashes, pins, audit) and the customers' telemetry.
const private fs.FileMode = 0o077

// prepareDataDir creates dir with mode 0700, and takes group and other
// permissions off it and everything in it, so files an older release left
// readable (0644 in a 0755 directory) are private after an upgrade. It also
// restricts the process's umask (restrictUmask), because DuckDB creates its
// write-ahead logs, their checkpoint copies and its spill files itself, anew
// at every checkpoint, with modes only the umask reaches.
func prepareDataDir(dir string) error {
	restrictUmask()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", dir, err)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // the link's target is not ours to change
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&private != 0 {
			return os.Chmod(path, info.Mode().Perm()&^private)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("make data directory %s private: %w", dir, err)
	}
	return nil
}
