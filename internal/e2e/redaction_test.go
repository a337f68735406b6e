package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/agent"
	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// waitRedaction waits until deployment id shows its agent in sync with the vendor
// policy the manager runs, running what the agent says it runs, and returns it.
func waitRedaction(t *testing.T, api *apiclient.Client, id string, a interface{ Redaction() redactpolicy.Effective }, vendor redactpolicy.Policy) *apitypes.Redaction {
	t.Helper()
	var got *apitypes.Redaction
	eventually(t, 15*time.Second, id+" reports the vendor policy in force", func() error {
		d, err := api.Deployment(context.Background(), id)
		switch {
		case err != nil:
			return err
		case d.Redaction == nil:
			return fmt.Errorf("no redaction reported yet")
		case !d.Redaction.InSync || d.Redaction.VendorHash != redactpolicy.VendorHash(vendor):
			return fmt.Errorf("vendor hash %q, in sync %v", d.Redaction.VendorHash, d.Redaction.InSync)
		case d.Redaction.EffectiveHash != a.Redaction().Hash() || d.Redaction.Effective.Hash() != d.Redaction.EffectiveHash:
			return fmt.Errorf("the API shows effective %s, the agent runs %s", d.Redaction.EffectiveHash, a.Redaction().Hash())
		}
		got = d.Redaction
		return nil
	})
	return got
}

// The vendor's policy reaches every agent over OpAMP and merges with the customer's
// so that the stricter of each holds: the customer overrides a looser vendor policy,
// the vendor tightens a looser customer policy. What runs is visible per deployment
// in the API, survives an agent restart without the manager, and follows a changed
// vendor policy after the manager restarts.
func TestVendorRedactionPolicyMergesWithTheCustomers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// The vendor turns IP masking off, only hashes e-mail addresses and removes
	// one attribute outright.
	vendor := redactpolicy.Policy{
		Detectors:  map[string]string{"ip": redactpolicy.ActionOff, "email": redactpolicy.ActionHash},
		Attributes: redactpolicy.Attributes{Deny: []string{"user.ssn"}},
	}
	m := startManagerWith(t, "127.0.0.1:0", dir, func(c *config.Manager) { c.Redaction = vendor })
	first := m
	t.Cleanup(func() { first.Shutdown(ctx) }) // idempotent: for a test that stops early
	addr := m.URL()
	api := apiclient.New(addr, adminToken)
	tokens := map[string]string{}
	for _, id := range []string{"strict-customer", "lax-customer"} {
		d, err := api.CreateDeployment(ctx, apitypes.NewDeployment{ID: id, Customer: id, Stack: "app"})
		if err != nil {
			t.Fatal(err)
		}
		tokens[id] = d.Token
	}

	// A customer on the default policy, with its own hash key (a push agent).
	strict := startAgent(t, addr, tokens["strict-customer"], "websocket", "1.0.0",
		config.Agent{Redaction: redactpolicy.Policy{HashKey: "strict-customer-secret"}}, nil)
	// A customer who turned e-mail and IP detection off (a polling agent).
	laxDir := t.TempDir()
	laxLocal := redactpolicy.Policy{Detectors: map[string]string{"email": redactpolicy.ActionOff, "ip": redactpolicy.ActionOff}}
	lax := startAgent(t, addr, tokens["lax-customer"], "http", "1.0.0", config.Agent{DataDir: laxDir, Redaction: laxLocal}, nil)

	t.Run("CustomerOverridesALooserVendorPolicy", func(t *testing.T) {
		r := waitRedaction(t, api, "strict-customer", strict, vendor)
		if r.Effective.Off || r.Effective.Detectors["ip"] != redactpolicy.ActionMask || r.Effective.Detectors["email"] != redactpolicy.ActionMask {
			t.Errorf("effective detectors %v: the customer's default must keep ip and email masked", r.Effective.Detectors)
		}
		if !slices.Contains(r.Effective.Deny, "user.ssn") {
			t.Errorf("deny %v lost the vendor's entry", r.Effective.Deny)
		}
	})
	t.Run("VendorTightensALooserCustomerPolicy", func(t *testing.T) {
		r := waitRedaction(t, api, "lax-customer", lax, vendor)
		if r.Effective.Detectors["email"] != redactpolicy.ActionHash || r.Effective.Detectors["ip"] != redactpolicy.ActionOff {
			t.Errorf("effective detectors %v: want email hashed (the vendor's) and ip off (both say so)", r.Effective.Detectors)
		}
		if !slices.Contains(r.Effective.Deny, "user.ssn") {
			t.Errorf("deny %v: the vendor's deny-list must hold", r.Effective.Deny)
		}
	})

	// The polling agent restarts while the manager is down: it runs the vendor
	// policy it kept from its first record, before any check-in.
	before := lax.Redaction()
	if err := lax.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	lax = startAgent(t, addr, tokens["lax-customer"], "http", "1.0.0", config.Agent{DataDir: laxDir, Redaction: laxLocal}, nil)
	if got := lax.Redaction(); got.Hash() != before.Hash() || got.Detectors["email"] != redactpolicy.ActionHash {
		t.Fatalf("after a restart without the manager the agent runs %v (email %s), want the kept vendor policy merged (%s)",
			got.Hash(), got.Detectors["email"], before.Hash())
	}
	if lax.Connected() {
		t.Fatal("the agent is connected although the manager is down")
	}

	// The vendor adds a deny entry and restarts the manager on the same address:
	// the push agent (which only reconnects) and the polling agent both take it.
	vendor.Attributes.Deny = append(vendor.Attributes.Deny, "user.phone")
	m = startManagerWith(t, m.Addr(), dir, func(c *config.Manager) { c.Redaction = vendor })
	defer m.Shutdown(ctx)
	for id, a := range map[string]*opamp.Agent{"strict-customer": strict, "lax-customer": lax} {
		r := waitRedaction(t, api, id, a, vendor)
		if !slices.Contains(r.Effective.Deny, "user.phone") || !slices.Contains(a.Redaction().Deny, "user.phone") {
			t.Errorf("%s: deny %v after the vendor changed its policy", id, r.Effective.Deny)
		}
	}
}

