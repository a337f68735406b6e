package ingress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// startProxy starts a proxy for cfg on a free port and shuts it down at the end
// of the test.
func startProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "shop"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	// The proxy's own log (upstream errors at debug) goes with a failing test's
	// output: it says why a response was cut.
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(cfg, Settings{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return p
}

// client talks to the proxy over its own transport, closed at the end of the
// test so no connection outlives it.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// point is one series as Collect reports it.
type point struct {
	count   int64
	hcount  uint64
	sum     float64
	buckets []uint64
	attrs   map[string]any
}

// collect returns the proxy's series keyed by "route method status class".
func collect(t *testing.T, p *Proxy) map[string]point {
	t.Helper()
	ms := pmetric.NewMetricSlice()
	if err := p.Collect(context.Background(), time.Now(), ms); err != nil {
		t.Fatal(err)
	}
	if ms.Len() != 2 || ms.At(0).Name() != MetricRequests || ms.At(1).Name() != MetricDuration {
		t.Fatalf("Collect appended %d metrics, want %s and %s", ms.Len(), MetricRequests, MetricDuration)
	}
	if u := ms.At(1).Unit(); u != "s" {
		t.Errorf("duration unit %q, want s", u)
	}
	key := func(a pcommon.Map) string {
		code := "-"
		if v, ok := a.Get(AttrStatusCode); ok {
			code = strconv.FormatInt(v.Int(), 10)
		}
		r, _ := a.Get(AttrRoute)
		m, _ := a.Get(AttrMethod)
		c, _ := a.Get(AttrStatusClass)
		return fmt.Sprintf("%s %s %s %s", r.Str(), m.Str(), code, c.Str())
	}
	out := map[string]point{}
	counts := ms.At(0).Sum()
	if !counts.IsMonotonic() || counts.AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
		t.Error("request counter is not a cumulative monotonic sum")
	}
	for i := range counts.DataPoints().Len() {
		dp := counts.DataPoints().At(i)
		k := key(dp.Attributes())
		if _, dup := out[k]; dup {
			t.Fatalf("series %s twice", k)
		}
		out[k] = point{count: dp.IntValue(), attrs: dp.Attributes().AsRaw()}
	}
	h := ms.At(1).Histogram()
	for i := range h.DataPoints().Len() {
		dp := h.DataPoints().At(i)
		k := key(dp.Attributes())
		pt, ok := out[k]
		if !ok {
			t.Fatalf("histogram series %s has no counter", k)
		}
		if !slices.Equal(dp.ExplicitBounds().AsRaw(), durationBounds[:]) {
			t.Errorf("bounds %v", dp.ExplicitBounds().AsRaw())
		}
		pt.hcount, pt.sum, pt.buckets = dp.Count(), dp.Sum(), dp.BucketCounts().AsRaw()
		out[k] = pt
	}
	return out
}

// TestKnownLoadExactly sends 300 requests (200 answered 200, 50 404, 50 500)
// across three routes and two methods, with ids in the paths, and expects
// exactly those figures per series, and no other series.
func TestKnownLoadExactly(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		code, _ := strconv.Atoi(r.URL.Query().Get("status"))
		w.WriteHeader(code)
		io.WriteString(w, "ok")
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL, Routes: []string{"/orders/{id}", "/static/*", "/health"}})
	c := client(t)

	paths := []func(i int) string{
		func(i int) string { return fmt.Sprintf("/orders/%d", 1000+i) },
		func(i int) string { return fmt.Sprintf("/static/css/%d/app.css", i) },
		func(int) string { return "/health" },
	}
	templates := []string{"/orders/{id}", "/static/*", "/health"}
	want := map[string]int64{}
	for i := range 300 {
		route := i % 3
		method := http.MethodGet
		if (i/3)%2 == 1 {
			method = http.MethodPost
		}
		status := 200
		switch {
		case i >= 250:
			status = 500
		case i >= 200:
			status = 404
		}
		req, _ := http.NewRequest(method, "http://"+p.Addr()+paths[route](i)+"?status="+strconv.Itoa(status), strings.NewReader("body"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, status)
		}
		want[fmt.Sprintf("%s %s %d %dxx", templates[route], method, status, status/100)]++
	}
	got := collect(t, p)
	if len(got) != len(want) {
		t.Errorf("%d series, want %d: %v", len(got), len(want), keys(got))
	}
	var classes = map[string]int64{}
	for k, n := range want {
		pt, ok := got[k]
		if !ok {
			t.Errorf("no series %s", k)
			continue
		}
		if pt.count != n || pt.hcount != uint64(n) {
			t.Errorf("%s: counter %d, histogram count %d, want %d", k, pt.count, pt.hcount, n)
		}
		classes[pt.attrs[AttrStatusClass].(string)] += pt.count
		if pt.attrs[AttrIngressName] != "shop" || pt.attrs[AttrServerAddr] != "127.0.0.1" ||
			strconv.FormatInt(pt.attrs[AttrServerPort].(int64), 10) != p.Addr()[strings.LastIndexByte(p.Addr(), ':')+1:] ||
			pt.attrs[AttrURLScheme] != "http" {
			t.Errorf("%s: attributes %v", k, pt.attrs)
		}
	}
	if classes["2xx"] != 200 || classes["4xx"] != 50 || classes["5xx"] != 50 {
		t.Errorf("per status class %v, want 2xx 200, 4xx 50, 5xx 50", classes)
	}
}

