//go:build linux && race

package sysio

import "syscall"

// Read makes one read(2) of fd into p, which must not be empty: the bytes read, or
// 0 and why not. A call interrupted by a signal is made again.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	for err == syscall.EINTR {
		n, err = syscall.Read(int(fd), p)
	}
	return max(n, 0), errno(err)
}

// Write makes one write(2) of p, which must not be empty, to fd: the bytes written,
// or 0 and why not. A call interrupted by a signal is made again.
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	for err == syscall.EINTR {
		n, err = syscall.Write(int(fd), p)
	}
	return max(n, 0), errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