// What leaves the customer's cloud follows the merged policy: the vendor's deny-list
// removes an attribute the customer's policy keeps, and the customer's default masks
// the IP addresses the vendor's policy would let through.
func TestVendorRedactionPolicyShapesWhatLeaves(t *testing.T) {
	ctx := context.Background()
	vendor := redactpolicy.Policy{
		Detectors:  map[string]string{"ip": redactpolicy.ActionOff},
		Attributes: redactpolicy.Attributes{Deny: []string{"user.ssn"}},
	}
	// The manager starts with the default vendor policy and gets the vendor's
	// own with a restart, so the policy reaches an agent that already runs.
	dir := t.TempDir()
	m := startManagerWith(t, "127.0.0.1:0", dir, nil)
	first := m
	t.Cleanup(func() { first.Shutdown(ctx) })
	token := createAcme(t, m)
	api := apiclient.New(m.URL(), adminToken)

	cfg := config.DefaultAgent()
	cfg.Manager, cfg.Token, cfg.Transport, cfg.Release = m.URL(), token, "websocket", "1.0.0"
	cfg.DataDir, cfg.OTLPGRPC, cfg.OTLPHTTP = t.TempDir(), "off", freePort(t)
	cfg.HeartbeatInterval = config.Duration(time.Second)
	a, err := agent.New(cfg, agent.Settings{Logger: logger(t), Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(ctx)
	waitRedaction(t, api, "acme-prod", a, redactpolicy.Policy{})
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	m = startManagerWith(t, m.Addr(), dir, func(c *config.Manager) { c.Redaction = vendor })
	defer m.Shutdown(ctx)
	waitRedaction(t, api, "acme-prod", a, vendor)

	since := time.Now().Add(-time.Minute)
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	lr.Body().SetStr("payment declined for order 4711")
	lr.Attributes().PutStr("user.ssn", "078-05-1120")
	lr.Attributes().PutStr("client.address", "203.0.113.7")
	lr.Attributes().PutStr("http.route", "/pay")
	body, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
	resp, err := http.Post("http://"+cfg.OTLPHTTP+"/v1/logs", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	var got telquery.Log
	eventually(t, 20*time.Second, "the record in the manager's store", func() error {
		page, err := api.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: since}, Limit: 10})
		if err != nil {
			return err
		}
		for _, l := range page.Logs {
			if strings.Contains(l.Body, "order 4711") {
				got = l
				return nil
			}
		}
		return fmt.Errorf("not stored yet (%d records)", len(page.Logs))
	})
	if v, ok := got.Attributes["user.ssn"]; ok {
		t.Errorf("user.ssn left the customer's cloud (%v) despite the vendor's deny-list", v)
	}
	if v := fmt.Sprint(got.Attributes["client.address"]); strings.Contains(v, "203.0.113.7") {
		t.Errorf("client.address %q: the customer's default must mask IPs the vendor's policy lets through", v)
	}
	if got.Attributes["http.route"] != "/pay" {
		t.Errorf("http.route %v: operational keys must arrive intact", got.Attributes["http.route"])
	}
}
