// Package testenv is what tests need from the machine they run on: peer tools that
// scripts/install-peers installs, and privileges such as mounting a file system.
//
// A test that cannot run here skips with a message saying how to make it run, except
// under PERISCOPE_REQUIRE_INTEGRATION=1 (set by .ci/run), where the same condition
// fails the test, so CI can never pass by skipping what it was meant to prove.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// RequireIntegration is the environment variable that turns every skip of this
// package into a failure.
const RequireIntegration = "PERISCOPE_REQUIRE_INTEGRATION"

// Required reports whether integration tests must run rather than skip.
func Required() bool { return os.Getenv(RequireIntegration) == "1" }

// SkipOrFail skips the test with the formatted reason, or fails it when integration
// tests are required.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (required: %s=1)", msg, RequireIntegration)
		return
	}
	t.Skip(msg)
}

// PeersDir is where scripts/install-peers puts peer binaries: $PERISCOPE_PEERS_BIN,
// or ~/.cache/periscope-peers/bin.
func PeersDir() string {
	if dir := os.Getenv("PERISCOPE_PEERS_BIN"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "periscope-peers", "bin")
}

// Peer returns the path of a peer tool installed by scripts/install-peers, or skips
// (fails under PERISCOPE_REQUIRE_INTEGRATION=1) when it is missing.
func Peer(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(PeersDir(), name)
	if _, err := exec.LookPath(p); err != nil {
		SkipOrFail(t, "peer %s is not installed at %s (run scripts/install-peers %s): %v", name, p, name, err)
	}
	return p
}

// Server skips the test (fails it under PERISCOPE_REQUIRE_INTEGRATION=1) when
// nothing accepts TCP connections at addr: a service of the machine (Redis,
// NATS, RabbitMQ, …) the test talks to, named by what.
func Server(t testing.TB, what, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		SkipOrFail(t, "no %s at %s (a service of the machine; .ci/run starts it): %v", what, addr, err)
		return
	}
	c.Close()
}

// ClosedAddr returns a loopback address nothing listens on, for tests of a
// server that is down.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Buffer is a bytes.Buffer safe for concurrent use: where a logger writes
// lines that the test reads while the code under test goes on writing.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
