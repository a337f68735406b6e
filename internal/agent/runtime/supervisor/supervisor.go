// Package supervisor is the agent as a process supervisor: it runs the vendor's
// workloads from a manifest (command, arguments, environment, replicas, restart
// policy with exponential backoff, readiness by HTTP or TCP probe), each replica
// in a process group of its own and never through a shell, and reports per
// replica whether it is up and ready, how often it restarted, how it last exited
// and the last lines it wrote to stderr (redacted). It is a runtime.Watcher: its metrics
// are listed in docs/signals.md ("Workloads (supervisor)"), and each replica is a
// component ("worker/0") whose health the deployment's status depends on.
//
// # Concurrency
//
// Each replica has one goroutine that starts, waits for and restarts its
// process, and while it runs one probing goroutine; both are owned by Start and
// ended by Shutdown. Collect, Components and Replicas are safe for concurrent
// use with them and with each other.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/retry"
)

// Metric and attribute names, as docs/signals.md lists them.
const (
	MetricUp           = "periscope.workload.up"
	MetricReady        = "periscope.workload.ready"
	MetricRestarts     = "periscope.workload.restarts"
	MetricLastExitCode = "periscope.workload.last_exit_code"

	AttrName       = "periscope.workload.name"
	AttrReplica    = "periscope.workload.replica"
	AttrExitSignal = "periscope.workload.exit_signal"
	AttrPID        = "process.pid"
)

// Replica statuses, as Component.Status and Replica.Status say them.
const (
	// StatusStarting: running, and its readiness probe has not yet answered
	// nor failed FailureThreshold times.
	StatusStarting = "starting"
	// StatusRunning: running and ready.
	StatusRunning = "running"
	// StatusNotReady: running, but its readiness probe failed
	// FailureThreshold times in a row.
	StatusNotReady = "not-ready"
	// StatusCrashLoop: exited with a failure and waiting its backoff to
	// restart, or restarted after one and not yet ready.
	StatusCrashLoop = "crash-loop"
	// StatusBackoff: exited 0 under RestartAlways and waiting its backoff.
	// (Not "restarting": the manager takes any status containing "starting"
	// for a component still coming up.)
	StatusBackoff = "backoff"
	// StatusCompleted: exited 0 and not restarted by its policy; healthy.
	StatusCompleted = "completed"
	// StatusFailed: exited with a failure and not restarted by its policy.
	StatusFailed = "failed"
	// StatusStopped: stopped by Shutdown.
	StatusStopped = "stopped"
)

// Bounds on a replica's kept stderr, the runtime package's for every watched
// component.
const (
	TailLines    = runtime.TailLines
	MaxLineBytes = runtime.MaxLineBytes
)

// MaxLastError bounds Replica.LastError, in bytes, so that with its status and
// restart count it fits the runtime Collector's runtime.MaxErrorBytes whole.
const MaxLastError = 448

// stderrGrace is how long the stderr of a replica whose process group is gone
// is still read: a process that left the group may hold the pipe open for ever.
const stderrGrace = time.Second

// Settings carries what a Supervisor borrows from the agent; zero values are safe.
type Settings struct {
	// Logger receives replicas' state changes.
	Logger *slog.Logger
	// Clock stamps state changes and measures runs (for Backoff.Reset).
	Clock clock.Clock
	// Rand returns a number in [0, 1) for the backoff's jitter (math/rand/v2
	// when nil).
	Rand func() float64
	// After returns a channel that receives once d has passed; why names the
	// wait ("backoff worker/0", "probe worker/0"). time.After when nil; tests
	// fire the waits themselves.
	After func(why string, d time.Duration) <-chan time.Time
	// Env is the environment workloads start from; its PERISCOPE_* variables
	// are left out (os.Environ() when nil).
	Env []string
	// Redact applies the agent's effective redaction policy to each kept
	// stderr line before it is stored, logged or reported: a workload's errors
	// may quote personal data or secrets, and its last error reaches the
	// manager. New refuses nil.
	Redact func(line string) string
	// OnChange, when set, is called with a replica's health each time its
	// status or health changes, so the agent can report a crash at once rather
	// than at the next collection. Replicas call it from their own goroutines,
	// possibly at once; it must not block for long.
	OnChange func(runtime.Component)
}

