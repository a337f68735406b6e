package queue

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Everything written arrives, in order, across writes of every size.
func TestSegmentWriterWritesEveryByte(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newSegmentWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, n := range []int{1, 0, 24, 4096, 1 << 20, 3} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		if err := w.Write(p); err != nil {
			t.Fatalf("Write(%d bytes): %v", n, err)
		}
		want.Write(p)
	}
	f.Close()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file holds %d bytes, not the %d written, or not in order", len(got), want.Len())
	}
}

// A full disk is an error the caller can tell apart and that names the file, never a
// silent short write. /dev/full answers every write with ENOSPC.
func TestSegmentWriterReportsAFullDisk(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full on this system: %v", err)
	}
	defer f.Close()
	w, err := newSegmentWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Write([]byte("record"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write to a full disk: %v; want ENOSPC", err)
	}
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != "/dev/full" {
		t.Fatalf("the error %v does not name the file", err)
	}
}

// A closed segment file is an error, not a write to whatever reuses its descriptor.
func TestSegmentWriterRefusesAClosedFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := newSegmentWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := w.Write([]byte("record")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}
