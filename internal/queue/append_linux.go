package queue

import (
	"fmt"
	"os"
	"syscall"

	"github.com/periscope-dev/periscope/internal/sysio"
)

// segmentWriter appends to the segment file being written with raw write(2) calls
// (package sysio says why). In the agent every OTLP request makes one write here. A
// write into the page cache returns in microseconds; Sync still goes through os.File,
// since an fsync is expected to block and the scheduler should know.
type segmentWriter struct {
	f     *os.File
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	p     []byte
	errno syscall.Errno
}

func newSegmentWriter(f *os.File) (*segmentWriter, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("queue: segment file: %w", err)
	}
	w := &segmentWriter{f: f, rc: rc}
	w.fn = w.write // bound once, so that a call does not allocate a closure
	return w, nil
}

// Write writes all of p, or returns why it could not (ENOSPC on a full disk, say).
func (w *segmentWriter) Write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	w.p, w.errno = p, 0
	err := w.rc.Write(w.fn)
	w.p = nil
	if err == nil && w.errno != 0 {
		err = w.errno
	}
	if err != nil {
		return &os.PathError{Op: "write", Path: w.f.Name(), Err: err}
	}
	return nil
}

func (w *segmentWriter) write(fd uintptr) bool {
	for len(w.p) > 0 {
		n, e := sysio.Write(fd, w.p)
		if e != 0 {
			w.errno = e
			return true
		}
		w.p = w.p[n:]
	}
	return true
}
