package grpcserver

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// The header list of an export request, as grpc-go sends it.
var exportRequest = [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"},
	{":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}}

// headers sends a header block on stream id.
func (c *rawClient) headers(id uint32, fields [][2]string, endStream bool) {
	c.hbuf.Reset()
	for _, f := range fields {
		c.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndHeaders: true, EndStream: endStream})
}

// with returns the export request's header list with name set to value, or without
// name when value is "".
func with(name, value string) [][2]string {
	var out [][2]string
	found := false
	for _, f := range exportRequest {
		if f[0] == name {
			found = true
			if value == "" {
				continue
			}
			f[1] = value
		}
		out = append(out, f)
	}
	if !found {
		out = append(out, [2]string{name, value})
	}
	return out
}

// await flushes what was sent and reads frames until match accepts one, answering
// the server's SETTINGS; it fails the test when the connection ends first.
func (c *rawClient) await(what string, match func(http2.Frame) bool) {
	c.t.Helper()
	c.bw.Flush()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", what, err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			c.fr.WriteSettingsAck()
			c.bw.Flush()
		}
		if match(f) {
			return
		}
	}
}

// goAway reads until the server's GOAWAY and returns its code.
func (c *rawClient) goAway() http2.ErrCode {
	c.t.Helper()
	var code http2.ErrCode
	c.await("GOAWAY", func(f http2.Frame) bool {
		g, ok := f.(*http2.GoAwayFrame)
		if ok {
			code = g.ErrCode
		}
		return ok
	})
	return code
}

// reset reads until the server resets stream id and returns the code; a GOAWAY
// first fails the test.
func (c *rawClient) reset(id uint32) http2.ErrCode {
	c.t.Helper()
	var code http2.ErrCode
	c.await("RST_STREAM", func(f http2.Frame) bool {
		if g, ok := f.(*http2.GoAwayFrame); ok {
			c.t.Fatalf("GOAWAY %v waiting for RST_STREAM on stream %d", g.ErrCode, id)
		}
		r, ok := f.(*http2.RSTStreamFrame)
		if ok && r.StreamID == id {
			code = r.ErrCode
			return true
		}
		return false
	})
	return code
}

// response reads until stream id's answer ends and returns its :status and
// grpc-status; a RST_STREAM or GOAWAY first fails the test.
func (c *rawClient) response(id uint32) (httpStatus, grpcStatus string) {
	c.t.Helper()
	c.await("the answer", func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			c.t.Fatalf("GOAWAY %v waiting for the answer on stream %d", f.ErrCode, id)
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				c.t.Fatalf("RST_STREAM %v instead of an answer on stream %d", f.ErrCode, id)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				return false
			}
			if s := f.PseudoValue("status"); s != "" {
				httpStatus = s
			}
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					grpcStatus = hf.Value
				}
			}
			return f.StreamEnded()
		}
		return false
	})
	return httpStatus, grpcStatus
}

// Requests the server does not serve get an HTTP and a gRPC status at once, never a
// bare RST_STREAM or silence, so any client can tell what went wrong.
func TestGRPCUnservedRequestsGetAStatus(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	for _, tc := range []struct {
		name               string
		fields             [][2]string
		wantHTTP, wantGRPC string
	}{
		{"GET", with(":method", "GET"), "405", "13"},
		{"HEAD", with(":method", "HEAD"), "405", "13"},
		{"text/plain", with("content-type", "text/plain"), "415", "13"},
		{"unknown path", with(":path", "/"), "200", "12"},
		{"huge header list", hugeHeaderList(), "431", "8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			rc.headers(1, tc.fields, true)
			if h, g := rc.response(1); h != tc.wantHTTP || g != tc.wantGRPC {
				t.Errorf(":status %s grpc-status %s, want %s and %s", h, g, tc.wantHTTP, tc.wantGRPC)
			}
		})
	}
}

// hugeHeaderList is an export request whose header list decodes to more than the
// 64 KiB the server accepts, from a block of a few KiB: the padding field repeats,
// and HPACK sends the repeats as indexes into its dynamic table.
func hugeHeaderList() [][2]string {
	fields := append([][2]string(nil), exportRequest...)
	for range 20 {
		fields = append(fields, [2]string{"x-padding", strings.Repeat("p", 3900)})
	}
	return fields
}