// Replica is the state of one replica of a workload.
type Replica struct {
	Workload string
	Index    int
	// Status is one of the Status… constants.
	Status string
	// Since is when it entered Status.
	Since time.Time
	Up    bool
	Ready bool
	// PID is the running process's id, 0 when none runs.
	PID int
	// Restarts counts the times it was started again since the supervisor started.
	Restarts int64
	// Exited is true once a process of it has ended (or could not start).
	Exited bool
	// ExitCode is the last process's exit code, -1 when a signal ended it or
	// it could not start.
	ExitCode int
	// ExitSignal names the signal that ended the last process ("SIGKILL").
	ExitSignal string
	// ExitTime is when the last process ended.
	ExitTime time.Time
	// LastError is the last exit reason and the last stderr lines, e.g.
	// "exit status 3: db connection refused", bounded by MaxLastError.
	LastError string
	// ProbeError is the last failed readiness probe's reason, "" after a success.
	ProbeError string
	// Stderr holds the last process's last stderr lines (TailLines at most).
	Stderr []string
}

// Name is the replica as a component: "worker/0".
func (r Replica) Name() string { return r.Workload + "/" + strconv.Itoa(r.Index) }

// Healthy reports a replica running and ready, or one that completed.
func (r Replica) Healthy() bool {
	return r.Up && r.Ready || r.Status == StatusCompleted
}

// Component is the replica's health as the runtime Collector reports it.
func (r Replica) Component() runtime.Component {
	c := runtime.Component{Name: r.Name(), Healthy: r.Healthy(), Status: r.Status, Restarts: r.Restarts, LastError: r.LastError, Since: r.Since}
	if r.Status == StatusNotReady && r.ProbeError != "" {
		c.LastError = "readiness: " + r.ProbeError
	}
	return c
}

// Supervisor runs a Config's workloads; it is the runtime.Watcher "supervisor".
type Supervisor struct {
	set      Settings
	log      *slog.Logger
	clock    clock.Clock
	replicas []*replica
	probes   *http.Client

	mu        sync.Mutex
	started   bool
	shutdown  bool
	cancel    context.CancelFunc
	force     chan struct{} // closed when Shutdown's deadline passed: kill at once
	forceOnce sync.Once
	wg        sync.WaitGroup
	last      []runtime.Component
}

var _ runtime.Watcher = (*Supervisor)(nil)

// New validates cfg and builds a Supervisor; it starts nothing.
func New(cfg Config, set Settings) (*Supervisor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set.Redact == nil {
		return nil, errors.New("supervisor: no redaction for workloads' stderr")
	}
	s := &Supervisor{set: set, log: set.Logger, clock: clock.Or(set.Clock), force: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "supervisor")
	if s.set.After == nil {
		s.set.After = func(_ string, d time.Duration) <-chan time.Time { return time.After(d) }
	}
	base := set.Env
	if base == nil {
		base = os.Environ()
	}
	var env []string
	for _, kv := range base {
		if !strings.HasPrefix(kv, "PERISCOPE_") {
			env = append(env, kv)
		}
	}
	s.probes = &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, MaxResponseHeaderBytes: 64 << 10},
		// A redirect is an answer: the replica is serving.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, w := range cfg.Workloads {
		w = withDefaults(w)
		for i := range w.Replicas {
			r := &replica{sup: s, w: w, index: i, name: w.Name + "/" + strconv.Itoa(i),
				backoff: retry.Backoff{Initial: w.Backoff.Initial, Max: w.Backoff.Max, Jitter: 0.25, Rand: set.Rand}}
			r.env = append(append(append([]string{}, env...), w.Env...), "PERISCOPE_REPLICA="+strconv.Itoa(i))
			if w.Port > 0 {
				r.env = append(r.env, "PORT="+strconv.Itoa(w.Port+i))
			}
			if w.Readiness.HTTP != "" {
				r.probeURL = config.ExpandWorkloadTarget(w.Readiness.HTTP, i, w.Port)
			}
			if w.Readiness.TCP != "" {
				r.probeAddr = config.ExpandWorkloadTarget(w.Readiness.TCP, i, w.Port)
			}
			r.st = Replica{Workload: w.Name, Index: i, Status: StatusStarting}
			s.replicas = append(s.replicas, r)
		}
	}
	return s, nil
}

