package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/clock"
)

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
