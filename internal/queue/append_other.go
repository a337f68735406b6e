//go:build !linux

package queue

import "os"

// segmentWriter appends to the segment file being written. The raw write(2) calls of
// append_linux.go are a Linux measure; elsewhere os.File's own calls serve.
type segmentWriter struct{ f *os.File }

func newSegmentWriter(f *os.File) (*segmentWriter, error) { return &segmentWriter{f: f}, nil }

// Write writes all of p, or returns why it could not (a full disk, say).
func (w *segmentWriter) Write(p []byte) error {
	_, err := w.f.Write(p)
	return err
}
