package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/periscope-dev/periscope/internal/clock"
)

// periscope manager and periscope agent with a config holding a typo and a
// bad value refuse to start, listing both problems with the key's path and
// the nearest real key.
func TestManagerAndAgentReportEveryConfigProblem(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		verb string
		doc  string
		args []string
		says []string
	}{
		{"manager", "heartbeat_intervall: 10s\nlog_level: verbose\n", []string{"--data-dir", dir},
			[]string{"2 problems", "line 1: heartbeat_intervall: unknown key (did you mean heartbeat_interval?)", `log_level: "verbose" must be debug, info, warn or error`}},
		{"agent", "tokn: pdt_x\nlog_level: loud\n", []string{"--manager", "http://127.0.0.1:1", "--token", "pdt_x", "--release", "1", "--data-dir", dir},
			[]string{"2 problems", "line 1: tokn: unknown key (did you mean token?)", `log_level: "loud"`}},
	} {
		path := filepath.Join(dir, tc.verb+".yaml")
		if err := os.WriteFile(path, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		root := newRoot(clock.Real{})
		var stdout bytes.Buffer
		root.SetOut(&stdout)
		root.SetErr(&stdout)
		root.SetArgs(append([]string{tc.verb, "--config", path}, tc.args...))
		err := root.Execute()
		if err == nil {
			t.Fatalf("periscope %s started with a bad config", tc.verb)
		}
		inOrder(t, err.Error(), tc.says...)
		if stdout.Len() > 0 {
			t.Errorf("periscope %s printed before failing:\n%s", tc.verb, stdout.String())
		}
	}
}
