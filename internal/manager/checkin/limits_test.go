package checkin_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/internal/manager/checkin"
	"github.com/periscope-dev/periscope/internal/manager/commands"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store/duckdb"
)

// opampFixture is a check-in server over a real registry with one deployment.
type opampFixture struct {
	reg     *registry.Registry
	cmds    *commands.Service
	srv     *httptest.Server
	connCtx func(context.Context, net.Conn) context.Context
	url     string
	token   string
}

func newOpAMP(t testing.TB, limit int64) *opampFixture {
	t.Helper()
	ctx := context.Background()
	st, err := duckdb.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := registry.New(st, registry.Settings{FlushInterval: time.Hour, EvalInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	created, err := reg.CreateDeployments(ctx, []registry.NewDeployment{{ID: "acme-prod", Customer: "acme", Stack: "app"}})
	if err != nil {
		t.Fatal(err)
	}
	// Invocations are pushed through the check-in server created next.
	var cs *checkin.Server
	cmds, err := commands.New(st, reg, commands.Settings{Push: func(ctx context.Context, ids []string) { cs.PushCommands(ctx, ids) }})
	if err != nil {
		t.Fatal(err)
	}
	cs, err = checkin.New(reg, checkin.Settings{MaxMessageBytes: limit, Commands: cmds})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/opamp", cs.Handler())
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnContext = cs.ConnContext
	srv.Start()
	t.Cleanup(func() {
		_ = cs.Shutdown(context.Background())
		srv.Close()
	})
	return &opampFixture{reg: reg, cmds: cmds, srv: srv, connCtx: cs.ConnContext, url: srv.URL + "/v1/opamp", token: created[0].Token}
}

// checkedIn reports whether the deployment's agent has been heard from.
func (f *opampFixture) checkedIn(t testing.TB) bool {
	t.Helper()
	v, err := f.reg.Get("acme-prod")
	if err != nil {
		t.Fatal(err)
	}
	return !v.Deployment.LastCheckin.IsZero()
}

func (f *opampFixture) post(t testing.TB, body io.Reader, encoding string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/x-protobuf")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func agentMessage(t testing.TB) []byte {
	t.Helper()
	b, err := proto.Marshal(&protobufs.AgentToServer{InstanceUid: bytes.Repeat([]byte{7}, 16), SequenceNum: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipBomb is a gzip body of about 260 KB that inflates to n MiB: one member
// of a mebibyte of zeros, repeated (gzip readers read every member).
func gzipBomb(t testing.TB, n int) []byte {
	member := gzipped(t, make([]byte, 1<<20))
	return bytes.Repeat(member, n)
}

func TestOpAMPMessagesWithinTheLimitAreServed(t *testing.T) {
	f := newOpAMP(t, 0)
	if code, body := f.post(t, bytes.NewReader(gzipped(t, agentMessage(t))), "gzip"); code != http.StatusOK {
		t.Fatalf("gzip check-in: %d %s", code, body)
	}
	if !f.checkedIn(t) {
		t.Fatal("a gzip check-in within the limit was not recorded")
	}
}

func TestOpAMPGzipBombAnswers413WithBoundedMemory(t *testing.T) {
	f := newOpAMP(t, 0) // the default, 4 MiB
	bomb := gzipBomb(t, 256)
	t.Logf("bomb: %d bytes compressed, 256 MiB inflated", len(bomb))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	code, body := f.post(t, bytes.NewReader(bomb), "gzip")
	runtime.ReadMemStats(&after)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("gzip bomb: got %d %s, want 413", code, body)
	}
	// The server runs in this process: everything it allocated for the request
	// is in the delta. Inflating the bomb in full would be 256 MiB and more.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %.1f MiB answering it", float64(alloc)/(1<<20))
	if alloc > 32<<20 {
		t.Fatalf("a gzip bomb cost %d MiB of allocations; want the %d MiB limit and change", alloc>>20, checkin.DefaultMaxMessageBytes>>20)
	}
	if f.checkedIn(t) {
		t.Fatal("an over-limit message was handled")
	}
}

func TestOpAMPLargePlainBodyAnswers413(t *testing.T) {
	f := newOpAMP(t, 0)
	big := make([]byte, 17<<20)
	copy(big, agentMessage(t))
	// With a Content-Length, and streamed without one.
	if code, body := f.post(t, bytes.NewReader(big), ""); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("17 MB body: got %d %s, want 413", code, body)
	}
	if code, body := f.post(t, io.MultiReader(bytes.NewReader(big)), ""); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("17 MB chunked body: got %d %s, want 413", code, body)
	}
	if code, body := f.post(t, strings.NewReader("x"), "br"); code != http.StatusUnsupportedMediaType {
		t.Fatalf("brotli body: got %d %s, want 415", code, body)
	}
	if f.checkedIn(t) {
		t.Fatal("an over-limit message was handled")
	}
}

func dialOpAMP(t *testing.T, f *opampFixture) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{EnableCompression: true}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(f.url, "http"), http.Header{"Authorization": {"Bearer " + f.token}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("server negotiated %q: compressed messages would inflate past the read limit", ext)
	}
	// A failing server would leave the test waiting for the gigabyte; fail instead.
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	return c
}

func TestOpAMPWebSocketOverLimitClosesWith1009(t *testing.T) {
	const limit = 64 << 10
	f := newOpAMP(t, limit)
	c := dialOpAMP(t, f)

	// A message within the limit is served.
	if err := c.WriteMessage(websocket.BinaryMessage, append([]byte{0}, agentMessage(t)...)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatalf("reply to a message within the limit: %v", err)
	}

	// A frame that declares a gigabyte: the server must refuse it on its header,
	// before reading any of it (only the header is ever sent).
	hdr := []byte{0x82, 0x80 | 127}
	hdr = binary.BigEndian.AppendUint64(hdr, 1<<30)
	hdr = append(hdr, 1, 2, 3, 4) // masking key
	if _, err := c.UnderlyingConn().Write(hdr); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("after an over-limit frame: got %v, want close 1009", err)
	}
}

