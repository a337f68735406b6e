package sysio

import (
	"io"
	"net"
	"os"
	"syscall"
)

// SocketIO returns a reader and a writer for nc that make raw system calls (the
// package documentation says why) when nc is a socket, and nc itself otherwise (TLS,
// or an in-memory pipe in tests). The socket is non-blocking, so a call returns at
// once, with EAGAIN when there is nothing to read or no room to write; the goroutine
// then waits in the runtime's poller through syscall.RawConn, as net.Conn would, so
// deadlines and Close still work. The reader is for one goroutine at a time, and so
// is the writer.
func SocketIO(nc net.Conn) (io.Reader, io.Writer) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nc, nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc, nc
	}
	r, w := &sockReader{nc: nc, rc: rc}, &sockWriter{nc: nc, rc: rc}
	// Bound once, so that a call does not allocate a closure.
	r.fn, w.fn = r.read, w.write
	return r, w
}

// sockReader reads a socket with raw read(2) calls.
type sockReader struct {
	nc    net.Conn
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	p     []byte
	n     int
	errno syscall.Errno
}

func (r *sockReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.errno = p, 0, 0
	err := r.rc.Read(r.fn)
	r.p = nil
	switch {
	case err != nil: // closed, or the read deadline passed
		return 0, err
	case r.errno != 0:
		return 0, opError("read", r.nc, r.errno)
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// read makes one read(2); false asks RawConn to wait until the socket is readable.
func (r *sockReader) read(fd uintptr) bool {
	r.n, r.errno = Read(fd, r.p)
	if r.errno == syscall.EAGAIN {
		r.errno = 0
		return false
	}
	return true
}

// sockWriter writes a socket with raw write(2) calls.
type sockWriter struct {
	nc    net.Conn
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	p     []byte
	done  int
	errno syscall.Errno
}

func (w *sockWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.p, w.done, w.errno = p, 0, 0
	err := w.rc.Write(w.fn)
	w.p = nil
	switch {
	case err != nil:
		return w.done, err
	case w.errno != 0:
		return w.done, opError("write", w.nc, w.errno)
	}
	return w.done, nil
}

// write writes until everything is out; false asks RawConn to wait for room.
func (w *sockWriter) write(fd uintptr) bool {
	for w.done < len(w.p) {
		n, e := Write(fd, w.p[w.done:])
		switch e {
		case 0:
			w.done += n
		case syscall.EAGAIN:
			return false
		default:
			w.errno = e
			return true
		}
	}
	return true
}

// opError describes a failed call as net.Conn would (ECONNRESET, say), so that callers
// such as net/http that look at the error see what they expect.
func opError(op string, nc net.Conn, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: nc.LocalAddr().Network(), Source: nc.LocalAddr(), Addr: nc.RemoteAddr(), Err: os.NewSyscallError(op, errno)}
}

// Listen wraps ln so that the TCP connections it accepts read and write through
// SocketIO, as the OTLP gRPC server's do; it is for net/http servers, whose connections
// are otherwise out of reach. Everything else about a connection stays *net.TCPConn's.
func Listen(ln net.Listener) net.Listener { return sockListener{ln} }

type sockListener struct{ net.Listener }

func (l sockListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc, nil
	}
	r, w := SocketIO(tc)
	return &sockConn{TCPConn: tc, r: r, w: w}, nil
}

// sockConn is a TCP connection whose Read and Write are SocketIO's.
type sockConn struct {
	*net.TCPConn
	r io.Reader
	w io.Writer
}

func (c *sockConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *sockConn) Write(p []byte) (int, error) { return c.w.Write(p) }
