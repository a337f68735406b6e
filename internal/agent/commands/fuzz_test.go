package commands

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/command"
)

// FuzzAgentCommandMessage feeds hostile invoke and ack messages to the runner:
// decoding must refuse what breaks the contract whole, and whatever it accepts
// must end in an update without the agent panicking or running anything
// undeclared. The one declared executable does not exist, so nothing runs.
func FuzzAgentCommandMessage(f *testing.F) {
	for _, seed := range []struct {
		typ  string
		body any
	}{
		{command.MessageInvoke, command.Invocations{Invocations: []command.Invocation{{ID: "a1", Command: "rows", Params: command.Params{"limit": 5}, Deadline: time.Now().Add(time.Hour), By: "alice", Reason: "why"}}}},
		{command.MessageInvoke, command.Invocations{Invocations: []command.Invocation{{ID: "a2", Command: "nope"}, {ID: "a2", Command: "rows"}}}},
		{command.MessageInvoke, command.Invocations{Invocations: []command.Invocation{{ID: "a3", Command: "rows", Params: command.Params{"limit": "x", "extra": true}}}}},
		{command.MessageAck, command.Ack{IDs: []string{"a1", "a2", "zz"}}},
		{"bogus", map[string]any{"x": 1}},
	} {
		f.Add(seed.typ, command.Message(seed.typ, seed.body).Data)
	}
	f.Add(command.MessageInvoke, []byte(`{"invocations":[{"id":"b","command":"rows","params":{"limit":{"a":[1,2]}},"deadline":"2000-01-01T00:00:00Z","by":"","reason":""}]}`))
	f.Add(command.MessageInvoke, []byte(`{"invocations":[{"id":"../../x","command":"rows"}]}`))
	f.Add(command.MessageAck, []byte(`{"ids":[""]}{}`))

	dir := f.TempDir()
	r, err := New(Settings{Dir: filepath.Join(dir, "commands"), Redact: func(s string) (string, map[string]int) { return s, nil },
		Sink: SinkFunc(func(_ context.Context, u []command.Update) error {
			for _, x := range u {
				if !x.State.Valid() || x.State == command.StateQueued || len(x.Reason) > command.MaxReasonBytes {
					panic("the runner sent an update outside the contract: " + string(x.State))
				}
			}
			return nil
		}), Env: []string{}})
	if err != nil {
		f.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	limit := 100.0
	if err := r.SetSpecs([]command.Spec{{Name: "rows", Params: []command.Param{{Name: "limit", Type: command.TypeInteger, Max: &limit}},
		Exec: &command.ExecHandler{Path: "/nonexistent/periscope-fuzz-command"}}}); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		msg := &protobufs.CustomMessage{Capability: command.Capability, Type: typ, Data: data}
		err := r.HandleMessage(msg)
		if typ != command.MessageInvoke && typ != command.MessageAck && err == nil {
			t.Fatalf("message type %q accepted", typ)
		}
		if err == nil && typ == command.MessageInvoke {
			v, derr := command.DecodeInvocations(data)
			if derr != nil {
				t.Fatalf("accepted a body the contract refuses: %v", derr)
			}
			for _, inv := range v.Invocations {
				if inv.Command != "rows" && r.isActive(inv.ID) {
					t.Fatalf("undeclared command %q accepted to run", inv.Command)
				}
			}
		}
		r.wg.Wait()
	})
}

// isActive reports whether id is accepted and not finished.
func (r *Runner) isActive(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[id]
}
