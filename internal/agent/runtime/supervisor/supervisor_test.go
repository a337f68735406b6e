package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/fleet"
)

// waits is the supervisor's After in tests: every wait it asks for is handed to
// the test, which fires it when it chooses, so backoff and probe periods pass
// without the test sleeping.
type waits struct {
	ch      chan wait
	mu      sync.Mutex
	pending []wait
}

type wait struct {
	why string
	d   time.Duration
	c   chan time.Time
}

func newWaits() *waits { return &waits{ch: make(chan wait, 1024)} }

func (w *waits) After(why string, d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	w.ch <- wait{why, d, c}
	return c
}

// next returns the next wait asked for as why, keeping others for later.
func (w *waits) next(t *testing.T, why string) wait {
	t.Helper()
	w.mu.Lock()
	for i, p := range w.pending {
		if p.why == why {
			w.pending = slices.Delete(w.pending, i, i+1)
			w.mu.Unlock()
			return p
		}
	}
	w.mu.Unlock()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case p := <-w.ch:
			if p.why == why {
				return p
			}
			w.mu.Lock()
			w.pending = append(w.pending, p)
			w.mu.Unlock()
		case <-timeout:
			t.Fatalf("the supervisor never waited for %q", why)
		}
	}
}

// none fails the test if a wait for why was ever asked for.
func (w *waits) none(t *testing.T, why string) {
	t.Helper()
	for {
		select {
		case p := <-w.ch:
			w.pending = append(w.pending, p)
			continue
		default:
		}
		break
	}
	for _, p := range w.pending {
		if p.why == why {
			t.Errorf("the supervisor waited for %q (%v)", why, p.d)
		}
	}
}

func (p wait) fire() { p.c <- time.Now() }

