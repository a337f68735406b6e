//go:build !linux

package sysio

import (
	"io"
	"net"
)

// SocketIO returns nc for reading and writing: the raw system calls of sockio_linux.go
// are a Linux measure, and elsewhere net.Conn's own calls serve.
func SocketIO(nc net.Conn) (io.Reader, io.Writer) { return nc, nc }

// Listen returns ln: connections keep net.Conn's own calls outside Linux.
func Listen(ln net.Listener) net.Listener { return ln }
