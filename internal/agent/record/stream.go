package record

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// stream appends lines to one of the record's file streams, rotating by size and
// keeping a bounded number of files. It is used by one flush at a time.
type stream struct {
	dir, prefix string
	maxBytes    int64
	maxFiles    int

	f    *os.File
	seq  uint64 // the current (or, with f nil, the last) file's number; 0: none yet
	size int64
	// last is the newest time written to the current file: a line older than it
	// starts a new file, so times within a file never go backwards.
	last time.Time
	// fresh forces the next write into a new file: after a failed write, whose
	// file may end in a torn line.
	fresh bool
	// torn says the last file ends without a newline (a crash mid-write), so an
	// append must end that line first.
	torn bool
}

// openStream learns where the stream left off, reading only the newest file's edges.
func openStream(dir, prefix string, maxBytes int64, maxFiles int) (*stream, error) {
	s := &stream{dir: dir, prefix: prefix, maxBytes: maxBytes, maxFiles: maxFiles}
	files, err := listFiles(dir, prefix)
	if err != nil || len(files) == 0 {
		return s, err
	}
	newest := files[len(files)-1]
	s.seq = newest.seq
	f, err := os.Open(newest.path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", newest.path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", newest.path, err)
	}
	s.size = st.Size()
	_, last, torn, ok := edges(f, s.size)
	// A file whose end cannot be read is not appended to.
	s.last, s.torn, s.fresh = last, torn, !ok && s.size > 0
	return s, nil
}

// write appends lines (each ending in a newline, with its time) to the stream.
func (s *stream) write(lines []timedLine) error {
	var buf []byte
	for _, l := range lines {
		if s.f == nil {
			if err := s.open(); err != nil {
				return err
			}
			if s.torn {
				buf = append(buf, '\n')
				s.torn = false
			}
		}
		full := s.size+int64(len(buf)+len(l.b)) > s.maxBytes && s.size+int64(len(buf)) > 0
		if full || l.t.Before(s.last) {
			if err := s.flushBuf(buf); err != nil {
				return err
			}
			buf = buf[:0]
			if err := s.rotate(); err != nil {
				return err
			}
		}
		buf = append(buf, l.b...)
		s.last = l.t
	}
	if err := s.flushBuf(buf); err != nil {
		return err
	}
	if s.f != nil {
		if err := s.f.Sync(); err != nil {
			return s.fail(fmt.Errorf("sync %s: %w", s.f.Name(), err))
		}
	}
	return nil
}

func (s *stream) flushBuf(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	n, err := s.f.Write(buf)
	s.size += int64(n)
	if err != nil {
		return s.fail(fmt.Errorf("write %s: %w", s.f.Name(), err))
	}
	return nil
}

// fail closes the current file after a failed write, so the next write starts a
// new one instead of appending after a torn line.
func (s *stream) fail(err error) error {
	s.close()
	s.fresh = true
	return err
}

// open opens the newest file for appending if it has room, else starts a new one.
func (s *stream) open() error {
	if s.seq == 0 || s.fresh || s.size >= s.maxBytes {
		return s.rotate()
	}
	path := filepath.Join(s.dir, fileName(s.prefix, s.seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return s.rotate() // removed by hand since Open
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	s.f = f
	return nil
}

// rotate closes the current file, starts the next one and deletes the oldest past
// maxFiles.
func (s *stream) rotate() error {
	s.close()
	s.seq++
	path := filepath.Join(s.dir, fileName(s.prefix, s.seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: %w", path, err)
	}
	s.f, s.size, s.last, s.fresh, s.torn = f, 0, time.Time{}, false, false
	syncDir(s.dir) // the new name survives a power loss; losing it loses only this file
	return s.prune()
}

func (s *stream) prune() error {
	files, err := listFiles(s.dir, s.prefix)
	if err != nil {
		return err
	}
	var errs []error
	for len(files) > s.maxFiles {
		if err := os.Remove(files[0].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove the oldest record file: %w", err))
		}
		files = files[1:]
	}
	return errors.Join(errs...)
}

func (s *stream) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("close %s record file: %w", s.prefix, err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// timedLine is one encoded line (ending in a newline) and its time.
type timedLine struct {
	t time.Time
	b []byte
}
