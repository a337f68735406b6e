// Package crashtest runs part of a test in a child process and kills it with
// SIGKILL, so a test can prove that what the child acknowledged survives a crash
// at any point. The child is the test binary itself, running one test function
// that does the work and reports its progress on standard output, one line per
// step; the parent reads those lines to choose when to kill.
//
// Usage, in one test file:
//
//	func TestStoreChild(t *testing.T) {
//		dir, ok := crashtest.Child()
//		if !ok {
//			t.Skip("runs only as the child of a crash test")
//		}
//		crashtest.Report("opening")
//		… open dir, write, crashtest.Report("ack", n) after each acknowledged write …
//		crashtest.Hold() // keep the process alive until it is killed
//	}
//
//	func TestStoreSurvivesKills(t *testing.T) {
//		p := crashtest.Start(t, "TestStoreChild", dir)
//		p.Await(t, "opening")
//		p.KillAfter(t, delay)
//		… reopen dir and check every line that began with "ack" …
//	}
package crashtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childEnv names the environment variable that carries the child's directory;
// its presence is what makes a process a child.
const childEnv = "PERISCOPE_CRASHTEST_DIR"

// Child reports whether this process is a crash test's child, and the
// directory its parent gave it.
func Child() (dir string, ok bool) { return os.LookupEnv(childEnv) }

// Report writes one progress line for the parent: the words separated by
// spaces. It goes to standard output, where the parent reads it; anything else
// written there (a log) is progress it can wait for too.
func Report(words ...any) { fmt.Fprintln(os.Stdout, words...) }

// Fail reports err on one "failed" line, which the parent's checks look for,
// and ends the child.
func Fail(err error) {
	Report("failed", strings.ReplaceAll(err.Error(), "\n", " "))
	os.Exit(1)
}

// Hold blocks until the parent closes the child's standard input (the parent
// ended without killing it) and then exits the process, so a child never
// outlives its test.
func Hold() {
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// Proc is a running child.
type Proc struct {
	cmd   *exec.Cmd
	stdin io.Closer
	lines chan string
	// mu guards seen, every line read so far.
	mu   sync.Mutex
	seen []string
	done chan struct{}
}

// Start runs test (a function name of the calling test binary) in a child
// process with dir, and extra environment variables "K=V".
func Start(t testing.TB, test, dir string, env ...string) *Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(append(os.Environ(), childEnv+"="+dir), env...)
	cmd.Stderr = &tailWriter{max: 8 << 10}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the child %s: %v", test, err)
	}
	p := &Proc{cmd: cmd, stdin: in, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.mu.Lock()
			p.seen = append(p.seen, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default: // nobody awaits this many lines; Lines still has them
			}
		}
	}()
	t.Cleanup(func() { p.Kill(t) })
	return p
}

// Await reads lines until one contains s and returns it. The child ending
// first, or a minute passing, fails the test.
func (p *Proc) Await(t testing.TB, s string) string {
	t.Helper()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.Kill(t)
				t.Fatalf("the child ended before reporting %q; its stderr ends:\n%s", s, p.cmd.Stderr)
			}
			if strings.Contains(l, s) {
				return l
			}
		case <-timeout.C:
			t.Fatalf("the child did not report %q within a minute; its stderr ends:\n%s", s, p.cmd.Stderr)
		}
	}
}

// KillAfter kills the child with SIGKILL once d has passed. The wait is the
// point of the test (where in its work the child dies), not a synchronisation:
// stepping d moves the kill through the child's work.
func (p *Proc) KillAfter(t testing.TB, d time.Duration) {
	t.Helper()
	if d > 0 {
		time.Sleep(d)
	}
	p.Kill(t)
}

// Kill kills the child with SIGKILL, if it still runs, and waits for it to end.
func (p *Proc) Kill(t testing.TB) {
	t.Helper()
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.stdin.Close()
		<-p.done
		_ = p.cmd.Wait()
	}
}

// Lines returns every line the child has written so far; after Kill, every
// line it wrote.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// Sweep kills a child at kills points spread evenly over its opening of a
// store: from its line "opening" to half as long again past its line "opened",
// as long as a first, unkilled run of the child took between the two. Each run
// starts on a fresh copy of dir. After each kill, check gets the copy the child
// left, every line it wrote and where it was killed, in words for a failure.
func Sweep(t testing.TB, child, dir string, kills int, check func(dir string, lines []string, what string)) {
	t.Helper()
	p := Start(t, child, CopyDir(t, dir))
	p.Await(t, "opening")
	began := time.Now()
	p.Await(t, "opened")
	span := 3 * time.Since(began) / 2
	p.Kill(t)
	for i := range kills {
		run := CopyDir(t, dir)
		p := Start(t, child, run)
		p.Await(t, "opening")
		at := span * time.Duration(i) / time.Duration(max(1, kills-1))
		p.KillAfter(t, at)
		check(run, p.Lines(), fmt.Sprintf("killed %v after opening began", at))
	}
}

// KillsEnv names the environment variable that sets how many times each crash
// test kills its child, for a longer run than the default.
const KillsEnv = "PERISCOPE_CRASH_KILLS"

// Kills is how many times a crash test kills its child: def, or $PERISCOPE_CRASH_KILLS.
// It is at least 2, so kill points can be spread from a start to an end.
func Kills(t testing.TB, def int) int {
	t.Helper()
	v := os.Getenv(KillsEnv)
	if v == "" {
		return max(2, def)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		t.Fatalf("%s=%q: want a number of at least 2", KillsEnv, v)
	}
	return n
}

// CopyDir copies the files of dir into a new temporary directory of t's, so
// each kill starts from the same files.
func CopyDir(t testing.TB, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			t.Fatalf("copy %s: %s is not a regular file", dir, e.Name())
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// tailWriter keeps the last max bytes written to it, for failure messages.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = w.b[len(w.b)-w.max:]
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