// Requests RFC 9113 calls malformed are refused with a stream error, and the
// connection goes on.
func TestGRPCMalformedRequestsAreResetWithProtocolError(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	for _, tc := range []struct {
		name   string
		fields [][2]string
	}{
		{"no :path", with(":path", "")},
		{"no :method", with(":method", "")},
		{"no :scheme", with(":scheme", "")},
		{"te other than trailers", with("te", "gzip")},
		{"connection header", with("connection", "keep-alive")},
		{"response pseudo-header", with(":status", "200")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			rc.headers(1, tc.fields, true)
			if code := rc.reset(1); code != http2.ErrCodeProtocol {
				t.Errorf("RST_STREAM %v, want PROTOCOL_ERROR", code)
			}
			rc.open(3)
			rc.fr.WriteData(3, true, message(t, 1))
			if got := rc.statusOf(3); got != "0" {
				t.Errorf("request after the malformed one: grpc-status %s, want 0", got)
			}
		})
	}
}

// SETTINGS out of RFC 9113's bounds end the connection with the error it names.
func TestGRPCSettingsAreValidated(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	for _, tc := range []struct {
		name string
		s    http2.Setting
		want http2.ErrCode
	}{
		{"ENABLE_PUSH 2", http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
		{"INITIAL_WINDOW_SIZE 2^31", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
		{"MAX_FRAME_SIZE below 16 KiB", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16383}, http2.ErrCodeProtocol},
		{"MAX_FRAME_SIZE above 2^24-1", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24}, http2.ErrCodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			rc.fr.WriteSettings(tc.s)
			if code := rc.goAway(); code != tc.want {
				t.Errorf("GOAWAY %v, want %v", code, tc.want)
			}
		})
	}
}

// A WINDOW_UPDATE taking a stream's window past 2^31-1 resets that stream only.
func TestGRPCStreamWindowOverflowResetsTheStream(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	rc := dialRaw(t, addr)
	rc.open(1)
	rc.fr.WriteWindowUpdate(1, 1<<31-1)
	if code := rc.reset(1); code != http2.ErrCodeFlowControl {
		t.Errorf("RST_STREAM %v, want FLOW_CONTROL_ERROR", code)
	}
}

// Frames on streams the client never opened are connection errors (RFC 9113
// section 5.1), and so is a new stream numbered below one already opened.
func TestGRPCFramesOnIdleStreamsEndTheConnection(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	for _, tc := range []struct {
		name string
		send func(rc *rawClient)
		want http2.ErrCode
	}{
		{"RST_STREAM", func(rc *rawClient) { rc.fr.WriteRSTStream(1, http2.ErrCodeCancel) }, http2.ErrCodeProtocol},
		{"WINDOW_UPDATE", func(rc *rawClient) { rc.fr.WriteWindowUpdate(1, 100) }, http2.ErrCodeProtocol},
		{"lower stream id", func(rc *rawClient) {
			rc.headers(5, exportRequest, false)
			rc.headers(3, exportRequest, false)
		}, http2.ErrCodeStreamClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			tc.send(rc)
			if code := rc.goAway(); code != tc.want {
				t.Errorf("GOAWAY %v, want %v", code, tc.want)
			}
		})
	}
}

