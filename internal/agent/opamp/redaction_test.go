package opamp

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// setCustom makes msg part of every answer from now on.
func (m *fakeManager) setCustom(msg *protobufs.CustomMessage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.custom = msg
}

// waitReport waits until the agent has reported a redaction report for which
// cond holds, and returns it.
func (m *fakeManager) waitReport(t *testing.T, what string, cond func(redactpolicy.Report) bool) redactpolicy.Report {
	t.Helper()
	var got redactpolicy.Report
	m.waitFor(t, what, func([]event) bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, r := range m.reports {
			if cond(r) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

func TestVendorRedactionPolicyIsAppliedKeptAndReported(t *testing.T) {
	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			m := newFakeManager(t)
			vendor := redactpolicy.Policy{
				Detectors:  map[string]string{"email": redactpolicy.ActionHash, "ip": redactpolicy.ActionOff},
				Attributes: redactpolicy.Attributes{Deny: []string{"user.ssn"}},
			}
			good := redactpolicy.PolicyMessage(vendor)
			m.setCustom(good)
			local := redactpolicy.Policy{Detectors: map[string]string{"ip": redactpolicy.ActionHash}, HashKey: "customer-secret-key"}
			configure := func(c *config.Agent) { c.Redaction = local }
			a := startAgent(t, m, transport, "", configure)

			want := redactpolicy.Merge(vendor, local)
			r := m.waitReport(t, "the agent reports holding the vendor policy", func(r redactpolicy.Report) bool {
				return r.VendorHash == redactpolicy.VendorHash(vendor)
			})
			if r.EffectiveHash != want.Hash() || a.Redaction().Hash() != want.Hash() {
				t.Fatalf("reported %s, runs %s, want %s", r.EffectiveHash, a.Redaction().Hash(), want.Hash())
			}
			if d := a.Redaction().Detectors; d["email"] != redactpolicy.ActionMask || d["ip"] != redactpolicy.ActionHash {
				t.Errorf("detectors %v: want email masked (the customer's default) and ip hashed (the customer's)", d)
			}

			// The customer's hash key never leaves the agent; its place is marked.
			m.mu.Lock()
			configs := strings.Join(m.configs, "\n")
			m.mu.Unlock()
			if strings.Contains(configs, "customer-secret-key") {
				t.Fatal("the redaction hash key is in the effective configuration")
			}
			if !strings.Contains(configs, "hash_key: <redacted>") {
				t.Errorf("the effective configuration does not show the hash key as redacted:\n%s", configs)
			}

			// Kept on disk as received, readable by the agent's user only.
			path := filepath.Join(a.dir, VendorRedactionFile)
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %v %v, want a 0600 file", path, fi, err)
			}
			if got := readFile(t, path); got != string(good.Data) {
				t.Errorf("kept %q, want %q", got, good.Data)
			}

			// A policy the agent cannot run whole is refused, said and reported;
			// the previous one stays in force, in memory and on disk.
			bad := &protobufs.CustomMessage{Capability: redactpolicy.Capability, Type: redactpolicy.MessagePolicy,
				Data: []byte(`{"detectors":{"iban":"mask","ip":"off"}}`)}
			m.setCustom(bad)
			r = m.waitReport(t, "the agent reports refusing the policy", func(r redactpolicy.Report) bool {
				return r.RefusedHash == redactpolicy.PolicyHash(bad.Data)
			})
			if r.VendorHash != redactpolicy.VendorHash(vendor) || !strings.Contains(r.Error, "iban") || r.EffectiveHash != want.Hash() {
				t.Errorf("after the refusal the agent reports %+v", r)
			}
			a.waitLog(t, "refused the vendor redaction policy")
			if a.Redaction().Hash() != want.Hash() || readFile(t, path) != string(good.Data) {
				t.Error("the refused policy replaced the previous one")
			}

			// A restart while the manager is away runs the kept policy at once.
			if err := a.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			m.srv.Close()
			b := startAgent(t, m, transport, a.dir, configure)
			if got := b.Redaction(); got.Hash() != want.Hash() {
				t.Errorf("after a restart without the manager the agent runs %+v, want %+v", got, want)
			}
		})
	}
}

// Until a vendor policy is known the agent runs at least the safe default, however
// loose the customer's policy is.
func TestWithoutAVendorPolicyTheDefaultHolds(t *testing.T) {
	m := newFakeManager(t)
	a := startAgent(t, m, "http", "", func(c *config.Agent) {
		c.Redaction = redactpolicy.Policy{Mode: redactpolicy.ModeOff}
	})
	if e := a.Redaction(); e.Off || e.Detectors["card"] != redactpolicy.ActionMask {
		t.Errorf("customer off, no vendor policy yet: %+v, want the default", e)
	}
	r := m.waitReport(t, "a report", func(redactpolicy.Report) bool { return true })
	if r.VendorHash != "" || r.EffectiveHash != redactpolicy.Resolve(redactpolicy.Policy{}).Hash() {
		t.Errorf("report %+v, want no vendor policy and the default in force", r)
	}
}
