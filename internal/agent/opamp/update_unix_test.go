//go:build unix

package opamp

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hookStarted makes the named pipe $HOOKDIR/started in dir, on which gatedHook says
// which release it is applying once it has recorded its run. The returned function
// waits for that line. The pipe is removed then, so a later run does not block
// writing to it.
func hookStarted(t *testing.T, dir string) func(t *testing.T, release string) {
	t.Helper()
	path := filepath.Join(dir, "started")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// Opened for reading and writing, so the open does not wait for the hook, and
	// the pipe has a writer until the hook's own: reads wait for its line rather
	// than meeting end of file.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close(); os.Remove(path) })
	return func(t *testing.T, release string) {
		t.Helper()
		f.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(f).ReadString('\n')
		os.Remove(path)
		if err != nil {
			t.Fatalf("the hook never started: %v", err)
		}
		if got := strings.TrimSpace(line); got != release {
			t.Fatalf("the hook started applying %q, want %q", got, release)
		}
	}
}
