// Package buildinfo says what a Periscope binary was built from, read from
// the build information the Go toolchain embeds, for version verbs and flags.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Describe says what binary name is from what the Go toolchain recorded in it:
// the module version (set by go install module@version), the VCS revision and
// whether the tree was modified (set by a build inside a checkout), and the Go
// version. There is no -ldflags step to forget, so every build can say what it is.
func Describe(name string, info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return name + " (unknown version: built without module information)"
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var rev, at string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", name, version)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, ", commit %s", rev)
		if dirty {
			b.WriteString(" with uncommitted changes")
		}
		if at != "" {
			fmt.Fprintf(&b, " of %s", at)
		}
	}
	fmt.Fprintf(&b, ", built with %s", info.GoVersion)
	return b.String()
}

// String describes this binary under name.
func String(name string) string {
	info, ok := debug.ReadBuildInfo()
	return Describe(name, info, ok)
}
