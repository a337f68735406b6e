package duckdb

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckfile"
	"github.com/periscope-dev/periscope/internal/testenv/crashtest"
)

// TestKilledStoreChild is the process TestKilledStoreOpensWithEveryAcknowledgedWrite
// kills: it opens (and so migrates) the store in its directory, then writes
// releases and deployments, reporting each acknowledged one.
func TestKilledStoreChild(t *testing.T) {
	dir, ok := crashtest.Child()
	if !ok {
		t.Skip("runs only as the child of a crash test")
	}
	ctx := context.Background()
	crashtest.Report("opening")
	s, err := Open(ctx, dir)
	if err != nil {
		crashtest.Fail(err)
	}
	crashtest.Report("opened")
	for i := range 5000 {
		v := fmt.Sprintf("9.%d.0", i)
		if err := s.CreateRelease(ctx, fleet.Release{Stack: "shop", Version: v, CreatedAt: time.Now()}); err != nil {
			crashtest.Fail(err)
		}
		crashtest.Report("ack release", v)
		id := fmt.Sprintf("d-%d", i)
		if err := s.CreateDeployments(ctx, []store.DeploymentRecord{deploymentRecord(id)}); err != nil {
			crashtest.Fail(err)
		}
		crashtest.Report("ack deployment", id)
	}
	crashtest.Hold()
}

func deploymentRecord(id string) store.DeploymentRecord {
	return store.DeploymentRecord{TokenHash: "hash-" + id, LastStatus: fleet.StatusPending,
		Deployment: fleet.Deployment{ID: id, Name: id, Customer: "acme", Cloud: "aws", Region: "eu-west-1", Stack: "shop",
			CreatedAt: time.Now(), Mode: fleet.ModePush}}
}

// TestKilledStoreOpensWithEveryAcknowledgedWrite kills a process at stepped
// points of its first start (schema version 0: a new file) and of upgrades from
// every earlier schema version, through the migration, its checkpoint and the
// first writes, and checks each time that the store opens at the latest
// version with the earlier data and every write the process acknowledged.
func TestKilledStoreOpensWithEveryAcknowledgedWrite(t *testing.T) {
	kills := crashtest.Kills(t, 7)
	for from := range len(migrations) - 1 {
		t.Run(fmt.Sprintf("from version %d", from), func(t *testing.T) {
			pristine := t.TempDir()
			if from > 0 {
				buildVersion(t, pristine, from)
			}
			crashtest.Sweep(t, "TestKilledStoreChild", pristine, kills, func(dir string, lines []string, what string) {
				checkAfterKill(t, dir, from, lines, what)
			})
		})
	}
}

func checkAfterKill(t *testing.T, dir string, from int, lines []string, what string) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatalf("%s (the child said %q): reopen: %v", what, tail(lines), err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&version); err != nil || version != len(migrations)-1 {
		t.Fatalf("%s: schema version %d (%v), want %d", what, version, err, len(migrations)-1)
	}
	deps, err := s.ListDeployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rels, err := s.ListReleases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, d := range deps {
		have["ack deployment "+d.Deployment.ID] = true
	}
	for _, r := range rels {
		have["ack release "+r.Version] = true
	}
	if from > 0 && (!have["ack deployment d-old"] || !have["ack release 1.0.0"]) {
		t.Fatalf("%s: the data of schema version %d is gone: %d deployments, %d releases", what, from, len(deps), len(rels))
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "ack ") && !have[l] {
			t.Fatalf("%s: acknowledged %q is gone", what, l)
		}
		if strings.HasPrefix(l, "failed") {
			t.Fatalf("the child failed: %s", l)
		}
	}
	if from > 0 {
		evs, err := s.ListEvents(ctx, "d-old", 10)
		if err != nil || len(evs) != 1 {
			t.Fatalf("d-old's events after the upgrade: %v, %v", evs, err)
		}
	}
	// Writes after a recovery keep working, sequences included.
	if err := s.AppendEvents(ctx, []fleet.Event{{DeploymentID: "d-new", At: time.Now(), From: fleet.StatusPending, To: fleet.StatusHealthy}}); err != nil {
		t.Fatalf("write after reopening: %v", err)
	}
}

func tail(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// buildVersion makes dir's store a file at schema version v, as a release that
// stopped there left it, with a deployment, a release and a status event.
func buildVersion(t *testing.T, dir string, v int) {
	t.Helper()
	ctx := context.Background()
	db, _, err := duckfile.Open(ctx, dir, FileName)
	if err != nil {
		t.Fatal(err)
	}
	qs := []string{`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)`}
	for i := 1; i <= v; i++ {
		qs = append(qs, migrations[i], fmt.Sprintf(`INSERT INTO schema_migrations VALUES (%d, now())`, i))
	}
	qs = append(qs,
		// The columns of version 1, which every later version has.
		`INSERT INTO deployments (id, token_hash, created_at, name, customer, platform, cloud, region, stack, labels, mode, connected,
			running_release, agent_version, instance_uid, last_checkin, health, config_hash, expected_config_hash, update_state, pin, last_status)
			VALUES ('d-old', 'hash-old', now(), 'old', 'acme', 'kubernetes', 'aws', 'eu-west-1', 'shop', '{}', 'push', false,
			'1.0.0', '0.1.0', '', NULL, '{}', '', '', '{}', NULL, 'pending')`,
		`INSERT INTO releases (stack, version, created_at, notes) VALUES ('shop', '1.0.0', now(), 'first')`,
		`INSERT INTO status_events (deployment_id, event_at, from_status, to_status, reason) VALUES ('d-old', now(), 'pending', 'healthy', 'checked in')`)
	for _, q := range qs {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("build schema version %d: %s: %v", v, q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
