package duckdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/periscope-dev/periscope/internal/store"
)

// probeBytes is what Writable writes to tell whether the disk has room again:
// with less free, a database is as good as full.
const probeBytes = 64 << 10

// cannotWrite tells whether err is the database failing to write its files (a
// full disk, an exhausted quota, an I/O error) and, if so, the reason in words
// safe to show anyone. DuckDB reports these as text ("Could not write file …:
// No space left on device"), so the text is what there is to go by; Go's own
// file errors (the probe's) read the same, from the system's strerror.
func cannotWrite(err error) (reason string, ok bool) {
	if err == nil {
		return "", false
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "no space left on device"):
		return "no space left on device", true
	case strings.Contains(msg, "disk quota exceeded"):
		return "disk quota exceeded", true
	case strings.Contains(msg, "could not write file") || strings.Contains(msg, "input/output error"):
		return "cannot write its files", true
	}
	return "", false
}

// checkWrite takes the outcome of a write: a success clears a failure Writable
// reports, and a failure to write the files is recorded and marked
// store.ErrUnavailable.
func (s *Store) checkWrite(err error) error {
	if err == nil {
		if s.unwritable.Load() != nil {
			s.unwritable.Store(nil)
		}
		return nil
	}
	reason, ok := cannotWrite(err)
	if !ok {
		return err
	}
	s.unwritable.Store(&reason)
	return fmt.Errorf("%w (%s): %w", store.ErrUnavailable, reason, err)
}

// Writable tells whether the store can write: nil, or store.ErrUnavailable
// with the reason (words safe to show anyone). It answers from the last write;
// after one failed, it writes and removes a small file beside the database to
// see whether there is room again, and answers nil once there is.
func (s *Store) Writable(context.Context) error {
	reason := s.unwritable.Load()
	if reason == nil {
		return nil
	}
	if err := probe(s.dir); err != nil {
		if r, ok := cannotWrite(err); ok {
			return fmt.Errorf("%w: %s", store.ErrUnavailable, r)
		}
		return fmt.Errorf("%w: %s", store.ErrUnavailable, *reason)
	}
	s.unwritable.CompareAndSwap(reason, nil)
	return nil
}

// probe writes probeBytes to a new file in dir, syncs and removes it.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, FileName+".probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeBytes))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", filepath.Join(dir, filepath.Base(f.Name())), err)
	}
	return nil
}
