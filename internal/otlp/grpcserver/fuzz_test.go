package grpcserver

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// frames encodes what write sends as HTTP/2 frames, for the fuzz corpus.
func frames(write func(fr *http2.Framer, enc func(fields [][2]string) []byte)) []byte {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	var hbuf bytes.Buffer
	henc := hpack.NewEncoder(&hbuf)
	enc := func(fields [][2]string) []byte {
		hbuf.Reset()
		for _, f := range fields {
			henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		return append([]byte(nil), hbuf.Bytes()...)
	}
	write(fr, enc)
	return buf.Bytes()
}

// FuzzServerFrames feeds what follows the client preface on a connection to the
// server: whatever the bytes, it must not panic, must end the connection once the
// client closes it, and must leave no goroutine behind (Shutdown waits for all).
func FuzzServerFrames(f *testing.F) {
	msg := []byte{0, 0, 0, 0, 2, 0x0a, 0}
	f.Add([]byte{})
	f.Add(frames(func(fr *http2.Framer, enc func([][2]string) []byte) {
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(exportRequest), EndHeaders: true})
		fr.WriteData(1, true, msg)
		fr.WritePing(false, [8]byte{1})
	}))
	f.Add(frames(func(fr *http2.Framer, enc func([][2]string) []byte) {
		block := enc(exportRequest)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3]})
		fr.WriteContinuation(1, true, block[3:])
		fr.WriteData(1, false, msg[:2])
		fr.WriteWindowUpdate(1, 1<<31-1)
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WriteData(1, true, msg[2:])
	}))
	f.Add(frames(func(fr *http2.Framer, enc func([][2]string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: enc(with(":method", "GET")), EndHeaders: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(exportRequest), EndHeaders: true, EndStream: true})
		fr.WritePriority(5, http2.PriorityParam{StreamDep: 5})
		fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1})
	}))
	f.Add(frames(func(fr *http2.Framer, enc func([][2]string) []byte) {
		for id := uint32(1); id < 20; id += 2 {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(exportRequest), EndHeaders: true})
			fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	}))
	f.Fuzz(func(t *testing.T, in []byte) {
		srv := New(consumer.ConsumerFunc(func(context.Context, consumer.Request) error { return nil }), Settings{MaxBytes: 1 << 10})
		client, server := net.Pipe()
		c := srv.newConn(server)
		srv.mu.Lock()
		srv.conns[c] = struct{}{}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go c.serve()
		read := make(chan struct{})
		go func() {
			io.Copy(io.Discard, client)
			close(read)
		}()
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		w := bufio.NewWriter(client)
		io.WriteString(w, http2.ClientPreface)
		w.Write(in)
		w.Flush() // fails once the server has ended the connection: that is fine
		client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("the connection did not end once the client closed it: %v", err)
		}
		<-read
	})
}
