package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// periscope audit prints the log as a table, one entry a line however the
// reason was typed, narrows it with the API's filters, and prints the entries
// as JSON with -o json.
func TestAuditVerb(t *testing.T) {
	lm := startManager(t)
	lm.mustRun(t, "pin", "acme-prod", "--release", "1.0", "--reason", "hold\tfor the\naudit")
	lm.mustRun(t, "rollback", "globex", "--reason", "error rate 8% on 2.0")

	out := lm.mustRun(t, "audit", "--action", "pin.")
	contains(t, out, "AT", "ACTOR", "ROLE", "ACTION", "DEPLOYMENT", "CUSTOMER", "TARGET", "OUTCOME", "REASON",
		`hold\tfor the\naudit`, "error rate 8% on 2.0")
	inOrder(t, out, "pin.rollback", "pin.pin")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows, one line each:\n%s", out)
	}
	for i, want := range [][]string{{"release-bot", "operator", "pin.rollback", "globex", "globex", "1.0", "succeeded"},
		{"release-bot", "operator", "pin.pin", "acme-prod", "acme", "1.0", "succeeded"}} {
		row := strings.Fields(lines[1+i])
		for j, w := range want {
			if row[1+j] != w { // after the time
				t.Errorf("row %v: column %d is %q, want %q", row, 1+j, row[1+j], w)
			}
		}
	}

	out = lm.mustRun(t, "audit", "--customer", "acme", "--actor", "release-bot", "--since", "1h", "-o", "json")
	var page apitypes.AuditPage
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	entries := page.Items
	if len(entries) != 1 || entries[0].DeploymentID != "acme-prod" || entries[0].Reason != "hold\tfor the\naudit" {
		t.Errorf("acme's entries by release-bot: %+v, want the one pin of acme-prod with its reason as typed", entries)
	}
	if out := lm.mustRun(t, "audit", "--action", "token.", "--limit", "1"); len(strings.Split(strings.TrimSpace(out), "\n")) != 2 {
		t.Errorf("--limit 1 printed\n%s\nwant a header and one row", out)
	}
	if _, err := lm.run(t, "audit", "--since", "last week"); err == nil || !strings.Contains(err.Error(), "since") {
		t.Errorf("--since 'last week': err = %v, want one naming since", err)
	}
}