func keys(m map[string]point) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestOtherRouteAndMethod records unmatched paths as "other" and unknown
// methods as "_OTHER", while still forwarding both unchanged.
func TestOtherRouteAndMethod(t *testing.T) {
	seen := make(chan string, 3)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Method + " " + r.URL.Path
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL, Routes: []string{"/orders/{id}"}})
	c := client(t)
	for _, rq := range []struct{ method, path string }{{"PURGE", "/orders/1"}, {"GET", "/users/42"}, {"GET", "/orders/1/items"}} {
		req, _ := http.NewRequest(rq.method, "http://"+p.Addr()+rq.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := <-seen; got != rq.method+" "+rq.path {
			t.Errorf("upstream saw %q, want %q", got, rq.method+" "+rq.path)
		}
	}
	got := collect(t, p)
	for k, n := range map[string]int64{"/orders/{id} _OTHER 200 2xx": 1, "other GET 200 2xx": 2} {
		if got[k].count != n {
			t.Errorf("%s: %d, want %d (all: %v)", k, got[k].count, n, keys(got))
		}
	}
}

// TestLatencyBucketsMatchClientTimings: an upstream taking 150 ms (well inside
// the (0.1, 0.25] bucket) is recorded in that bucket, and what the proxy
// recorded never exceeds what the client measured.
func TestLatencyBucketsMatchClientTimings(t *testing.T) {
	const delay = 150 * time.Millisecond
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay) // the service's own work, the figure under test
		io.WriteString(w, "done")
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL, Routes: []string{"/work"}})
	c := client(t)
	const n = 6
	var clientTotal time.Duration
	for range n {
		t0 := time.Now()
		resp, err := c.Get("http://" + p.Addr() + "/work")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		clientTotal += d
		if d < delay {
			t.Fatalf("client measured %v, less than the upstream's %v", d, delay)
		}
	}
	pt := collect(t, p)["/work GET 200 2xx"]
	bucket := slices.Index(durationBounds[:], 0.25) // the bucket (0.1, 0.25]
	if pt.buckets[bucket] != n || pt.hcount != n {
		t.Errorf("buckets %v (count %d), want all %d in (0.1, 0.25]", pt.buckets, pt.hcount, n)
	}
	if pt.sum < (n*delay).Seconds() || pt.sum > clientTotal.Seconds() {
		t.Errorf("recorded sum %.4fs, want between %.4fs (upstream) and %.4fs (client)", pt.sum, (n * delay).Seconds(), clientTotal.Seconds())
	}
}

// TestStreamsResponseInPieces: the client reads the first chunk of a streamed
// response while the upstream is still blocked before writing the second.
func TestStreamsResponseInPieces(t *testing.T) {
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL, Routes: []string{"/events"}})
	resp, err := client(t).Get("http://" + p.Addr() + "/events")
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		close(release)
		t.Fatalf("first chunk %q, %v", line, err)
	}
	close(release) // only now may the upstream finish
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: second\n\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

// TestUnreachableUpstream answers 502 with a short text and counts it.
func TestUnreachableUpstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	p := startProxy(t, Config{Upstream: dead, Routes: []string{"/orders/{id}"}})
	resp, err := client(t).Get("http://" + p.Addr() + "/orders/7")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || string(body) != "upstream unreachable\n" {
		t.Errorf("got %d %q, want 502 upstream unreachable", resp.StatusCode, body)
	}
	if got := collect(t, p)["/orders/{id} GET 502 5xx"]; got.count != 1 || got.hcount != 1 {
		t.Errorf("502 of /orders/{id} counted %d times, want 1", got.count)
	}
}

