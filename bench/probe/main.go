// Command probe runs the red-team probes of docs/security.md against a real manager
// and real agents (subprocesses of the periscope binary, on temporary directories and
// free ports) and prints a table: probe, expected, observed, PASS, FAIL or SKIP.
//
//	go run ./bench/probe              # table; exit status 1 if any probe fails
//	go run ./bench/probe -json        # the same outcomes as JSON
//	go run ./bench/probe -allow-fail  # exit status 0 even when a probe fails
//	go run ./bench/probe -run 'rest|auth'
//
// The probes are what a hostile or broken client, a crash or a careless operator can
// do to Periscope from outside: kill -9 during the first start, invalid UTF-8 and
// compression bombs, oversized and deeply nested bodies, malformed REST requests,
// tokens in the wrong place, and what they must leave behind (file modes, loss
// accounting). Every child process is killed when the command ends, also on a panic
// or a signal, and the whole run is bounded by -timeout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// adminToken is the manager's configured admin token in every run.
const adminToken = "psk_probe-admin-token-0123456789abcdef"

// outcome is one row of the table.
type outcome struct {
	Probe    string  `json:"probe"`
	Expected string  `json:"expected"`
	Observed string  `json:"observed"`
	Result   string  `json:"result"` // PASS, FAIL or SKIP
	Seconds  float64 `json:"seconds"`
}

func main() {
	jsonOut := flag.Bool("json", false, "print the outcomes as JSON instead of a table")
	allowFail := flag.Bool("allow-fail", false, "exit 0 even when a probe fails")
	bin := flag.String("periscope", "", "periscope binary (built from ./cmd/periscope when empty)")
	run := flag.String("run", "", "only probes whose name matches this regexp")
	timeout := flag.Duration("timeout", 3*time.Minute, "bound on the whole run, after the build")
	flag.Parse()

	r := &runner{}
	var err error
	if r.only, err = regexp.Compile(*run); err != nil {
		fmt.Fprintln(os.Stderr, "probe: -run:", err)
		os.Exit(2)
	}
	// A signal or the time bound ends the run; either way the children go first.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		r.cleanup()
		fmt.Fprintln(os.Stderr, "probe: stopped by", s)
		os.Exit(130)
	}()

	code := r.main(*bin, *timeout)
	r.print(os.Stdout, *jsonOut)
	if code == 0 && r.failed() && !*allowFail {
		code = 1
	}
	os.Exit(code)
}

// runner holds the run's state: its temporary directory, the child processes and
// the outcomes so far.
type runner struct {
	only *regexp.Regexp
	tmp  string
	bin  string

	mu       sync.Mutex
	procs    []*proc
	outcomes []outcome
	cleaned  bool
}

// main builds the binary, sets up a manager and an agent and runs the probes. It
// returns a non-zero exit code when the run itself could not be done.
func (r *runner) main(bin string, timeout time.Duration) (code int) {
	defer r.cleanup()
	defer func() {
		if p := recover(); p != nil {
			r.cleanup()
			fmt.Fprintf(os.Stderr, "probe: panic: %v\n", p)
			code = 2
		}
	}()
	var err error
	if r.tmp, err = os.MkdirTemp("", "periscope-probe-"); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	r.bin = bin
	if r.bin == "" {
		r.bin = filepath.Join(r.tmp, "periscope")
		start := time.Now()
		if out, err := exec.Command("go", "build", "-o", r.bin, "./cmd/periscope").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "probe: build: %v\n%s", err, out)
			return 2
		}
		fmt.Fprintf(os.Stderr, "probe: built periscope in %.1fs\n", time.Since(start).Seconds())
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if ctx.Err() == context.DeadlineExceeded {
			// Requests under way fail from here on, so the probes end quickly.
			r.cleanup()
		}
	})
	defer stop()
	start := time.Now()
	if err := r.probes(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "probe: setup:", err)
		return 2
	}
	fmt.Fprintf(os.Stderr, "probe: %d probes in %.1fs\n", len(r.outcomes), time.Since(start).Seconds())
	return 0
}

// check runs one probe unless -run leaves it out, turning a panic into a FAIL.
func (r *runner) check(ctx context.Context, name, expected string, probe func(ctx context.Context) (observed string, result string)) {
	if !r.only.MatchString(name) {
		return
	}
	start := time.Now()
	o := outcome{Probe: name, Expected: expected}
	func() {
		defer func() {
			if p := recover(); p != nil {
				o.Observed, o.Result = fmt.Sprintf("panic in probe: %v", p), "FAIL"
			}
		}()
		if ctx.Err() != nil {
			o.Observed, o.Result = "not run: the run's time bound passed", "FAIL"
			return
		}
		o.Observed, o.Result = probe(ctx)
	}()
	o.Seconds = time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "probe: %-4s %s (%.1fs)\n", o.Result, name, o.Seconds)
	r.mu.Lock()
	r.outcomes = append(r.outcomes, o)
	r.mu.Unlock()
}

func pass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func (r *runner) failed() bool {
	for _, o := range r.outcomes {
		if o.Result == "FAIL" {
			return true
		}
	}
	return false
}

func (r *runner) print(w io.Writer, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r.outcomes)
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROBE\tEXPECTED\tOBSERVED\tRESULT")
	counts := map[string]int{}
	for _, o := range r.outcomes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Probe, o.Expected, oneLine(o.Observed), o.Result)
		counts[o.Result]++
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d PASS, %d FAIL, %d SKIP\n", counts["PASS"], counts["FAIL"], counts["SKIP"])
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// proc is a child process with its output kept for the report.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error // set when done is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// start runs the periscope binary with args and extra environment.
func (r *runner) start(name string, env []string, args ...string) (*proc, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cleaned {
		return nil, fmt.Errorf("start %s: the run is over", name)
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// The children die with this process even if it is killed without a chance
	// to clean up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	r.procs = append(r.procs, p)
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end and kills it if it does not within a few seconds.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
	}
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last lines of the process's output, for a FAIL's detail.
func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// why returns the first line of the process's output that reports an error, for a
// process that failed: a crash's stack trace ends with frames that say little.
func (p *proc) why() string {
	for _, l := range strings.Split(p.out.String(), "\n") {
		low := strings.ToLower(l)
		if strings.Contains(low, "error") || strings.Contains(low, "panic") || strings.Contains(low, "fatal") {
			return strings.TrimSpace(l)
		}
	}
	return p.tail(3)
}

// cleanup kills every child and removes the temporary directory; it runs once.
func (r *runner) cleanup() {
	r.mu.Lock()
	if r.cleaned {
		r.mu.Unlock()
		return
	}
	r.cleaned = true
	procs := r.procs
	r.mu.Unlock()
	for _, p := range procs {
		if !p.exited() {
			p.kill()
		}
	}
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}

// freePort returns a loopback address nothing listens on right now.
func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHTTP polls url until it answers 200, the process exits or the time is up.
func waitHTTP(ctx context.Context, p *proc, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.why())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s: %s", p.name, url, within, p.tail(3))
		case <-tick.C:
		}
	}
}
