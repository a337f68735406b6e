//go:build linux

package sysio

import (
	"syscall"
	"testing"
)

// Bytes written to a pipe come out of it; an empty non-blocking pipe says EAGAIN, so
// the caller knows to wait rather than take it for the end; a bad descriptor says so.
func TestReadWriteThroughAPipe(t *testing.T) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	r, w := uintptr(fds[0]), uintptr(fds[1])

	buf := make([]byte, 64)
	if n, e := Read(r, buf); e != syscall.EAGAIN || n != 0 {
		t.Fatalf("Read of an empty pipe = %d, %v; want 0, EAGAIN", n, e)
	}
	if n, e := Write(w, []byte("otlp request")); e != 0 || n != 12 {
		t.Fatalf("Write = %d, %v; want 12, no error", n, e)
	}
	if n, e := Read(r, buf); e != 0 || string(buf[:n]) != "otlp request" {
		t.Fatalf("Read = %q, %v; want %q", buf[:n], e, "otlp request")
	}
	syscall.Close(fds[1])
	if n, e := Read(r, buf); e != 0 || n != 0 {
		t.Fatalf("Read after the writer closed = %d, %v; want 0 (end of file)", n, e)
	}
	if _, e := Write(w, []byte("x")); e != syscall.EBADF {
		t.Fatalf("Write to a closed descriptor: %v; want EBADF", e)
	}
}
