package duckdb

import (
	"context"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckfile"
	"github.com/periscope-dev/periscope/internal/store/storetest"
)

// TestAuditMigrationCopiesTrails writes pin and deployment changes with the
// schema before the audit log, opens the file with this binary, and finds them
// in the audit log as the store writes such entries now (the SQL of the
// migration and store.PinAudit/DeploymentAudit agree).
func TestAuditMigrationCopiesTrails(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, _, err := duckfile.Open(ctx, dir, FileName)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateTo(ctx, db, migrations[:5]); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	pin := fleet.PinChange{ChangeID: "c1", At: t0, By: "ops", Reason: "incident <3 & \"quotes\"", Action: fleet.ActionRollback,
		DeploymentID: "dep-1", From: "1.8.0", To: "1.7.2", Running: "1.8.0"}
	rot := fleet.DeploymentChange{At: t0.Add(time.Second), By: "ops", Reason: "leak", Action: fleet.ActionRotateToken,
		DeploymentID: "dep-1", Detail: "new token; the old one valid until 11:00"}
	gone := fleet.DeploymentChange{At: t0.Add(2 * time.Second), By: "periscope", Action: fleet.ActionDelete, DeploymentID: "dep-gone"}
	stmts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO deployments (id, token_hash, created_at, name, customer, platform, cloud, region, stack, labels, mode, connected,
			running_release, agent_version, instance_uid, health, config_hash, expected_config_hash, update_state, last_status)
			VALUES ('dep-1', 'h', ?, 'n', 'acme', '', '', '', 'app', '{}', '', false, '', '', '', '{}', '', '', '{}', 'pending')`, []any{t0}},
		{`INSERT INTO pin_changes (change_id, changed_at, actor, reason, action, deployment_id, from_release, to_release, running_release)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, []any{pin.ChangeID, pin.At, pin.By, pin.Reason, string(pin.Action), pin.DeploymentID, pin.From, pin.To, pin.Running}},
		{`INSERT INTO deployment_changes (changed_at, actor, reason, action, deployment_id, detail) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{rot.At, rot.By, rot.Reason, string(rot.Action), rot.DeploymentID, rot.Detail}},
		{`INSERT INTO deployment_changes (changed_at, actor, reason, action, deployment_id, detail) VALUES (?, ?, ?, ?, ?, ?)`,
			[]any{gone.At, gone.By, gone.Reason, string(gone.Action), gone.DeploymentID, gone.Detail}},
	}
	for _, st := range stmts {
		if _, err := db.ExecContext(ctx, st.q, st.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, _, err := s.ListAudit(ctx, store.AuditFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.AuditEntry{store.DeploymentAudit(gone, ""), store.DeploymentAudit(rot, "acme"), store.PinAudit(pin, "acme")}
	storetest.CheckAudit(t, got, want)
}
