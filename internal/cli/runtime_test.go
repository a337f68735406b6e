package cli

import (
	"strings"
	"testing"
	"time"
)

func TestRuntimePrintsEachSection(t *testing.T) {
	m := &standIn{}
	out, _, err := run(t, m, "runtime", "acme-prod", "--since", "30m")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"COMPONENTS", "worker/0", "down", "crash-loop", "4", "exit status 3: db connection refused",
		"SOURCES\nnone", "shop", "/orders/{id}", "5xx 20", "175ms", "242.5ms", "(all)", "25", "ORDERS", "billing", "300", "/var/lib/app on /var", "600 B"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if q := m.requests()[0].Query(); q.Get("since") != now.Add(-30*time.Minute).Format(time.RFC3339Nano) {
		t.Errorf("since sent as %q", q.Get("since"))
	}
	if _, _, err := run(t, m, "runtime", "ghost"); err == nil || !strings.Contains(err.Error(), "no such thing") {
		t.Errorf("unknown deployment: %v", err)
	}
}
