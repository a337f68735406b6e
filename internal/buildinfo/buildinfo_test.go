package buildinfo

import (
	"runtime/debug"
	"testing"
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
		if got := Describe("periscope", tc.info, tc.info != nil); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
