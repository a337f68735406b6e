package cli

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/clock"
)

// A binary says what it was built from: the module version from go install
// module@version, the commit (and whether the tree was modified) from a build
// in a checkout, and the Go version.
func TestBuildVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"go install module@version", &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "v1.4.0"}},
			"periscope v1.4.0, built with go1.25.1"},
		{"a dirty checkout", &debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3c59763aabbccddeeff00112233445566778899"}, {Key: "vcs.time", Value: "2026-12-06T22:00:00Z"},
			{Key: "vcs.modified", Value: "true"}}},
			"periscope (devel), commit 3c59763aabbc with uncommitted changes of 2026-12-06T22:00:00Z, built with go1.25.1"},
		{"no build info", nil, "periscope (unknown version: built without module information)"},
	} {
		if got := buildVersion(tc.info, tc.info != nil); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// periscope version and periscope --version print the same line.
func TestVersionVerbAndFlag(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		root := newRoot(clock.Real{})
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("periscope %s: %v", args[0], err)
		}
		if !strings.HasPrefix(out.String(), "periscope ") || !strings.Contains(out.String(), "built with go") {
			t.Errorf("periscope %s printed %q", args[0], out.String())
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] {
		t.Errorf("version %q and --version %q differ", outs[0], outs[1])
	}
}
