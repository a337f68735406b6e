//go:build linux

package sysio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// parks watches a sockReader's or sockWriter's raw call: it records whether the
// call last found the socket not ready, so that its goroutine waits in the poller,
// and kicks changed. Tests use it to act on a call that is really waiting.
type parks struct {
	mu      sync.Mutex
	waiting bool
	changed chan struct{}
}

// watchParks wraps *fn, the raw call of a sockReader or sockWriter.
func watchParks(fn *func(fd uintptr) bool) *parks {
	p := &parks{changed: make(chan struct{}, 1)}
	inner := *fn
	*fn = func(fd uintptr) bool {
		done := inner(fd)
		p.mu.Lock()
		p.waiting = !done
		p.mu.Unlock()
		select {
		case p.changed <- struct{}{}:
		default:
		}
		return done
	}
	return p
}

// waitParked waits until the call is waiting in the poller, or reports false after
// d.
func (p *parks) waitParked(d time.Duration) bool {
	timeout := time.After(d)
	for {
		p.mu.Lock()
		waiting := p.waiting
		p.mu.Unlock()
		if waiting {
			return true
		}
		select {
		case <-p.changed:
		case <-timeout:
			return false
		}
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// A write bigger than the socket buffers must wait for the peer to read, and arrive
// whole and in order; reads must see every byte the peer sent, then EOF.
func TestSockIOMovesEveryByteBothWays(t *testing.T) {
	server, client := tcpPair(t)
	r, w := SocketIO(server)
	writes := watchParks(&w.(*sockWriter).fn)
	out := make([]byte, 16<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range out {
		out[i] = byte(rng.Uint32())
	}
	wrote := make(chan error, 1)
	go func() {
		n, err := w.Write(out)
		if err == nil && n != len(out) {
			err = fmt.Errorf("wrote %d of %d bytes", n, len(out))
		}
		wrote <- err
	}()
	// Nobody reads yet, so the writer fills the socket buffers and has to wait.
	if !writes.waitParked(5 * time.Second) {
		t.Fatal("the writer never waited for the peer")
	}
	var buf bytes.Buffer
	chunk := make([]byte, 64<<10)
	for buf.Len() < len(out) {
		n, err := client.Read(chunk)
		buf.Write(chunk[:n])
		if err != nil {
			break
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if b := buf.Bytes(); !bytes.Equal(b, out) {
		t.Fatalf("the peer received %d bytes, not the %d written, or not in order", len(b), len(out))
	}

	in := out[:3<<20]
	go func() {
		client.Write(in)
		client.Close()
	}()
	read, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(read, in) {
		t.Fatalf("read %d bytes, not the %d the peer sent, or not in order", len(read), len(in))
	}
	if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, EOF", n, err)
	}
}

// The gRPC server's handshake deadline and Shutdown's Close must still end a waiting read.
func TestSockIOKeepsDeadlinesAndClose(t *testing.T) {
	server, _ := tcpPair(t)
	r, _ := SocketIO(server)
	reads := watchParks(&r.(*sockReader).fn)
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v; want a deadline error", err)
	}
	server.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 10))
		errc <- err
	}()
	if !reads.waitParked(5 * time.Second) {
		t.Fatal("the Read never waited for data")
	}
	server.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting Read")
	}
	if _, err := r.Read(make([]byte, 10)); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

// Writing to a peer that has gone must fail rather than hang or report success forever.
func TestSockIOWriteFailsOnceThePeerIsGone(t *testing.T) {
	server, client := tcpPair(t)
	r, w := SocketIO(server)
	// Linger 0 makes Close send a reset, as a crashed client's kernel would.
	client.(*net.TCPConn).SetLinger(0)
	client.Close()
	// A read ends when the reset has arrived; from then on the peer is gone.
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Read(make([]byte, 10)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read from a reset connection: %v; want the reset", err)
	}
	if _, err := w.Write([]byte("answer")); err == nil {
		t.Fatal("a write to a reset connection succeeded")
	}
}

// parksKey holds a connection's read parks in its context.
type parksKey struct{}

// An HTTP server on Listen answers request after request on one kept-alive connection,
// with bodies larger than the socket buffers both ways, and its requests' contexts stay
// live while they are served (net/http cancels them when a read fails unexpectedly).
func TestListenServesHTTPOnRawConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The body is read, so net/http's background read starts; once it waits for
		// data, the request's context must still be live.
		if !r.Context().Value(parksKey{}).(*parks).waitParked(5 * time.Second) {
			http.Error(w, "the server's background read never waited", http.StatusInternalServerError)
			return
		}
		if err := r.Context().Err(); err != nil {
			http.Error(w, "context ended while serving: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(bytes.Repeat(body, 2))
	}), ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, parksKey{}, watchParks(&c.(*sockConn).r.(*sockReader).fn))
	}}
	go srv.Serve(Listen(ln))
	defer srv.Close()

	var reused []bool
	for i := range 3 {
		body := bytes.Repeat([]byte{byte('a' + i)}, 3<<20)
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = append(reused, info.Reused) }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", "http://"+ln.Addr().String()+"/", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d, %v: %.200s", i, resp.StatusCode, err, got)
		}
		if !bytes.Equal(got, bytes.Repeat(body, 2)) {
			t.Fatalf("request %d: answer of %d bytes is not the body twice", i, len(got))
		}
	}
	if !slices.Equal(reused, []bool{false, true, true}) {
		t.Errorf("connection reuse %v; want one connection kept alive for all three", reused)
	}
}