// Name identifies the supervisor among the agent's runtime sources.
func (s *Supervisor) Name() string { return "supervisor" }

// Start checks that every workload's command is an executable file (so a
// mistyped path is a startup error) and starts every replica.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return errors.New("supervisor: start after shutdown")
	}
	if s.started {
		return errors.New("supervisor: already started")
	}
	var errs []error
	checked := map[string]bool{}
	for _, r := range s.replicas {
		if checked[r.w.Name] {
			continue
		}
		checked[r.w.Name] = true
		fi, err := os.Stat(r.w.Command)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("workload %q: command: %w", r.w.Name, err))
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			errs = append(errs, fmt.Errorf("workload %q: command: %s is not an executable file", r.w.Name, r.w.Command))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.started = true
	now := s.clock.Now()
	for _, r := range s.replicas {
		r.mu.Lock()
		r.st.Since = now
		r.mu.Unlock()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	for _, r := range s.replicas {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r.run(runCtx)
		}()
	}
	s.log.Info("supervisor started", "replicas", len(s.replicas))
	return nil
}

// Shutdown sends SIGTERM to every replica's process group, SIGKILL to those
// still running after their StopTimeout or when ctx ends first, and waits for
// every replica to be gone. It is idempotent and safe without Start.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	cancel := s.cancel
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-done:
		return nil // both were ready: every replica is gone in time
	default:
	}
	s.forceOnce.Do(func() { close(s.force) })
	<-done
	return fmt.Errorf("supervisor: replicas killed at the shutdown deadline: %w", ctx.Err())
}

// Replicas returns every replica's current state, in manifest order.
func (s *Supervisor) Replicas() []Replica {
	out := make([]Replica, len(s.replicas))
	for i, r := range s.replicas {
		out[i] = r.state()
	}
	return out
}

// Collect appends each replica's up, ready, restarts and last exit code, and
// keeps their health for Components.
func (s *Supervisor) Collect(_ context.Context, now time.Time, ms pmetric.MetricSlice) error {
	reps := s.Replicas()
	comps := make([]runtime.Component, len(reps))
	for i, r := range reps {
		comps[i] = r.Component()
	}
	s.mu.Lock()
	s.last = comps
	s.mu.Unlock()
	if len(reps) == 0 {
		return nil
	}
	up := runtime.Gauge(ms, MetricUp, "1", "Whether the replica's process is running (1) or not (0).")
	ready := runtime.Gauge(ms, MetricReady, "1", "Whether the replica is running and its readiness probe answers (1) or not (0).")
	restarts := runtime.Sum(ms, MetricRestarts, "{restart}", "Times the replica was started again since the agent started.", true)
	var exits pmetric.NumberDataPointSlice
	anyExit := false
	for _, r := range reps {
		attrs := func(p pmetric.NumberDataPoint) {
			p.Attributes().PutInt(AttrReplica, int64(r.Index))
			if r.PID != 0 {
				p.Attributes().PutInt(AttrPID, int64(r.PID))
			}
		}
		attrs(runtime.Point(up, now, b2i(r.Up), AttrName, r.Workload))
		attrs(runtime.Point(ready, now, b2i(r.Up && r.Ready), AttrName, r.Workload))
		attrs(runtime.Point(restarts, now, r.Restarts, AttrName, r.Workload))
		if r.Exited {
			if !anyExit {
				anyExit = true
				exits = runtime.Gauge(ms, MetricLastExitCode, "1", "The replica's last exit code; -1 when a signal ended it or it could not start.")
			}
			p := runtime.Point(exits, now, int64(r.ExitCode), AttrName, r.Workload)
			attrs(p)
			if r.ExitSignal != "" {
				p.Attributes().PutStr(AttrExitSignal, r.ExitSignal)
			}
		}
	}
	return nil
}