// harness runs a supervisor over cfg with test waits and a stream of its
// replicas' changes.
type harness struct {
	sup     *Supervisor
	waits   *waits
	changes chan runtime.Component
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith is start with the supervisor reading clk (the wall clock when nil).
func startWith(t *testing.T, cfg Config, clk clock.Clock) *harness {
	t.Helper()
	h := &harness{waits: newWaits(), changes: make(chan runtime.Component, 4096)}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.Workloads {
		cfg.Workloads[i].Command = exe
		cfg.Workloads[i].Env = append(cfg.Workloads[i].Env, helperEnv+"=1")
	}
	h.sup, err = New(cfg, Settings{
		After:    h.waits.After,
		Clock:    clk,
		Rand:     func() float64 { return 0.5 },
		OnChange: func(c runtime.Component) { h.changes <- c },
		Env:      append(os.Environ(), "PERISCOPE_TOKEN=pdt_secret"),
		Redact:   func(l string) string { return strings.ReplaceAll(l, "hunter2", "****") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.sup.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// until returns the first change of name whose status is one of statuses.
func (h *harness) until(t *testing.T, name string, statuses ...string) runtime.Component {
	t.Helper()
	return h.untilFunc(t, name, func(c runtime.Component) bool { return slices.Contains(statuses, c.Status) })
}

// untilFunc returns the first change of name that ok accepts.
func (h *harness) untilFunc(t *testing.T, name string, ok func(runtime.Component) bool) runtime.Component {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case c := <-h.changes:
			if c.Name == name && ok(c) {
				return c
			}
		case <-timeout:
			t.Fatalf("%s never changed as expected; now %+v", name, h.sup.Replicas())
		}
	}
}

// component collects and returns name's component.
func (h *harness) component(t *testing.T, name string) (runtime.Component, pmetric.MetricSlice) {
	t.Helper()
	ms := pmetric.NewMetricSlice()
	if err := h.sup.Collect(context.Background(), time.Now(), ms); err != nil {
		t.Fatal(err)
	}
	for _, c := range h.sup.Components() {
		if c.Name == name {
			return c, ms
		}
	}
	t.Fatalf("no component %s in %+v", name, h.sup.Components())
	return runtime.Component{}, ms
}

// freePort returns a port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// fifo is a FIFO the helpers report through, one line each.
type fifo struct {
	path string
	r    *bufio.Reader
}

// newFIFO makes a FIFO and holds it open for reading and writing, so lines of
// helpers that come and go are never cut by an end of file.
func newFIFO(t *testing.T) *fifo {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fifo{path: p, r: bufio.NewReader(f)}
}

// readLine waits for a helper's next line.
func (f *fifo) readLine(t *testing.T) string {
	t.Helper()
	line, err := f.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// points returns metric name's points by replica.
func points(ms pmetric.MetricSlice, name string) map[int64]pmetric.NumberDataPoint {
	out := map[int64]pmetric.NumberDataPoint{}
	for i := range ms.Len() {
		m := ms.At(i)
		if m.Name() != name {
			continue
		}
		var pts pmetric.NumberDataPointSlice
		if m.Type() == pmetric.MetricTypeSum {
			pts = m.Sum().DataPoints()
		} else {
			pts = m.Gauge().DataPoints()
		}
		for j := range pts.Len() {
			r, _ := pts.At(j).Attributes().Get(AttrReplica)
			out[r.Int()] = pts.At(j)
		}
	}
	return out
}

func TestCrashLoopBacksOffShowsStderrAndRecovers(t *testing.T) {
	dir := t.TempDir()
	upFile := filepath.Join(dir, "up")
	ff := newFIFO(t)
	h := start(t, Config{Workloads: []Workload{{
		Name: "worker", Args: []string{"crash"}, Port: freePort(t),
		Env:       []string{upEnv + "=" + upFile, fifoEnv + "=" + ff.path},
		Backoff:   Backoff{Initial: time.Second, Max: 4 * time.Second},
		Readiness: Readiness{HTTP: "http://127.0.0.1:{port}/healthz", Period: 5 * time.Second},
	}}})

	// Each exit 3 waits longer (1s, 2s, 4s, capped at 4s), less the injected
	// jitter (a quarter of the step times 0.5), before the next start.
	for i, want := range []time.Duration{875 * time.Millisecond, 1750 * time.Millisecond, 3500 * time.Millisecond, 3500 * time.Millisecond} {
		w := h.waits.next(t, "backoff worker/0")
		if w.d != want {
			t.Errorf("backoff before restart %d = %v, want %v", i+1, w.d, want)
		}
		c, ms := h.component(t, "worker/0")
		wantErr := "exit status 3: connecting to db | db connection refused"
		if c.Healthy || c.Status != StatusCrashLoop || c.Restarts != int64(i) || c.LastError != wantErr {
			t.Fatalf("after exit %d: %+v, want unhealthy crash-loop, %d restarts, last error %q", i+1, c, i, wantErr)
		}
		if code := points(ms, MetricLastExitCode)[0]; code.IntValue() != 3 {
			t.Errorf("last exit code %d, want 3", code.IntValue())
		}
		if i < 3 {
			w.fire()
		} else {
			// The database is back: the next run stays up and serves.
			if err := os.WriteFile(upFile, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			w.fire()
		}
	}
	if got := ff.readLine(t); !strings.HasPrefix(got, "serving ") {
		t.Fatalf("helper said %q", got)
	}
	// Each of the four crashed runs began probing before it exited; the fifth
	// wait is the running replica's.
	for range 4 {
		h.waits.next(t, "probe worker/0")
	}
	probe := h.waits.next(t, "probe worker/0")
	if st := h.sup.Replicas()[0]; !st.Up || st.Healthy() || st.Status != StatusCrashLoop || st.Restarts != 4 {
		t.Fatalf("up again but not yet ready: %+v, want still crash-loop (unhealthy) after 4 restarts", st)
	}
	probe.fire()
	h.until(t, "worker/0", StatusRunning)
	c, ms := h.component(t, "worker/0")
	if !c.Healthy || c.Restarts != 4 || !strings.Contains(c.LastError, "db connection refused") {
		t.Fatalf("recovered: %+v, want healthy, 4 restarts, the last crash's error kept", c)
	}
	up, ready, restarts := points(ms, MetricUp)[0], points(ms, MetricReady)[0], points(ms, MetricRestarts)[0]
	if up.IntValue() != 1 || ready.IntValue() != 1 || restarts.IntValue() != 4 {
		t.Errorf("up %d ready %d restarts %d, want 1 1 4", up.IntValue(), ready.IntValue(), restarts.IntValue())
	}
	pid, ok := up.Attributes().Get(AttrPID)
	if st := h.sup.Replicas()[0]; !ok || pid.Int() != int64(st.PID) || st.PID == 0 {
		t.Errorf("process.pid %v (%v), want the running replica's %d", pid.Int(), ok, st.PID)
	}
	if name, _ := up.Attributes().Get(AttrName); name.Str() != "worker" {
		t.Errorf("%s = %q", AttrName, name.Str())
	}

	h.stop(t)
	st := h.sup.Replicas()[0]
	if st.Status != StatusStopped || st.Up || st.ExitSignal != "SIGTERM" {
		t.Errorf("after Shutdown: %+v, want stopped by SIGTERM", st)
	}
}

func TestBackoffStartsOverAfterALongRun(t *testing.T) {
	upFile := filepath.Join(t.TempDir(), "up")
	ff := newFIFO(t)
	clk := clock.NewFake(time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC))
	h := startWith(t, Config{Workloads: []Workload{{
		Name: "worker", Args: []string{"crash"}, Port: freePort(t),
		Env:     []string{upEnv + "=" + upFile, fifoEnv + "=" + ff.path},
		Backoff: Backoff{Initial: time.Second, Max: time.Minute, Reset: 10 * time.Minute},
	}}}, clk)
	h.waits.next(t, "backoff worker/0").fire()    // 1 s after the first crash
	second := h.waits.next(t, "backoff worker/0") // 2 s after the second
	if err := os.WriteFile(upFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	second.fire()

	// serving waits for the replica to serve and returns the pid it told.
	serving := func() int {
		t.Helper()
		var pid int
		if _, err := fmt.Sscanf(ff.readLine(t), "serving %d", &pid); err != nil || pid <= 0 {
			t.Fatalf("helper's pid: %v", err)
		}
		return pid
	}
	kill := func(pid int) {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}

	// Killed after a short run: the third wait in a row, 4 s.
	kill(serving())
	w := h.waits.next(t, "backoff worker/0")
	if w.d != 3500*time.Millisecond {
		t.Fatalf("backoff after a short run %v, want 3.5s (4s less the jitter)", w.d)
	}
	if st := h.sup.Replicas()[0]; st.ExitSignal != "SIGKILL" || st.ExitCode != -1 || st.LastError != "signal: killed" {
		t.Errorf("killed replica: %+v", st)
	}
	w.fire()

	// Killed after running past Reset: back to the first step.
	pid := serving()
	clk.Advance(10 * time.Minute)
	kill(pid)
	if w := h.waits.next(t, "backoff worker/0"); w.d != 875*time.Millisecond {
		t.Fatalf("backoff after a long run %v, want 875ms (1s less the jitter)", w.d)
	}
}

func TestRestartPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy  RestartPolicy
		code    int
		status  string
		healthy bool
	}{
		{RestartAlways, 0, StatusBackoff, false},
		{RestartAlways, 3, StatusCrashLoop, false},
		{RestartOnFailure, 0, StatusCompleted, true},
		{RestartOnFailure, 3, StatusCrashLoop, false},
		{RestartNever, 3, StatusFailed, false},
		{RestartNever, 0, StatusCompleted, true},
	} {
		t.Run(fmt.Sprintf("%s exit %d", tc.policy, tc.code), func(t *testing.T) {
			h := start(t, Config{Workloads: []Workload{{Name: "job", Restart: tc.policy, Args: []string{"exit", strconv.Itoa(tc.code)}}}})
			c := h.until(t, "job/0", StatusBackoff, StatusCrashLoop, StatusCompleted, StatusFailed)
			want := fmt.Sprintf("exit status %d: bye", tc.code)
			if c.Status != tc.status || c.Healthy != tc.healthy || c.LastError != want {
				t.Fatalf("after the exit: %+v, want %s (healthy %v) with %q", c, tc.status, tc.healthy, want)
			}
			restarts := tc.status == StatusBackoff || tc.status == StatusCrashLoop
			if restarts {
				h.waits.next(t, "backoff job/0").fire()
				c := h.until(t, "job/0", tc.status)
				if c.Restarts != 1 {
					t.Errorf("after the second exit: %+v, want 1 restart", c)
				}
			}
			h.stop(t)
			if !restarts {
				h.waits.none(t, "backoff job/0")
				if st := h.sup.Replicas()[0]; st.Restarts != 0 || st.Status != tc.status {
					t.Errorf("after Shutdown: %+v, want %s and never restarted", st, tc.status)
				}
			}
		})
	}
}

func TestLastErrorKeepsTheReasonAndTheLastLinesRedactedWithinItsBound(t *testing.T) {
	h := start(t, Config{Workloads: []Workload{{Name: "noisy", Restart: RestartNever, Args: []string{"noisy"}}}})
	h.until(t, "noisy/0", StatusFailed)
	st := h.sup.Replicas()[0]
	if len(st.LastError) > MaxLastError || !strings.HasPrefix(st.LastError, "exit status 3: …") ||
		!strings.HasSuffix(st.LastError, " | fatal: db connection refused (password ****)") {
		t.Errorf("last error (%d bytes) %q, want the exit reason, a cut, and the last line within %d bytes", len(st.LastError), st.LastError, MaxLastError)
	}
	if len(st.Stderr) != TailLines || st.Stderr[TailLines-1] != "fatal: db connection refused (password ****)" {
		t.Errorf("kept %d stderr lines ending %q", len(st.Stderr), st.Stderr[len(st.Stderr)-1])
	}
	// The Collector sends status, restarts and last error within its bound:
	// none of the last error is cut there.
	if s := fleet.FormatComponentError(StatusCrashLoop, 1_000_000, st.LastError); len(s) > runtime.MaxErrorBytes {
		t.Errorf("the component's last error takes %d bytes, over the Collector's %d", len(s), runtime.MaxErrorBytes)
	}
}

// gone reports whether pid no longer runs (absent, or a zombie not yet reaped).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

func TestShutdownKillsTheWholeProcessGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	ff := newFIFO(t)
	h := start(t, Config{Workloads: []Workload{{Name: "stubborn", Replicas: 2, Args: []string{"stubborn"},
		Env: []string{fifoEnv + "=" + ff.path}, StopTimeout: 300 * time.Millisecond}}})
	var pids []int
	for range 2 {
		for _, f := range strings.Fields(ff.readLine(t)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		if gone(pid) {
			t.Fatalf("pid %d is not running before Shutdown", pid)
		}
	}
	h.stop(t)
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("pid %d outlived Shutdown", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, st := range h.sup.Replicas() {
		if st.Status != StatusStopped || st.ExitSignal != "SIGKILL" || st.PID != 0 {
			t.Errorf("%s after Shutdown: %+v, want stopped by SIGKILL", st.Name(), st)
		}
	}
}

func TestShutdownDeadlineKillsAtOnce(t *testing.T) {
	ff := newFIFO(t)
	h := start(t, Config{Workloads: []Workload{{Name: "stubborn", Args: []string{"stubborn"},
		Env: []string{fifoEnv + "=" + ff.path}, StopTimeout: time.Hour}}})
	ff.readLine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.sup.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown past its deadline reported no error")
	}
	if st := h.sup.Replicas()[0]; st.Status != StatusStopped || st.ExitSignal != "SIGKILL" {
		t.Errorf("after Shutdown: %+v, want stopped by SIGKILL", st)
	}
}

func TestTCPReadiness(t *testing.T) {
	ff := newFIFO(t)
	h := start(t, Config{Workloads: []Workload{
		{Name: "web", Args: []string{"serve"}, Port: freePort(t), Env: []string{fifoEnv + "=" + ff.path},
			Readiness: Readiness{TCP: "127.0.0.1:{port}", FailureThreshold: 2}},
		{Name: "mute", Args: []string{"idle"}, Port: freePort(t),
			Readiness: Readiness{TCP: "127.0.0.1:{port}", FailureThreshold: 2}},
	}})
	ff.readLine(t)
	h.waits.next(t, "probe web/0").fire()
	if c := h.until(t, "web/0", StatusRunning); !c.Healthy {
		t.Errorf("web/0 answering TCP: %+v, want healthy", c)
	}

	// One failure is still starting; the threshold's is not ready.
	h.waits.next(t, "probe mute/0").fire()
	h.waits.next(t, "probe mute/0").fire()
	h.until(t, "mute/0", StatusNotReady)
	c, ms := h.component(t, "mute/0")
	if c.Healthy || !strings.HasPrefix(c.LastError, "readiness: tcp 127.0.0.1:") || !strings.Contains(c.LastError, "refused") {
		t.Errorf("mute/0: %+v, want unhealthy with the probe's error", c)
	}
	if up, ready := points(ms, MetricUp), points(ms, MetricReady); len(up) != 1 || len(ready) != 1 {
		t.Fatalf("up %v ready %v", up, ready)
	}
}

func TestWorkloadEnvironment(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Workloads: []Workload{{Name: "w", Command: exe, Replicas: 2, Port: 9000, Env: []string{"DB=postgres"}}}},
		Settings{Env: []string{"HOME=/root", "PERISCOPE_TOKEN=pdt_secret"}, Redact: func(l string) string { return l }})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"HOME=/root", "DB=postgres", "PERISCOPE_REPLICA=1", "PORT=9001"}
	if got := s.replicas[1].env; !slices.Equal(got, want) {
		t.Errorf("replica 1's environment = %q, want %q (never the agent's PERISCOPE_* variables)", got, want)
	}
}

func TestStartRefusesAMissingCommand(t *testing.T) {
	s, err := New(Config{Workloads: []Workload{{Name: "w", Command: "/nonexistent/worker"}}}, Settings{Redact: func(l string) string { return l }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), `workload "w": command`) {
		t.Fatalf("Start = %v, want the missing command named", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestNewRefusesABadManifest: the field-by-field checks are config's
// (internal/config/workloads_test.go); New applies them under "workloads".
func TestNewRefusesABadManifest(t *testing.T) {
	_, err := New(Config{Workloads: []Workload{{Name: "ok", Command: "/bin/true"}, {Name: "ok", Command: "bin/true"}}},
		Settings{Redact: func(l string) string { return l }})
	for _, want := range []string{`workloads[1].name: duplicate "ok"`, "workloads[1].command: must be an absolute path"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New = %v, want %q", err, want)
		}
	}
	if err := (Config{Workloads: []Workload{{Name: "w", Command: "/bin/true", Port: 8080, Replicas: 3,
		Readiness: Readiness{HTTP: "http://127.0.0.1:{port}/ready"}}}}).Validate(); err != nil {
		t.Errorf("a good manifest: %v", err)
	}
}
