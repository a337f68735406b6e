//go:build linux && !race

package sysio

import (
	"syscall"
	"unsafe"
)

// Read makes one read(2) of fd into p, which must not be empty: the bytes read, or
// 0 and why not. A call interrupted by a signal is made again.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	for e == syscall.EINTR {
		n, _, e = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	}
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// Write makes one write(2) of p, which must not be empty, to fd: the bytes written,
// or 0 and why not. A call interrupted by a signal is made again.
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	for e == syscall.EINTR {
		n, _, e = syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	}
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
