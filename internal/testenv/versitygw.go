package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The static credentials VersityGW's server accepts.
const (
	VersityAccessKey = "PERISCOPETEST"
	VersitySecretKey = "periscope-test-secret"
)

// VersityGW runs versitygw, the real S3-compatible server scripts/install-peers
// installs, over a fresh directory holding the given empty buckets, until the
// test ends, and returns its endpoint URL (use path-style addressing and the
// Versity* credentials). It skips, or fails under PERISCOPE_REQUIRE_INTEGRATION=1,
// when the peer is missing.
func VersityGW(t testing.TB, buckets ...string) string {
	t.Helper()
	bin := Peer(t, "versitygw")
	root := t.TempDir()
	for _, b := range buckets {
		if err := os.Mkdir(filepath.Join(root, b), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	addr := ClosedAddr(t)
	logs := &SyncBuffer{}
	cmd := exec.Command(bin, "--access", VersityAccessKey, "--secret", VersitySecretKey, "--port", addr, "--quiet", "posix", root)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("versitygw output:\n%s", logs.String())
		}
	})

	// Another process gives no signal when it listens: dialling until it
	// answers (or exits) is the only way to know.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("versitygw exited: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s: %v\n%s", addr, err, logs.String())
		}
	}
}

// SyncBuffer is a bytes.Buffer a process can write to while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
