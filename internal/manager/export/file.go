package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// fileExporter appends OTLP-JSON lines to a local file, rotating it by size.
type fileExporter struct {
	name       string
	path       string
	maxBytes   int64 // 0: never rotate
	maxBackups int

	mu     sync.Mutex // serialises writes so lines never interleave, and rotation
	f      *os.File   // nil after a failed rotation until the next Export reopens it
	size   int64
	closed bool
}

func newFile(c Config) (*fileExporter, error) {
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o755); err != nil {
		return nil, err
	}
	e := &fileExporter{
		name:       c.Name,
		path:       c.Path,
		maxBytes:   int64(c.MaxSizeMB) << 20,
		maxBackups: c.MaxBackups,
	}
	// Open now so a bad path fails at startup rather than on the first batch.
	if err := e.open(); err != nil {
		return nil, err
	}
	return e, nil
}

// open opens the file for appending, so a restart continues where it left off.
func (e *fileExporter) open() error {
	f, err := os.OpenFile(e.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	e.f, e.size = f, info.Size()
	return nil
}

// Name returns the exporter's configured name.
func (e *fileExporter) Name() string { return e.name }

// Export appends b to the file as one line of OTLP-JSON.
func (e *fileExporter) Export(_ context.Context, b consumer.Batch) error {
	if err := e.export(b); err != nil {
		return fmt.Errorf("file exporter %q: %w", e.name, err)
	}
	return nil
}

func (e *fileExporter) export(b consumer.Batch) error {
	line, err := otlpJSON(b)
	if err != nil {
		return err
	}
	line = append(line, '\n')

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("exporter is closed")
	}
	if e.f == nil {
		if err := e.open(); err != nil {
			return err
		}
	}
	// A line longer than the limit still gets written, alone in its file.
	if e.maxBytes > 0 && e.size > 0 && e.size+int64(len(line)) > e.maxBytes {
		if err := e.rotate(); err != nil {
			return err
		}
	}
	n, err := e.f.Write(line)
	e.size += int64(n)
	return err
}

// rotate shifts <path>.i to <path>.i+1, dropping the oldest, and moves the current
// file to <path>.1. The caller holds mu.
func (e *fileExporter) rotate() error {
	err := e.f.Close()
	e.f = nil
	if err != nil {
		return fmt.Errorf("rotate %s: %w", e.path, err)
	}
	backup := func(i int) string { return fmt.Sprintf("%s.%d", e.path, i) }
	// Renaming onto the oldest backup replaces it, which is what deletes it.
	for i := e.maxBackups - 1; i >= 1; i-- {
		if err := os.Rename(backup(i), backup(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate %s: %w", e.path, err)
		}
	}
	if err := os.Rename(e.path, backup(1)); err != nil {
		return fmt.Errorf("rotate %s: %w", e.path, err)
	}
	return e.open()
}

// Close flushes the file to disk and closes it.
func (e *fileExporter) Close(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.f == nil {
		return nil
	}
	err := errors.Join(e.f.Sync(), e.f.Close())
	e.f = nil
	if err != nil {
		return fmt.Errorf("file exporter %q: %w", e.name, err)
	}
	return nil
}
