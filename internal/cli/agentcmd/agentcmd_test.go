package agentcmd

import (
	"context"
	"strings"
	"testing"
)

// An agent started from a shell set up for the CLI must not check in with the
// operator's token: it says which variable it wants instead of retrying forever.
func TestAgentRefusesTheCLIsOperatorToken(t *testing.T) {
	for _, tc := range []struct{ token, want string }{
		{"psk_0123456789abcdef", "operator API token"},
		{"pdt_0123456789abcdef", "PERISCOPE_AGENT_TOKEN"},
	} {
		t.Setenv("PERISCOPE_MANAGER", "http://127.0.0.1:1")
		t.Setenv("PERISCOPE_TOKEN", tc.token)
		t.Setenv("PERISCOPE_AGENT_TOKEN", "")
		t.Setenv("PERISCOPE_OTLP_GRPC", "off")
		t.Setenv("PERISCOPE_OTLP_HTTP", "off")
		t.Setenv("PERISCOPE_DATA_DIR", t.TempDir())
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // an agent that did start stops at once
		cmd := New()
		cmd.SetArgs(nil)
		cmd.SetContext(ctx)
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tc.token) {
			t.Errorf("agent with PERISCOPE_TOKEN=%s… and no agent token: err = %v, want one naming %q (and not the token)", tc.token[:4], err, tc.want)
		}
	}
}

// A token given as --token is refused when it is an operator's.
func TestAgentRefusesAnOperatorTokenFlag(t *testing.T) {
	t.Setenv("PERISCOPE_TOKEN", "")
	cmd := New()
	cmd.SetArgs([]string{"--manager", "http://127.0.0.1:1", "--token", "psk_0123456789abcdef", "--data-dir", t.TempDir()})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "operator API token") {
		t.Errorf("agent --token psk_…: err = %v, want it called an operator API token", err)
	}
}
