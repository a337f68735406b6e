package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeTB records what a helper did to a test instead of ending the real one.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()                  {}
func (f *fakeTB) Skip(...any)              { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any)    { f.failed = true }
func (f *fakeTB) Skipf(string, ...any)     { f.skipped = true }
func (f *fakeTB) Fatal(...any)             { f.failed = true }
func (f *fakeTB) Errorf(string, ...any)    { f.failed = true }
func (f *fakeTB) Logf(string, ...any)      {}
func (f *fakeTB) Name() string             { return "fake" }
func (f *fakeTB) Cleanup(func())           {}
func (f *fakeTB) Setenv(key, value string) {}
func (f *fakeTB) TempDir() string          { return os.TempDir() }
func (f *fakeTB) Failed() bool             { return f.failed }
func (f *fakeTB) Skipped() bool            { return f.skipped }

func TestSkipOrFailFailsWhenIntegrationIsRequired(t *testing.T) {
	for _, tc := range []struct {
		env                   string
		wantSkipped, wantFail bool
	}{
		{env: "", wantSkipped: true},
		{env: "0", wantSkipped: true},
		{env: "1", wantFail: true},
	} {
		t.Setenv(RequireIntegration, tc.env)
		f := &fakeTB{}
		SkipOrFail(f, "no %s here", "tmpfs")
		if f.skipped != tc.wantSkipped || f.failed != tc.wantFail {
			t.Errorf("%s=%q: skipped %v failed %v, want skipped %v failed %v",
				RequireIntegration, tc.env, f.skipped, f.failed, tc.wantSkipped, tc.wantFail)
		}
	}
}

func TestPeerFindsInstalledToolsOnly(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PERISCOPE_PEERS_BIN", dir)
	t.Setenv(RequireIntegration, "1")
	if err := os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fakeTB{}
	if got := Peer(f, "tool"); got != filepath.Join(dir, "tool") || f.failed {
		t.Errorf("Peer(tool) = %q, failed %v; want the installed path", got, f.failed)
	}
	f = &fakeTB{}
	Peer(f, "missing")
	if !f.failed {
		t.Error("a missing peer did not fail the test under PERISCOPE_REQUIRE_INTEGRATION=1")
	}
}
