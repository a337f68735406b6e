package opamp

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/thresholds"
)

// waitThresholds waits until the agent has reported a thresholds report for
// which cond holds, and returns it.
func (m *fakeManager) waitThresholds(t *testing.T, what string, cond func(thresholds.Report) bool) thresholds.Report {
	t.Helper()
	var got thresholds.Report
	m.waitFor(t, what, func([]event) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, r := range m.thrReports {
			if cond(r) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

func TestThresholdsAreAppliedKeptAndReported(t *testing.T) {
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			m := newFakeManager(t)
			set := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}
			m.setCustom(thresholds.Message(set))
			applied := make(chan thresholds.Set, 4)
			a := startAgentWith(t, m, transport, "", nil, Settings{OnThresholds: func(s thresholds.Set) { applied <- s }})

			m.waitThresholds(t, "the agent reports holding the set", func(r thresholds.Report) bool { return r.Hash == thresholds.Hash(set) })
			if got := <-applied; !reflect.DeepEqual(got, set) {
				t.Errorf("applied %+v, want %+v", got, set)
			}
			if !reflect.DeepEqual(a.Thresholds(), set) {
				t.Errorf("Thresholds() = %+v", a.Thresholds())
			}
			path := filepath.Join(a.dir, ThresholdsFile)
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v, want a 0600 file", path, fi, err)
			}

			// A set the agent cannot check whole is refused and reported; the
			// previous one stays in force.
			bad := &protobufs.CustomMessage{Capability: thresholds.Capability, Type: thresholds.MessageSet, Data: []byte(`{"queues":[{"source":"*","max_lag":-5}]}`)}
			m.setCustom(bad)
			r := m.waitThresholds(t, "the agent reports refusing the set", func(r thresholds.Report) bool { return r.RefusedHash != "" })
			if r.Hash != thresholds.Hash(set) || !strings.Contains(r.Error, "max_lag") {
				t.Errorf("after the refusal the agent reports %+v", r)
			}
			if !reflect.DeepEqual(a.Thresholds(), set) {
				t.Error("the refused set replaced the previous one")
			}

			// A restart while the manager is away checks the kept set at once.
			if err := a.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			m.srv.Close()
			b := startAgent(t, m, transport, a.dir, nil)
			if got := b.Thresholds(); !reflect.DeepEqual(got, set) {
				t.Errorf("after a restart without the manager the agent checks %+v, want %+v", got, set)
			}
		})
	}
}
