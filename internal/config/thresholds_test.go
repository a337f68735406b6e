package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/thresholds"
)

func TestManagerThresholdDefaultsFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manager.yaml")
	os.WriteFile(path, []byte(`
thresholds:
  fleet:
    queues: [{source: "*", max_lag: 10000}]
    filesystems: [{source: "*", min_free_percent: 5}]
  customers:
    acme:
      queues: [{source: nats/orders, max_lag: 1000, max_oldest_age_seconds: 600}]
`), 0o600)
	cfg := DefaultManager()
	if err := Load(&cfg, path, nil); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	acme, from := cfg.Thresholds.For("acme", thresholds.Set{})
	if from != thresholds.FromCustomer || len(acme.Queues) != 1 || acme.Queues[0].MaxLag != 1000 || acme.Queues[0].MaxOldestAgeSeconds != 600 {
		t.Errorf("acme's defaults %+v from %q", acme, from)
	}
	other, from := cfg.Thresholds.For("globex", thresholds.Set{})
	if from != thresholds.FromFleet || other.Filesystems[0].MinFreePercent != 5 {
		t.Errorf("globex's defaults %+v from %q", other, from)
	}

	cfg.Thresholds.Customers["acme"] = thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: -1}, {Source: ""}}}
	err := cfg.Validate()
	for _, want := range []string{"thresholds.customers.acme.queues[0].max_lag", "thresholds.customers.acme.queues[1].source"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}