// TestStreamsLargeBodiesBothWays sends 256 MiB up and 256 MiB down through the
// proxy. The upstream sees the request body's first megabyte before the client
// has sent the rest (it is not buffered), and the whole process allocates far
// less than one body (neither is held in memory).
func TestStreamsLargeBodiesBothWays(t *testing.T) {
	// Twice the allocation bound below, each way: buffering either body would
	// exceed it.
	const size = 64 << 20
	firstMiB := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.CopyN(io.Discard, r.Body, 1<<20); err != nil {
			t.Error(err)
			return
		}
		close(firstMiB)
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil || n+1<<20 != size {
			t.Errorf("upstream read %d more bytes, %v", n, err)
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.Copy(w, io.LimitReader(zeros{}, size))
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL, Routes: []string{"/upload"}})

	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		// The first megabyte, then wait until the upstream has it: a proxy
		// that buffered the body would never pass it on.
		if _, err := io.CopyN(pw, zeros{}, 1<<20); err != nil {
			sent <- err
			return
		}
		<-firstMiB
		_, err := io.CopyN(pw, zeros{}, size-1<<20)
		pw.CloseWithError(err)
		sent <- err
	}()
	req, _ := http.NewRequest(http.MethodPut, "http://"+p.Addr()+"/upload", pr)
	req.ContentLength = size
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("downloaded %d bytes, %v", n, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("allocated %d MiB to move 2 × %d MiB: bodies are buffered", alloc>>20, size>>20)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestUpstreamFailsMidBody: an upstream that dies after sending part of its
// body cuts the client's response short, and the request is still counted.
func TestUpstreamFailsMidBody(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, "only ten b")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL, Routes: []string{"/download"}})
	// The proxy may not have flushed the response's first bytes (its length is
	// known, so it is not a stream) before the connection is cut: the client
	// sees either a cut body or no response at all, never a whole one.
	if resp, err := client(t).Get("http://" + p.Addr() + "/download"); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || len(b) >= 1000 {
			t.Errorf("read %d bytes, %v: want a cut response", len(b), err)
		}
	}
	if got := collect(t, p)["/download GET 200 2xx"]; got.count != 1 {
		t.Errorf("cut request counted %d times, want 1", got.count)
	}
}

// TestUpgradePassesThrough: an Upgrade request reaches the upstream, which
// switches protocols, and bytes then flow both ways through the proxy.
func TestUpgradePassesThrough(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL, Routes: []string{"/ws"}})
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("response %v, %v", resp, err)
	}
	io.WriteString(conn, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo: hello\n" {
		t.Fatalf("echo %q, %v", line, err)
	}
	conn.Close()
	// The proxy records the upgrade when the tunnel ends; Shutdown waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, p)["/ws GET 101 1xx"]; got.count != 1 {
		t.Errorf("upgrade counted %d times, want 1 (all: %v)", got.count, keys(collect(t, p)))
	}
}

// TestForwardedHeaders: X-Forwarded-For appends the client's address to what
// it came with; Host and Proto say what the client asked for.
func TestForwardedHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	defer upstream.Close()
	p := startProxy(t, Config{Upstream: upstream.URL})
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.Addr()+"/x", nil)
	req.Host = "shop.example.com"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-got
	if v := h.Get("X-Forwarded-For"); v != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", v)
	}
	if h.Get("X-Forwarded-Host") != "shop.example.com" || h.Get("X-Forwarded-Proto") != "http" {
		t.Errorf("X-Forwarded-Host %q, -Proto %q", h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"))
	}
}

// TestStartAddressInUse fails Start, not a later request, when the port is taken.
func TestStartAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, err := New(Config{Name: "shop", Listen: ln.Addr().String(), Upstream: "http://127.0.0.1:1"}, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Start: %v, want address in use", err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after failed Start: %v", err)
	}
}

// TestShutdownDrains lets a request in progress finish before Shutdown returns.
func TestShutdownDrains(t *testing.T) {
	inside, release := make(chan struct{}), make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inside)
		<-release
		io.WriteString(w, "finished")
	}))
	defer upstream.Close()
	p, err := New(Config{Name: "shop", Listen: "127.0.0.1:0", Upstream: upstream.URL}, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
	p, _ = New(Config{Name: "shop", Listen: "127.0.0.1:0", Upstream: upstream.URL}, Settings{})
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := client(t)
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://" + p.Addr() + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	<-inside
	shut := make(chan error, 1)
	go func() { shut <- p.Shutdown(context.Background()) }()
	close(release)
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.body != "finished" {
		t.Errorf("request during shutdown: %q, %v", r.body, r.err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "shop", Listen: ":8080", Upstream: "https://shop.internal:8443/api", Routes: []string{"/orders/{id}", "/static/*", "/"}}
	if err := good.Validate("ingress"); err != nil {
		t.Fatalf("good config: %v", err)
	}
	bad := Config{
		Listen:         "8080",
		Upstream:       "ftp://x?y=1",
		Routes:         []string{"orders", "/a/*/b", "/a/{}", "/a/x{id}", "/dup", "/dup"},
		IdleTimeout:    -time.Second,
		MaxHeaderBytes: 1 << 30,
	}
	err := bad.Validate("ingress")
	for _, want := range []string{"name: required", "listen:", "scheme must be http or https", "query", "routes[0]", "routes[1]", "routes[2]", "routes[3]", "routes[5]: duplicate", "idle_timeout: negative", "max_header_bytes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
