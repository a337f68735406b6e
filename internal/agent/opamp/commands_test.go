package opamp

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/commands"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/desired"
)

// waitUpdate waits until the agent has sent an update of id in state.
func (m *fakeManager) waitUpdate(t *testing.T, id string, state command.State) command.Update {
	t.Helper()
	var got command.Update
	m.waitFor(t, "update "+id+" "+string(state), func([]event) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, u := range m.updates {
			if u.ID == id && u.State == state {
				got = u
				return true
			}
		}
		return false
	})
	return got
}

// The check-in carries commands both ways: the offer's declarations and the
// invocation reach the runner, its updates reach the manager, and the
// customer's rule is reported with the effective configuration.
func TestCommandsTravelOverTheCheckIn(t *testing.T) {
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Skip("no echo executable")
	}
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			m := newFakeManager(t)
			m.setOffer(t, desired.Offer{Release: "1.0.0", Commands: []command.Spec{
				{Name: "hello", Exec: &command.ExecHandler{Path: echo, Args: []string{"hello", "password=hunter2"}}},
			}})
			// Sent with every answer: the runner must run it once however
			// often it comes.
			m.setCustom(command.Message(command.MessageInvoke, command.Invocations{Invocations: []command.Invocation{
				{ID: "inv-1", Command: "hello", Deadline: time.Now().Add(time.Minute), By: "alice", Reason: "support ticket"},
			}}))
			var a *testAgent
			r, err := commands.New(commands.Settings{Dir: t.TempDir(), Rule: command.Rule{Allow: []string{"hello"}},
				Redact: func(s string) (string, map[string]int) {
					return strings.ReplaceAll(s, "hunter2", "[REDACTED:password]"), map[string]int{"password": 1}
				},
				Sink: commands.SinkFunc(func(ctx context.Context, u []command.Update) error { return a.SendCommandUpdates(ctx, u) }),
				Env:  []string{}})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			a = startAgentWith(t, m, transport, "", func(c *config.Agent) {
				c.Update.Command = "true" // only an agent with a hook takes offers
				c.Commands = command.Rule{Allow: []string{"hello"}}
			}, Settings{Commands: r})
			t.Cleanup(func() { _ = r.Shutdown(context.Background()) }) // before the agent's

			t.Cleanup(func() {
				if t.Failed() {
					m.mu.Lock()
					t.Logf("updates %+v\nlogs:\n%s", m.updates, a.logs.String())
					m.mu.Unlock()
				}
			})
			u := m.waitUpdate(t, "inv-1", command.StateSucceeded)
			if u.Result == nil || strings.TrimSpace(u.Result.Output) != "hello password=[REDACTED:password]" {
				t.Errorf("result %+v", u.Result)
			}
			m.mu.Lock()
			caps, configs := m.customCaps, strings.Join(m.configs, "\n")
			m.mu.Unlock()
			if !slices.Contains(caps, command.Capability) {
				t.Errorf("custom capabilities %v lack %s", caps, command.Capability)
			}
			if !strings.Contains(configs, string(command.EncodeRule(command.Rule{Allow: []string{"hello"}}))) {
				t.Errorf("the effective configuration does not report the customer's rule:\n%s", configs)
			}
			if got := command.Names(r.Specs()); !slices.Equal(got, []string{"hello"}) {
				t.Errorf("the runner holds %v, want the offer's declarations", got)
			}
		})
	}
}

// opamp-go holds one custom message at a time: updates sent while another is
// pending wait for it, and none is lost.
func TestCommandUpdatesSentBackToBackAllArrive(t *testing.T) {
	m := newFakeManager(t)
	r, err := commands.New(commands.Settings{Dir: t.TempDir(), Redact: func(s string) (string, map[string]int) { return s, nil },
		Sink: commands.SinkFunc(func(context.Context, []command.Update) error { return nil }), Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	a := startAgentWith(t, m, "websocket", "", nil, Settings{Commands: r})
	m.waitMessages(t, 1)
	for i := range 20 {
		u := command.Update{ID: fmt.Sprintf("u%d", i), State: command.StateDelivered, At: time.Now()}
		if err := a.SendCommandUpdates(context.Background(), []command.Update{u}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		m.waitUpdate(t, fmt.Sprintf("u%d", i), command.StateDelivered)
	}
}