// Components returns each replica's health as of the last Collect.
func (s *Supervisor) Components() []runtime.Component {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]runtime.Component(nil), s.last...)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// replica runs one replica of a workload.
type replica struct {
	sup       *Supervisor
	w         Workload
	index     int
	name      string
	env       []string
	probeURL  string
	probeAddr string
	backoff   retry.Backoff

	mu sync.Mutex
	st Replica
}

func (r *replica) state() Replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Stderr = append([]string(nil), r.st.Stderr...)
	return st
}

// update changes the replica's state; a change of status stamps Since, and a
// change of status or health is logged and handed to OnChange.
func (r *replica) update(f func(*Replica)) {
	r.mu.Lock()
	before := r.st
	f(&r.st)
	changed := r.st.Status != before.Status || r.st.Healthy() != before.Healthy()
	if r.st.Status != before.Status {
		r.st.Since = r.sup.clock.Now()
	}
	after := r.st
	r.mu.Unlock()
	if !changed {
		return
	}
	c := after.Component()
	r.sup.log.Info("replica "+c.Status, "replica", c.Name, "healthy", c.Healthy, "restarts", c.Restarts, "last_error", c.LastError)
	if r.sup.set.OnChange != nil {
		r.sup.set.OnChange(c)
	}
}

// run starts the replica's process and restarts it as its policy says until
// ctx ends.
func (r *replica) run(ctx context.Context) {
	attempt := 0
	for {
		began := r.sup.clock.Now()
		ex := r.runOnce(ctx)
		ran := r.sup.clock.Now().Sub(began)
		failed := ex.failed()
		restart := r.w.Restart == RestartAlways || r.w.Restart == RestartOnFailure && failed
		status := StatusStopped
		switch {
		case ctx.Err() != nil:
		case !restart && failed:
			status = StatusFailed
		case !restart:
			status = StatusCompleted
		case failed:
			status = StatusCrashLoop
		default:
			status = StatusBackoff
		}
		r.update(func(st *Replica) {
			st.Up, st.Ready, st.PID, st.ProbeError = false, false, 0, ""
			st.Exited, st.ExitCode, st.ExitSignal, st.ExitTime = true, ex.code, ex.signal, r.sup.clock.Now()
			st.LastError, st.Stderr = ex.lastError(), ex.stderr
			st.Status = status
		})
		if status != StatusCrashLoop && status != StatusBackoff {
			return
		}
		if ran >= r.w.Backoff.Reset {
			attempt = 0 // it ran long enough: this exit is not part of a crash loop
		}
		attempt++
		delay := r.backoff.Delay(attempt, nil)
		// Once per exit, which the backoff spaces out: a crash loop's status
		// does not change from one crash to the next, so update logs nothing.
		r.sup.log.Warn("replica exited", "replica", r.name, "reason", ex.reason, "ran", ran.Round(time.Millisecond), "restart_in", delay.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			r.update(func(st *Replica) { st.Status = StatusStopped })
			return
		case <-r.sup.set.After("backoff "+r.name, delay):
		}
		r.update(func(st *Replica) { st.Restarts++ })
	}
}

