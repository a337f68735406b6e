package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers"
	"github.com/periscope-dev/periscope/internal/config"
)

// engine answers the Docker Engine API on a unix socket with the recorded
// answers in testdata, as a v1.45 engine would.
type engine struct {
	t      *testing.T
	socket string
	mu     sync.Mutex
	list   []byte
	byID   map[string][]byte // inspect answers
	logs   map[string][]byte // framed log answers
	hits   []string          // paths asked, in order
	query  map[string]string // the list request's query
	srv    *http.Server
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	// A short directory: a unix socket path holds at most 108 bytes.
	dir, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &engine{t: t, socket: filepath.Join(dir, "docker.sock"), byID: map[string][]byte{}, logs: map[string][]byte{}, query: map[string]string{}}
	e.list = read(t, "list.json")
	var list []listed
	if err := json.Unmarshal(e.list, &list); err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		e.byID[c.ID] = read(t, "inspect-"+firstName(c.Names)+".json")
	}
	l, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &http.Server{Handler: e}
	go e.srv.Serve(l)
	t.Cleanup(func() { e.srv.Close() })
	return e
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hits = append(e.hits, r.URL.Path)
	path, ok := strings.CutPrefix(r.URL.Path, "/"+apiVersion)
	if !ok {
		http.Error(w, `{"message":"page not found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Api-Version", "1.45")
	if path == "/containers/json" {
		for k := range r.URL.Query() {
			e.query[k] = r.URL.Query().Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(e.list)
		return
	}
	rest, ok := strings.CutPrefix(path, "/containers/")
	id, what, _ := strings.Cut(rest, "/")
	body, known := e.byID[id]
	if !ok || !known {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"No such container: ` + id + `"}`))
		return
	}
	switch what {
	case "json":
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	case "logs":
		if r.URL.Query().Get("tail") != "20" || r.URL.Query().Get("stderr") != "1" || r.URL.Query().Get("stdout") != "1" {
			http.Error(w, `{"message":"bad logs query"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		w.Write(e.logs[id])
	default:
		http.NotFound(w, r)
	}
}

// frame is one frame of the multiplexed log stream.
func frame(stream byte, payload string) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}

const (
	workerID = "8dfafdbc3a40ae1d3f1a5a4e0e5b4b7a2f0f0e5e4c3c2b1a09f8e7d6c5b4a392"
	apiID    = "4fa6e0f0c6786287e131c3852c58a2e01cc697a68231826813597e4994f1d6e2"
	searchID = "c0ffee0000000000000000000000000000000000000000000000000000000002"
)

func newSource(t *testing.T, e *engine) *Source {
	t.Helper()
	s, err := New(config.ContainerSource{Kind: config.ContainersDocker, Name: "shop", Socket: e.socket, Labels: map[string]string{"app": "shop"}},
		Settings{Redact: func(l string) string { return strings.ReplaceAll(l, "hunter2", "****") }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// points maps each container's name to its point of the metric name.
func points(t *testing.T, ms pmetric.MetricSlice, name string) map[string]pmetric.NumberDataPoint {
	t.Helper()
	out := map[string]pmetric.NumberDataPoint{}
	for i := range ms.Len() {
		m := ms.At(i)
		if m.Name() != name {
			continue
		}
		var pts pmetric.NumberDataPointSlice
		if m.Type() == pmetric.MetricTypeGauge {
			pts = m.Gauge().DataPoints()
		} else {
			pts = m.Sum().DataPoints()
		}
		for j := range pts.Len() {
			n, _ := pts.At(j).Attributes().Get(AttrName)
			out[n.Str()] = pts.At(j)
		}
	}
	return out
}

func attr(p pmetric.NumberDataPoint, k string) string {
	v, _ := p.Attributes().Get(k)
	return v.AsString()
}

func TestCrashLoopingContainerIsDownWithRestartsExitCodeAndLastLogLine(t *testing.T) {
	e := newEngine(t)
	var logs []byte
	for i := range 25 {
		logs = append(logs, frame(1, "processing batch "+string(rune('a'+i))+"\n")...)
	}
	// stderr and stdout interleave; one line arrives in two frames.
	logs = append(logs, frame(2, "fatal: db connection refused (password hunter2")...)
	logs = append(logs, frame(2, ")\n")...)
	e.logs[workerID] = logs
	e.logs[searchID] = []byte("search: cluster red\r\n") // a terminal's raw stream
	s := newSource(t, e)
	now := time.Date(2026, 12, 6, 5, 15, 0, 0, time.UTC)
	ms := pmetric.NewMetricSlice()
	if err := s.Collect(context.Background(), now, ms); err != nil {
		t.Fatal(err)
	}
	if got := e.query["filters"]; got != `{"label":["app=shop"]}` || e.query["all"] != "1" {
		t.Errorf("list query filters=%q all=%q", got, e.query["all"])
	}

	comps := map[string]runtime.Component{}
	for _, c := range s.Components() {
		comps[c.Name] = c
	}
	if len(comps) != 4 {
		t.Fatalf("components %+v", s.Components())
	}
	w := comps["container shop-worker"]
	if w.Healthy || w.Status != "restarting" || w.Restarts != 3 {
		t.Errorf("worker component %+v, want unhealthy restarting with 3 restarts", w)
	}
	if !strings.HasPrefix(w.LastError, "exit code 137 (OOM killed): …") ||
		!strings.HasSuffix(w.LastError, "processing batch y | fatal: db connection refused (password ****)") {
		t.Errorf("worker last error %q, want the exit reason and the last (redacted) log lines", w.LastError)
	}
	if len(w.LastError) > containers.MaxLastError {
		t.Errorf("last error of %d bytes, over %d", len(w.LastError), containers.MaxLastError)
	}
	if want := time.Date(2026, 12, 6, 5, 1, 12, 500_000_000, time.UTC); !w.Since.Equal(want) {
		t.Errorf("worker since %v, want its finish time %v", w.Since, want)
	}
	if a := comps["container shop-api"]; !a.Healthy || a.Status != "running (healthy)" || a.LastError != "" || !a.Since.Equal(time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)) {
		t.Errorf("api component %+v", a)
	}
	if m := comps["container shop-migrate"]; !m.Healthy || m.Status != "completed" {
		t.Errorf("a job that exited 0 under restart policy no: %+v, want healthy completed", m)
	}
	if sr := comps["container shop-search"]; sr.Healthy || sr.Status != "running (unhealthy)" || sr.Restarts != 1 ||
		sr.LastError != "health check failing: curl: (7) Failed to connect to localhost port 9200: search: cluster red" {
		t.Errorf("search component %+v", sr)
	}

	up, ready := points(t, ms, containers.MetricUp), points(t, ms, containers.MetricReady)
	restarts, exits := points(t, ms, containers.MetricRestarts), points(t, ms, containers.MetricLastExitCode)
	for name, want := range map[string][4]int64{
		// up, ready, restarts, last exit code (-1: no point)
		"shop-worker":  {0, 0, 3, 137},
		"shop-api":     {1, 1, 0, -1},
		"shop-migrate": {0, 0, 0, 0},
		"shop-search":  {1, 0, 1, 0},
	} {
		if up[name].IntValue() != want[0] || ready[name].IntValue() != want[1] || restarts[name].IntValue() != want[2] {
			t.Errorf("%s: up %d ready %d restarts %d, want %v", name, up[name].IntValue(), ready[name].IntValue(), restarts[name].IntValue(), want)
		}
		if p, ok := exits[name]; ok != (want[3] >= 0) || ok && p.IntValue() != want[3] {
			t.Errorf("%s: last exit code %v (present %v), want %d", name, p.IntValue(), ok, want[3])
		}
	}
	if p := up["shop-worker"]; attr(p, AttrID) != workerID || attr(p, AttrImage) != "registry.example.com/shop/worker:1.4.2" || attr(p, containers.AttrState) != "restarting" {
		t.Errorf("worker attributes %v", p.Attributes().AsRaw())
	}
	if h := attr(ready["shop-api"], containers.AttrHealth); h != "healthy" {
		t.Errorf("api health %q", h)
	}
	if h := attr(ready["shop-migrate"], containers.AttrHealth); h != "none" {
		t.Errorf("migrate health %q, want none", h)
	}
	// Logs are read only for containers that are not healthy.
	for _, p := range e.hits {
		if strings.HasSuffix(p, "/logs") && !strings.Contains(p, workerID) && !strings.Contains(p, searchID) {
			t.Errorf("asked the logs of a healthy container: %s", p)
		}
	}
}

func TestEngineDownKeepsTheLastComponentsAndFails(t *testing.T) {
	e := newEngine(t)
	s := newSource(t, e)
	if err := s.Collect(context.Background(), time.Now(), pmetric.NewMetricSlice()); err != nil {
		t.Fatal(err)
	}
	before := s.Components()
	e.srv.Close() // closes its listener (removing the socket) and connections
	ms := pmetric.NewMetricSlice()
	err := s.Collect(context.Background(), time.Now(), ms)
	if err == nil || !strings.Contains(err.Error(), e.socket) {
		t.Fatalf("Collect with the engine gone: %v, want an error naming the socket", err)
	}
	if ms.Len() != 0 || len(s.Components()) != len(before) {
		t.Errorf("after a failed round: %d metrics, %d components (before %d)", ms.Len(), len(s.Components()), len(before))
	}
}

func TestRemovedBetweenListAndInspectIsGoneNotDown(t *testing.T) {
	e := newEngine(t)
	delete(e.byID, apiID)
	s := newSource(t, e)
	if err := s.Collect(context.Background(), time.Now(), pmetric.NewMetricSlice()); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, c := range s.Components() {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"container shop-migrate", "container shop-search", "container shop-worker"}) {
		t.Errorf("components %q", names)
	}
}

func TestOversizedAnswersAreRefused(t *testing.T) {
	e := newEngine(t)
	e.list = append([]byte("["), bytes.Repeat([]byte(`{"Id":"ab","Names":["/x"]},`), MaxListBytes/25)...)
	e.list = append(e.list, []byte(`{"Id":"ab"}]`)...)
	s := newSource(t, e)
	err := s.Collect(context.Background(), time.Now(), pmetric.NewMetricSlice())
	if err == nil || !strings.Contains(err.Error(), "answer over") {
		t.Fatalf("a list answer over %d bytes: %v", MaxListBytes, err)
	}
}

func TestTooManyContainersAreCutAndSaidSo(t *testing.T) {
	e := newEngine(t)
	var list []map[string]any
	body := read(t, "inspect-shop-api.json")
	for i := range containers.MaxContainers + 5 {
		id := strings.Repeat("0", 60) + string("0123456789abcdef"[i/16%16]) + string("0123456789abcdef"[i%16]) + "aa"
		list = append(list, map[string]any{"Id": id, "Names": []string{"/c" + id[58:]}})
		e.byID[id] = bytes.Replace(body, []byte(apiID), []byte(id), 1)
	}
	e.list, _ = json.Marshal(list)
	s := newSource(t, e)
	err := s.Collect(context.Background(), time.Now(), pmetric.NewMetricSlice())
	if err == nil || !strings.Contains(err.Error(), "205 containers match, watching the first 200") {
		t.Fatalf("Collect = %v", err)
	}
	if n := len(s.Components()); n != containers.MaxContainers {
		t.Errorf("%d components, want %d", n, containers.MaxContainers)
	}
}

func TestNewRefusesABadEntryAndNoRedaction(t *testing.T) {
	if _, err := New(config.ContainerSource{Kind: config.ContainersDocker, Name: "x"}, Settings{}); err == nil {
		t.Error("accepted no redaction")
	}
	if _, err := New(config.ContainerSource{Kind: config.ContainersDocker, Name: "x", Socket: "rel.sock"}, Settings{Redact: strings.TrimSpace}); err == nil {
		t.Error("accepted a relative socket")
	}
}

func TestDemuxKeepsBothStreamsInOrder(t *testing.T) {
	in := slices.Concat(frame(1, "out 1\n"), frame(2, "err 1\n"), frame(1, "out 2\n"), frame(0, ""), frame(2, "cut sho"))
	var out bytes.Buffer
	if err := Demux(bytes.NewReader(in[:len(in)-3]), &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "out 1\nerr 1\nout 2\ncut " {
		t.Errorf("demuxed %q", got)
	}
	if err := Demux(strings.NewReader("plain text, no frames"), &out); err == nil {
		t.Error("a stream without frames accepted")
	}
}
