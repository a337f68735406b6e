// Package statefile writes and reads the agent's small state files in its data
// directory (identity, token, release state, kept policies and declarations):
// written whole or not at all, 0600, and read back within a bound, because a
// file on disk is trusted no more than the network.
package statefile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write writes body to name in dir (created 0700) as a 0600 file, whole: a
// temporary file, synced, then renamed, and the directory synced, so a crash
// leaves the old file or the new.
func Write(dir, name string, body []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create agent data directory: %w", err)
	}
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		// The rename itself survives a crash only once the directory is synced.
		if d, derr := os.Open(dir); derr == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Read reads at most limit bytes of path, failing on a longer file.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, nil
}