func TestOpAMPWebSocketFragmentsCountTowardsTheLimit(t *testing.T) {
	const limit = 64 << 10
	f := newOpAMP(t, limit)
	c := dialOpAMP(t, f)
	w, err := c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		t.Fatal(err)
	}
	// Written in small pieces, each flushed as its own fragment.
	chunk := make([]byte, 4<<10)
	for sent := 0; sent <= 2*limit; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			break // the server closed the connection
		}
	}
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("after an over-limit fragmented message: got %v, want close 1009", err)
	}
	if f.checkedIn(t) {
		t.Fatal("an over-limit message was handled")
	}
}

// FuzzCheckin sends the check-in handler arbitrary polling bodies, plain or
// gzip: it answers 200 with a ServerToAgent, or refuses with 400, 413 or 415,
// and never panics.
func FuzzCheckin(f *testing.F) {
	full, err := proto.Marshal(&protobufs.AgentToServer{
		InstanceUid: bytes.Repeat([]byte{1}, 16), SequenceNum: 3, Capabilities: 0xff,
		AgentDescription: &protobufs.AgentDescription{NonIdentifyingAttributes: []*protobufs.KeyValue{
			{Key: checkin.AttrRelease, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: "1.2"}}},
			{Key: checkin.AttrServiceName, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: "periscope"}}},
		}},
		Health: &protobufs.ComponentHealth{Healthy: false, Status: "starting", ComponentHealthMap: map[string]*protobufs.ComponentHealth{
			"pipeline": {ComponentHealthMap: map[string]*protobufs.ComponentHealth{"receiver": {Healthy: true}}}}},
		RemoteConfigStatus: &protobufs.RemoteConfigStatus{LastRemoteConfigHash: []byte{1, 2}, Status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, ErrorMessage: "no"},
		EffectiveConfig:    &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{"a.yaml": {Body: []byte("x: 1")}}}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), full)
	f.Add(uint8(1), gzipped(f, full))
	f.Add(uint8(0), []byte{})
	f.Add(uint8(0), []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(uint8(1), []byte("not gzip"))
	f.Add(uint8(1), gzipped(f, make([]byte, 70<<10)))
	f.Add(uint8(2), full)
	const limit = 64 << 10
	fx := newOpAMP(f, limit)
	handler := fx.srv.Config.Handler
	client, server := net.Pipe()
	f.Cleanup(func() { client.Close(); server.Close() })
	f.Fuzz(func(t *testing.T, enc uint8, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/opamp", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fx.token)
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", []string{"", "gzip", "deflate"}[int(enc)%3])
		req = req.WithContext(fx.connCtx(req.Context(), server))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var resp protobufs.ServerToAgent
			if err := proto.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("200 with a body that is no ServerToAgent: %v", err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("answered %d %s", rec.Code, rec.Body)
		}
	})
}