// exit is how one process of a replica ended.
type exit struct {
	startErr error
	reason   string // "exit status 3", "signal: killed"
	code     int
	signal   string
	stderr   []string
}

func (e exit) failed() bool { return e.startErr != nil || e.code != 0 }

// lastError is the exit reason with the last stderr lines, within MaxLastError.
func (e exit) lastError() string { return runtime.LastError(e.reason, e.stderr, MaxLastError) }

// runOnce starts one process of the replica, probes it while it runs, and
// returns how it ended; when ctx ends it stops the process group.
func (r *replica) runOnce(ctx context.Context) exit {
	cmd := exec.Command(r.w.Command, r.w.Args...)
	cmd.Env = r.env
	cmd.Dir = r.w.Dir
	ownProcessGroup(cmd)
	pr, pw, err := os.Pipe()
	if err != nil {
		return exit{startErr: err, reason: "start: " + err.Error(), code: -1}
	}
	cmd.Stderr = pw
	err = cmd.Start()
	pw.Close() // the child holds its own copy
	if err != nil {
		pr.Close()
		return exit{startErr: err, reason: "start: " + err.Error(), code: -1}
	}
	var stderr runtime.Tail
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&stderr, pr)
	}()
	r.update(func(st *Replica) {
		st.Up, st.PID = true, cmd.Process.Pid
		st.Ready = r.probeURL == "" && r.probeAddr == ""
		switch {
		case st.Ready:
			st.Status = StatusRunning
		case st.Status == StatusCrashLoop:
			// Restarted after a crash, it is still crash-looping until it is
			// ready: "starting" would tell the manager all is well.
		default:
			st.Status = StatusStarting
		}
	})
	probeCtx, stopProbe := context.WithCancel(ctx)
	probed := make(chan struct{})
	if st := r.state(); st.Ready {
		close(probed)
	} else {
		go r.probe(probeCtx, probed)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-ctx.Done():
		terminate(cmd)
		t := time.NewTimer(r.w.StopTimeout)
		select {
		case <-waited:
		case <-t.C:
			kill(cmd)
			<-waited
		case <-r.sup.force:
			kill(cmd)
			<-waited
		}
		t.Stop()
	}
	kill(cmd) // whatever the leader left running in its group
	awaitGroup(cmd, stderrGrace)
	stopProbe()
	<-probed
	select {
	case <-read:
	case <-time.After(stderrGrace):
		pr.Close() // a process that left the group still holds the pipe
		<-read
	}
	pr.Close()
	stderr.Flush()
	lines := stderr.Lines()
	for i, l := range lines {
		lines[i] = runtime.Bounded(r.sup.set.Redact(l), MaxLineBytes)
	}
	ps := cmd.ProcessState
	return exit{reason: ps.String(), code: ps.ExitCode(), signal: signalOf(ps), stderr: lines}
}

// probe checks the replica's readiness every Period until ctx ends.
func (r *replica) probe(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	rd := r.w.Readiness
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.sup.set.After("probe "+r.name, rd.Period):
		}
		err := r.check(ctx, rd.Timeout)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			r.update(func(st *Replica) { st.Ready, st.ProbeError, st.Status = true, "", StatusRunning })
			continue
		}
		failures++
		msg := err.Error()
		r.update(func(st *Replica) {
			st.ProbeError = msg
			if failures >= rd.FailureThreshold {
				st.Ready, st.Status = false, StatusNotReady
			}
		})
	}
}

// check runs one readiness probe within timeout.
func (r *replica) check(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if r.probeAddr != "" {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", r.probeAddr)
		if err != nil {
			return fmt.Errorf("tcp %s: %w", r.probeAddr, err)
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.probeURL, nil)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	resp, err := r.sup.probes.Do(req)
	if err != nil {
		return fmt.Errorf("http %s: %w", r.probeURL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("http %s: %s", r.probeURL, resp.Status)
	}
	return nil
}