// Once a stream's request has ended, more DATA or HEADERS on it is a STREAM_CLOSED
// error; trailers must end the stream and carry no pseudo-headers.
func TestGRPCFramesAfterTheRequestEnded(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	// answered opens a connection whose stream 1 has been answered, and so is closed.
	answered := func(t *testing.T) *rawClient {
		rc := dialRaw(t, addr)
		rc.open(1)
		rc.fr.WriteData(1, true, message(t, 1))
		if got := rc.statusOf(1); got != "0" {
			t.Fatalf("grpc-status %s, want 0", got)
		}
		return rc
	}
	t.Run("DATA on a closed stream", func(t *testing.T) {
		rc := answered(t)
		rc.fr.WriteData(1, true, []byte("late"))
		if code := rc.reset(1); code != http2.ErrCodeStreamClosed {
			t.Errorf("RST_STREAM %v, want STREAM_CLOSED", code)
		}
	})
	t.Run("HEADERS on a closed stream", func(t *testing.T) {
		rc := answered(t)
		rc.headers(1, exportRequest, true)
		if code := rc.goAway(); code != http2.ErrCodeStreamClosed {
			t.Errorf("GOAWAY %v, want STREAM_CLOSED", code)
		}
	})
	for _, tc := range []struct {
		name      string
		trailers  [][2]string
		endStream bool
	}{
		{"trailers without END_STREAM", [][2]string{{"x-trailer", "1"}}, false},
		{"pseudo-header in trailers", [][2]string{{":path", "/"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			rc.open(1)
			rc.fr.WriteData(1, false, message(t, 1))
			rc.headers(1, tc.trailers, tc.endStream)
			if code := rc.reset(1); code != http2.ErrCodeProtocol {
				t.Errorf("RST_STREAM %v, want PROTOCOL_ERROR", code)
			}
		})
	}
}

// The server reads frames no larger than the 16 KiB it announces.
func TestGRPCFramesLargerThanAnnouncedEndTheConnection(t *testing.T) {
	_, addr := startGRPC(t, &countingConsumer{}, 0, nil)
	rc := dialRaw(t, addr)
	rc.open(1)
	rc.fr.WriteData(1, false, make([]byte, 16<<10+1))
	if code := rc.goAway(); code != http2.ErrCodeFrameSize {
		t.Errorf("GOAWAY %v, want FRAME_SIZE_ERROR", code)
	}
}

// Opening and resetting streams as fast as a client can (the rapid-reset attack,
// CVE-2023-44487) ends the connection with ENHANCE_YOUR_CALM.
func TestGRPCRapidResetIsBounded(t *testing.T) {
	// A clock that stands still: every reset falls in one window.
	srv := New(consumer.ConsumerFunc(func(context.Context, consumer.Request) error { return nil }),
		Settings{Clock: clock.NewFake(time.Unix(1e9, 0))})
	rc := dialRaw(t, serveOnFreePort(t, srv))
	for i := range uint32(maxStreamChurn + 1) {
		rc.open(2*i + 1)
		rc.fr.WriteRSTStream(2*i+1, http2.ErrCodeCancel)
	}
	if code := rc.goAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
}

// Opening streams past the concurrent-stream limit, each refused, counts against the
// same budget: the connection ends rather than the server refusing forever.
func TestGRPCRefusedStreamsAreBounded(t *testing.T) {
	srv := New(&countingConsumer{}, Settings{Clock: clock.NewFake(time.Unix(1e9, 0))})
	rc := dialRaw(t, serveOnFreePort(t, srv))
	for i := range uint32(grpcMaxStreams + maxStreamChurn + 1) {
		rc.open(2*i + 1) // never ended: the first grpcMaxStreams stay open
	}
	if code := rc.goAway(); code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
}

// A connection with nothing in progress for IdleTimeout is told GOAWAY NO_ERROR and
// closed, so clients that go away without a FIN do not hold the server's memory.
func TestGRPCIdleConnectionsAreClosed(t *testing.T) {
	srv := New(&countingConsumer{}, Settings{IdleTimeout: 50 * time.Millisecond})
	rc := dialRaw(t, serveOnFreePort(t, srv))
	rc.open(1)
	rc.fr.WriteData(1, true, message(t, 1))
	if got := rc.statusOf(1); got != "0" {
		t.Fatalf("grpc-status %s, want 0", got)
	}
	if code := rc.goAway(); code != http2.ErrCodeNo {
		t.Errorf("GOAWAY %v, want NO_ERROR", code)
	}
	if _, err := rc.fr.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("after GOAWAY: %v, want the connection closed", err)
	}
}

// A client that floods PINGs and never reads the ACKs stalls the server's writes;
// the server closes the connection rather than keep its goroutine blocked forever.
func TestGRPCStalledWritesCloseTheConnection(t *testing.T) {
	srv := New(&countingConsumer{}, Settings{})
	srv.writeTimeout = 100 * time.Millisecond
	rc := dialRaw(t, serveOnFreePort(t, srv))
	rc.conn.SetDeadline(time.Time{})
	flooded := make(chan error, 1)
	go func() {
		for {
			if err := rc.fr.WritePing(false, [8]byte{}); err != nil {
				flooded <- err
				return
			}
		}
	}()
	select {
	case err := <-flooded:
		t.Logf("the server closed the stalled connection: %v", err)
	case <-time.After(20 * time.Second):
		rc.conn.Close()
		<-flooded
		t.Fatal("the server still holds a connection whose writes have been stalled for 20s")
	}
}
