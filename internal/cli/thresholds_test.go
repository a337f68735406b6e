package cli

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// The operator sets a deployment's thresholds from the CLI with a reason, reads
// them back, and clears them; bad values are refused before anything is sent.
func TestDeploymentThresholds(t *testing.T) {
	lm := startManager(t)
	out := lm.mustRun(t, "deployments", "thresholds", "acme-prod", "--queue-lag", "1000", "--queue-lag", "nats/orders=5000",
		"--queue-age", "nats/orders=10m", "--disk-free", "10%", "--disk-free", "filesystem/data=20GiB", "--inodes-free", "5%",
		"--reason", "page before customers notice", "-o", "json")
	var got apitypes.Thresholds
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("thresholds -o json: %v\n%s", err, out)
	}
	want := thresholds.Set{
		Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}, {Source: "nats/orders", MaxLag: 5000, MaxOldestAgeSeconds: 600}},
		Filesystems: []thresholds.FilesystemRule{{Source: "*", MinFreePercent: 10, MinFreeInodesPercent: 5},
			{Source: "filesystem/data", MinFreeBytes: 20 << 30}},
	}
	if !reflect.DeepEqual(got.Thresholds, want) {
		t.Errorf("set %+v\nwant %+v", got.Thresholds, want)
	}
	contains(t, lm.mustRun(t, "deployments", "thresholds", "acme-prod"), "queue lag * 1000", "queue lag nats/orders 5000",
		"disk free * 10%", "not heard since the manager started")
	contains(t, lm.mustRun(t, "audit", "--action", "thresholds.set"), "page before customers notice")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--queue-lag", "1000"}, "--reason"},
		{[]string{"--queue-lag", "lots", "--reason", "r"}, "--queue-lag"},
		{[]string{"--disk-free", "120%", "--reason", "r"}, "min_free_percent"},
		{[]string{"--disk-free", "big", "--reason", "r"}, "5GiB"},
		{[]string{"--clear", "--queue-lag", "1", "--reason", "r"}, "alone"},
	} {
		_, err := lm.run(t, append([]string{"deployments", "thresholds", "acme-prod"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	contains(t, lm.mustRun(t, "deployments", "thresholds", "acme-prod", "--clear", "--reason", "quiet"), "Thresholds of acme-prod:", "none")
}
