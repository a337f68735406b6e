// Package duckdb is the embedded fleet store: one DuckDB file in the manager's data
// directory, no server to run. Bulk writes go through DuckDB's Appender, including
// the batched check-in updates, so a large fleet costs one statement per batch.
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/duckfile"
)

// FileName is the database file inside the data directory.
const FileName = "periscope.duckdb"

// Store is the DuckDB fleet store. Use Open; it is safe for concurrent use.
type Store struct {
	db  *sql.DB
	dir string
	// unwritable is why the last write failed to reach the files, nil while
	// writes succeed (see Writable).
	unwritable atomic.Pointer[string]
	closeOnce  sync.Once
	closeErr   error
	// changes answers FleetChangesSince (see changes.go).
	changes changeLog
	// sessionsMu serialises the writes of dashboard sessions: CreateSession
	// counts before it writes, and two DuckDB transactions deleting the same
	// row (a sign-in's sweep and a sign-out, say) fail one with a conflict.
	sessionsMu sync.Mutex
	// commandsMu serialises the moves of command invocations (see
	// moveInvocation).
	commandsMu sync.Mutex
}

var _ store.Fleet = (*Store)(nil)
var _ store.Audit = (*Store)(nil)

// Open opens (creating if needed) the store in dataDir and applies pending migrations.
func Open(ctx context.Context, dataDir string) (*Store, error) {
	db, path, err := duckfile.Open(ctx, dataDir, FileName)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, dir: dataDir}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return s, nil
}

// Close checkpoints and closes the database file.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		_, _ = s.db.Exec("CHECKPOINT")
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// migrations are applied in order, each once, all pending ones in one
// transaction followed by a checkpoint (duckfile.Migrate). Never edit a released
// entry: add a new one.
var migrations = []string{
	1: `
CREATE TABLE deployments (
	id                   VARCHAR PRIMARY KEY,
	token_hash           VARCHAR NOT NULL UNIQUE,
	created_at           TIMESTAMPTZ NOT NULL,
	name                 VARCHAR NOT NULL,
	customer             VARCHAR NOT NULL,
	platform             VARCHAR NOT NULL,
	cloud                VARCHAR NOT NULL,
	region               VARCHAR NOT NULL,
	stack                VARCHAR NOT NULL,
	labels               VARCHAR NOT NULL,
	mode                 VARCHAR NOT NULL,
	connected            BOOLEAN NOT NULL,
	running_release      VARCHAR NOT NULL,
	agent_version        VARCHAR NOT NULL,
	instance_uid         VARCHAR NOT NULL,
	last_checkin         TIMESTAMPTZ,
	health               VARCHAR NOT NULL,
	config_hash          VARCHAR NOT NULL,
	expected_config_hash VARCHAR NOT NULL,
	update_state         VARCHAR NOT NULL,
	pin                  VARCHAR,
	last_status          VARCHAR NOT NULL
);
CREATE TABLE releases (
	stack      VARCHAR NOT NULL,
	version    VARCHAR NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	notes      VARCHAR NOT NULL,
	PRIMARY KEY (stack, version)
);
CREATE SEQUENCE status_event_seq;
CREATE TABLE status_events (
	seq           BIGINT NOT NULL DEFAULT nextval('status_event_seq'),
	deployment_id VARCHAR NOT NULL,
	event_at      TIMESTAMPTZ NOT NULL,
	from_status   VARCHAR NOT NULL,
	to_status     VARCHAR NOT NULL,
	reason        VARCHAR NOT NULL
);
CREATE TABLE api_tokens (
	id         VARCHAR PRIMARY KEY,
	name       VARCHAR NOT NULL,
	role       VARCHAR NOT NULL,
	hash       VARCHAR NOT NULL UNIQUE
);`,
	2: `
ALTER TABLE deployments ADD COLUMN rollout VARCHAR DEFAULT '{}';
ALTER TABLE status_events ADD COLUMN reason_code VARCHAR DEFAULT '';
ALTER TABLE status_events ADD COLUMN release VARCHAR DEFAULT '';
CREATE SEQUENCE pin_change_seq;
CREATE TABLE pin_changes (
	seq             BIGINT NOT NULL DEFAULT nextval('pin_change_seq'),
	change_id       VARCHAR NOT NULL,
	changed_at      TIMESTAMPTZ NOT NULL,
	actor           VARCHAR NOT NULL,
	reason          VARCHAR NOT NULL,
	action          VARCHAR NOT NULL,
	deployment_id   VARCHAR NOT NULL,
	from_release    VARCHAR NOT NULL,
	to_release      VARCHAR NOT NULL,
	running_release VARCHAR NOT NULL
);`,
	3: `
CREATE SEQUENCE notification_seq;
CREATE TABLE notifications (
	seq             BIGINT NOT NULL DEFAULT nextval('notification_seq'),
	id              VARCHAR PRIMARY KEY,
	kind            VARCHAR NOT NULL,
	state           VARCHAR NOT NULL,
	deployment_id   VARCHAR NOT NULL,
	deployment_name VARCHAR NOT NULL,
	customer        VARCHAR NOT NULL,
	cloud           VARCHAR NOT NULL,
	region          VARCHAR NOT NULL,
	release         VARCHAR NOT NULL,
	status          VARCHAR NOT NULL,
	previous_status VARCHAR NOT NULL,
	reason          VARCHAR NOT NULL,
	reason_code     VARCHAR NOT NULL,
	behind_reason   VARCHAR NOT NULL,
	changed_at      TIMESTAMPTZ NOT NULL,
	created_at      TIMESTAMPTZ NOT NULL
);
CREATE TABLE notification_deliveries (
	notification_id VARCHAR NOT NULL,
	webhook         VARCHAR NOT NULL,
	ordinal         INTEGER NOT NULL,
	state           VARCHAR NOT NULL,
	attempts        INTEGER NOT NULL,
	last_error      VARCHAR NOT NULL,
	next_attempt    TIMESTAMPTZ,
	delivered_at    TIMESTAMPTZ,
	updated_at      TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (notification_id, webhook)
);`,
	// deployments.token_hash keeps the hash of the token a deployment was
	// created with (it makes a reused hash a conflict on create); the tokens a
	// deployment accepts now, which rotation and revocation change, are
	// deployment_tokens. Updating a key column in place is what DuckDB does
	// worst, so tokens are rows: a token is inserted once, updated only in its
	// other columns, and deleted once.
	4: `
CREATE TABLE deployment_tokens (
	hash          VARCHAR PRIMARY KEY,
	deployment_id VARCHAR NOT NULL,
	previous      BOOLEAN NOT NULL,
	valid_until   TIMESTAMPTZ
);
INSERT INTO deployment_tokens SELECT token_hash, id, false, NULL FROM deployments;
CREATE SEQUENCE deployment_change_seq;
CREATE TABLE deployment_changes (
	seq           BIGINT NOT NULL DEFAULT nextval('deployment_change_seq'),
	changed_at    TIMESTAMPTZ NOT NULL,
	actor         VARCHAR NOT NULL,
	reason        VARCHAR NOT NULL,
	action        VARCHAR NOT NULL,
	deployment_id VARCHAR NOT NULL,
	detail        VARCHAR NOT NULL
);`,
	// The one audit log (store.Audit). seq orders entries written in the same
	// microsecond and makes the cursor; id is the caller's, or '' for one
	// derived from at and seq when read. The pin and deployment trails written
	// so far are copied in, in time order.
	5: `
CREATE SEQUENCE audit_seq;
CREATE TABLE audit (
	seq           BIGINT NOT NULL DEFAULT nextval('audit_seq'),
	id            VARCHAR NOT NULL,
	happened_at   TIMESTAMPTZ NOT NULL,
	actor         VARCHAR NOT NULL,
	actor_role    VARCHAR NOT NULL,
	action        VARCHAR NOT NULL,
	deployment_id VARCHAR NOT NULL,
	customer      VARCHAR NOT NULL,
	target        VARCHAR NOT NULL,
	outcome       VARCHAR NOT NULL,
	reason        VARCHAR NOT NULL,
	detail        VARCHAR NOT NULL
);
INSERT INTO audit (id, happened_at, actor, actor_role, action, deployment_id, customer, target, outcome, reason, detail)
SELECT '', happened_at, actor, '', action, deployment_id, customer, target, 'succeeded', reason, detail FROM (
	SELECT p.changed_at AS happened_at, 0 AS src, p.seq AS s, p.actor, 'pin.' || p.action AS action, p.deployment_id,
		coalesce(d.customer, '') AS customer, p.to_release AS target, p.reason,
		json_object('change_id', p.change_id, 'from_release', p.from_release, 'to_release', p.to_release,
			'running_release', p.running_release)::VARCHAR AS detail
	FROM pin_changes p LEFT JOIN deployments d ON d.id = p.deployment_id
	UNION ALL
	SELECT c.changed_at, 1, c.seq, c.actor, 'deployment.' || c.action, c.deployment_id, coalesce(d.customer, ''), '', c.reason,
		CASE WHEN c.detail = '' THEN '{}' ELSE json_object('what', c.detail)::VARCHAR END
	FROM deployment_changes c LEFT JOIN deployments d ON d.id = c.deployment_id
	ORDER BY happened_at, src, s
);
CREATE INDEX audit_at ON audit (happened_at);
CREATE INDEX audit_actor ON audit (actor);
CREATE INDEX audit_action ON audit (action);
CREATE INDEX audit_deployment ON audit (deployment_id);
CREATE INDEX audit_customer ON audit (customer);`,
	// Remote commands: a release's declarations as one JSON column (read only
	// with the release), and one row per invocation. Only id is indexed: DuckDB
	// updates non-indexed columns in place, and invocations are updated as they
	// move through their states.
	6: `
ALTER TABLE releases ADD COLUMN commands VARCHAR DEFAULT '[]';
CREATE SEQUENCE command_invocation_seq;
CREATE TABLE command_invocations (
	seq           BIGINT NOT NULL DEFAULT nextval('command_invocation_seq'),
	id            VARCHAR PRIMARY KEY,
	deployment_id VARCHAR NOT NULL,
	customer      VARCHAR NOT NULL,
	command       VARCHAR NOT NULL,
	params        VARCHAR NOT NULL,
	spec          VARCHAR NOT NULL,
	reason        VARCHAR NOT NULL,
	actor         VARCHAR NOT NULL,
	actor_role    VARCHAR NOT NULL,
	state         VARCHAR NOT NULL,
	state_reason  VARCHAR NOT NULL,
	queued_at     TIMESTAMPTZ NOT NULL,
	deadline      TIMESTAMPTZ NOT NULL,
	delivered_at  TIMESTAMPTZ,
	started_at    TIMESTAMPTZ,
	finished_at   TIMESTAMPTZ,
	result        VARCHAR NOT NULL
);`,
	// Runtime thresholds: one JSON column, read only with the deployment.
	7: `
ALTER TABLE deployments ADD COLUMN thresholds VARCHAR DEFAULT '{}';`,
	// Progressive rollouts (store.Rollouts): the engine's state is one JSON
	// document per rollout, rewritten as it moves; only the key is indexed, so
	// DuckDB updates the other columns in place. (The replicas work of issue 22
	// needed no schema change here: the embedded store has one writer, so
	// FleetChangesSince's log lives in memory, changes.go.)
	8: `
CREATE TABLE rollouts (
	id         VARCHAR PRIMARY KEY,
	stack      VARCHAR NOT NULL,
	release    VARCHAR NOT NULL,
	phase      VARCHAR NOT NULL,
	done       BOOLEAN NOT NULL,
	started_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	version    BIGINT NOT NULL,
	state      VARCHAR NOT NULL
);
CREATE TABLE rollout_plans (
	stack      VARCHAR PRIMARY KEY,
	plan       VARCHAR NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	updated_by VARCHAR NOT NULL
);`,
	9: `
CREATE TABLE dashboard_sessions (
	hash       VARCHAR PRIMARY KEY,
	token_id   VARCHAR NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	used_at    TIMESTAMPTZ NOT NULL
);`,
	// Update windows set through the API, which replace the configuration
	// file's for their customer or deployment.
	10: `
CREATE TABLE update_windows (
	kind       VARCHAR NOT NULL,
	owner      VARCHAR NOT NULL,
	windows    VARCHAR NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	updated_by VARCHAR NOT NULL,
	PRIMARY KEY (kind, owner)
);`,
}

func (s *Store) migrate(ctx context.Context) error { return migrateTo(ctx, s.db, migrations) }

// migrateTo applies migs (a prefix of migrations, in tests of a migration).
func migrateTo(ctx context.Context, db *sql.DB, migs []string) error {
	return duckfile.Migrate(ctx, db, migs, func(tx *sql.Tx) (int, error) {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)`); err != nil {
			return 0, err
		}
		var current int
		err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current)
		return current, err
	}, func(tx *sql.Tx, v int) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations VALUES (?, ?)`, v, time.Now().UTC())
		return err
	})
}

// mutableColumns are the deployment columns UpdateDeployments rewrites, in the
// order deploymentValues produces them after the id.
var mutableColumns = []string{
	"name", "customer", "platform", "cloud", "region", "stack", "labels", "mode", "connected",
	"running_release", "agent_version", "instance_uid", "last_checkin", "health", "config_hash",
	"expected_config_hash", "update_state", "pin", "last_status", "rollout", "thresholds",
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain data structs are marshalled here; failure is a programming error.
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return string(b)
}

func nullTime(t time.Time) driver.Value {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// deploymentValues is a record's id and its mutableColumns, in that order.
func deploymentValues(r *store.DeploymentRecord) []driver.Value {
	out := make([]driver.Value, 0, 1+len(mutableColumns))
	out = append(out, r.Deployment.ID)
	for _, c := range mutableColumns {
		out = append(out, deploymentValue(r, c))
	}
	return out
}

// deploymentValue is one mutable column of a record as stored. Writes of a few
// columns (a pin of the whole fleet, a check-in flush) encode only those:
// encoding every JSON column of 100,000 records to write one was a sixth of a
// fleet-wide pin's CPU.
func deploymentValue(r *store.DeploymentRecord, column string) driver.Value {
	d := &r.Deployment
	switch column {
	case "name":
		return d.Name
	case "customer":
		return d.Customer
	case "platform":
		return d.Platform
	case "cloud":
		return d.Cloud
	case "region":
		return d.Region
	case "stack":
		return d.Stack
	case "labels":
		if d.Labels == nil {
			return mustJSON(map[string]string{})
		}
		return mustJSON(d.Labels)
	case "mode":
		return string(d.Mode)
	case "connected":
		return d.Connected
	case "running_release":
		return d.RunningRelease
	case "agent_version":
		return d.AgentVersion
	case "instance_uid":
		return d.InstanceUID
	case "last_checkin":
		return nullTime(d.LastCheckin)
	case "health":
		return mustJSON(d.Health)
	case "config_hash":
		return d.ConfigHash
	case "expected_config_hash":
		return d.ExpectedConfigHash
	case "update_state":
		return mustJSON(d.Update)
	case "pin":
		if d.Pin == nil {
			return nil
		}
		return mustJSON(d.Pin)
	case "last_status":
		return string(r.LastStatus)
	case "rollout":
		return mustJSON(store.RolloutOf(d))
	case "thresholds":
		return mustJSON(d.Thresholds)
	}
	panic("duckdb: no deployment column " + column)
}

// withConn runs fn on one raw DuckDB connection inside a transaction, which the
// Appender needs and which makes a batch atomic.
func (s *Store) withConn(ctx context.Context, fn func(driver.Conn) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := ctx.Err(); err != nil {
		return err
	}
	// BEGIN must not be cut short by ctx: database/sql can report a cancelled
	// statement that the driver ran anyway, and the connection would go back to
	// the pool inside a transaction ("cannot start a transaction within a
	// transaction" for its next user). ctx still bounds the work in fn.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "BEGIN TRANSACTION"); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return err
	}
	err = conn.Raw(func(dc any) error { return fn(dc.(driver.Conn)) })
	if err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return err
	}
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return err
	}
	return nil
}

func isConstraint(err error) bool {
	var de *duckdb.Error
	if errors.As(err, &de) && de.Type == duckdb.ErrorTypeConstraint {
		return true
	}
	// The Appender reports constraint violations as plain text.
	return err != nil && (strings.Contains(err.Error(), "Constraint Error") || strings.Contains(err.Error(), "violates primary key") ||
		strings.Contains(err.Error(), "violates unique constraint"))
}

// CreateDeployments implements store.Fleet.
func (s *Store) CreateDeployments(ctx context.Context, recs []store.DeploymentRecord) error {
	if len(recs) == 0 {
		return nil
	}
	cols := append([]string{"id", "token_hash", "created_at"}, mutableColumns...)
	err := s.withConn(ctx, func(dc driver.Conn) error {
		app, err := duckdb.NewAppenderWithColumns(dc, "", "", "deployments", cols)
		if err != nil {
			return err
		}
		for i := range recs {
			v := deploymentValues(&recs[i])
			row := append([]driver.Value{v[0], recs[i].TokenHash, recs[i].Deployment.CreatedAt.UTC()}, v[1:]...)
			if err := app.AppendRow(row...); err != nil {
				app.Close()
				return err
			}
		}
		if err := app.Close(); err != nil {
			return err
		}
		toks, err := duckdb.NewAppenderWithColumns(dc, "", "", "deployment_tokens", []string{"hash", "deployment_id", "previous", "valid_until"})
		if err != nil {
			return err
		}
		for i := range recs {
			r := &recs[i]
			for _, t := range []struct {
				hash     string
				previous bool
				until    time.Time
			}{{r.TokenHash, false, time.Time{}}, {r.PrevTokenHash, true, r.PrevTokenUntil}} {
				if t.hash == "" {
					continue
				}
				if err := toks.AppendRow(t.hash, r.Deployment.ID, t.previous, nullTime(t.until)); err != nil {
					toks.Close()
					return err
				}
			}
		}
		return toks.Close()
	})
	err = s.checkWrite(err)
	if isConstraint(err) {
		return fmt.Errorf("create deployments: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create deployments: %w", err)
	}
	s.changes.wrote(recs)
	return nil
}

// UpdateDeployments implements store.Fleet with one query appender: the rows are
// batched into a temporary table and applied by a single UPDATE … FROM.
func (s *Store) UpdateDeployments(ctx context.Context, recs []store.DeploymentRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if err := s.checkWrite(s.withConn(ctx, func(dc driver.Conn) error { return updateDeployments(dc, recs, mutableColumns, "") })); err != nil {
		return fmt.Errorf("update %d deployments: %w", len(recs), err)
	}
	s.changes.wrote(recs)
	return nil
}

// updateDeployments writes columns (some of mutableColumns) of recs, where
// cond (an SQL condition on deployments and the appended row a, or "") holds.
func updateDeployments(dc driver.Conn, recs []store.DeploymentRecord, columns []string, cond string) error {
	var set strings.Builder
	for i, c := range columns {
		if i > 0 {
			set.WriteString(", ")
		}
		fmt.Fprintf(&set, "%s = a.col%d", c, i+2)
	}
	query := "UPDATE deployments SET " + set.String() + " FROM appended_data a WHERE deployments.id = a.col1"
	if cond != "" {
		query += " AND (" + cond + ")"
	}
	cols := append([]string{"id"}, columns...)
	app, err := duckdb.NewTableAppender(dc, query, "", "", "deployments", cols)
	if err != nil {
		return err
	}
	row := make([]driver.Value, len(cols))
	for i := range recs {
		row[0] = recs[i].Deployment.ID
		for j, c := range columns {
			row[j+1] = deploymentValue(&recs[i], c)
		}
		if err := app.AppendRow(row...); err != nil {
			app.Close()
			return err
		}
	}
	return app.Close()
}

// ApplyPins implements store.Fleet: the deployments' new state and the audit
// entries commit together or not at all.
func (s *Store) ApplyPins(ctx context.Context, recs []store.DeploymentRecord, changes []fleet.PinChange) error {
	err := s.withConn(ctx, func(dc driver.Conn) error {
		if len(recs) > 0 {
			if err := updateDeployments(dc, recs, []string{"pin"}, ""); err != nil {
				return err
			}
		}
		app, err := duckdb.NewAppenderWithColumns(dc, "", "", "pin_changes",
			[]string{"change_id", "changed_at", "actor", "reason", "action", "deployment_id", "from_release", "to_release", "running_release"})
		if err != nil {
			return err
		}
		for _, c := range changes {
			if err := app.AppendRow(c.ChangeID, c.At.UTC(), c.By, c.Reason, string(c.Action), c.DeploymentID, c.From, c.To, c.Running); err != nil {
				app.Close()
				return err
			}
		}
		if err := app.Close(); err != nil {
			return err
		}
		return appendAudit(dc, store.PinAudits(recs, changes))
	})
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("apply pins to %d deployments: %w", len(recs), err)
	}
	s.changes.wrote(recs)
	return nil
}

// ApplyThresholds implements store.Fleet: the deployment's new state and the
// audit entry commit together or not at all.
func (s *Store) ApplyThresholds(ctx context.Context, rec store.DeploymentRecord, entry store.AuditEntry) error {
	id := rec.Deployment.ID
	err := s.withConn(ctx, func(dc driver.Conn) error {
		// Inside the transaction, so a deletion cannot slip between the check
		// and the write (the UPDATE alone would ignore an unknown id).
		rows, err := dc.(driver.QueryerContext).QueryContext(ctx, `SELECT count(*) FROM deployments WHERE id = ?`, []driver.NamedValue{{Ordinal: 1, Value: id}})
		if err != nil {
			return err
		}
		n := []driver.Value{nil}
		err = rows.Next(n)
		rows.Close()
		if err != nil {
			return err
		}
		if c, _ := n[0].(int64); c == 0 {
			return fmt.Errorf("deployment %q: %w", id, store.ErrNotFound)
		}
		if err := updateDeployments(dc, []store.DeploymentRecord{rec}, []string{"thresholds"}, ""); err != nil {
			return err
		}
		return appendAudit(dc, []store.AuditEntry{entry})
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("set thresholds: %w", err)
	}
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("set thresholds of %s: %w", id, err)
	}
	s.changes.wrote([]store.DeploymentRecord{rec})
	return nil
}

// ListPinChanges implements store.Fleet.
func (s *Store) ListPinChanges(ctx context.Context, deploymentID string, limit int) ([]fleet.PinChange, error) {
	q := `SELECT change_id, changed_at, actor, reason, action, deployment_id, from_release, to_release, running_release FROM pin_changes`
	args := []any{}
	if deploymentID != "" {
		q += ` WHERE deployment_id = ?`
		args = append(args, deploymentID)
	}
	q += ` ORDER BY seq DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list pin changes: %w", err)
	}
	defer rows.Close()
	var out []fleet.PinChange
	for rows.Next() {
		var c fleet.PinChange
		var action string
		if err := rows.Scan(&c.ChangeID, &c.At, &c.By, &c.Reason, &action, &c.DeploymentID, &c.From, &c.To, &c.Running); err != nil {
			return nil, fmt.Errorf("list pin changes: %w", err)
		}
		c.Action = fleet.PinAction(action)
		out = append(out, c)
	}
	return out, rows.Err()
}

// ListDeployments implements store.Fleet.
func (s *Store) ListDeployments(ctx context.Context) ([]store.DeploymentRecord, error) {
	return s.listDeployments(ctx, nil)
}

// listDeployments reads the deployments ids names, or all when ids is nil,
// in id order.
func (s *Store) listDeployments(ctx context.Context, ids []string) ([]store.DeploymentRecord, error) {
	from := "deployments"
	args := make([]any, len(ids))
	if ids != nil {
		marks := make([]string, len(ids))
		for i, id := range ids {
			marks[i], args[i] = "?", id
		}
		from = "(SELECT * FROM deployments WHERE id IN (" + strings.Join(marks, ", ") + "))"
	}
	q := "SELECT d.id, coalesce(c.hash, ''), coalesce(p.hash, ''), p.valid_until, d.created_at, d." + strings.Join(mutableColumns, ", d.") +
		" FROM " + from + " d LEFT JOIN deployment_tokens c ON c.deployment_id = d.id AND NOT c.previous" +
		" LEFT JOIN deployment_tokens p ON p.deployment_id = d.id AND p.previous ORDER BY d.id"
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	defer rows.Close()
	var out []store.DeploymentRecord
	for rows.Next() {
		var (
			r                                store.DeploymentRecord
			d                                = &r.Deployment
			labels, health, update, mode, ls string
			pin, ro, thr                     sql.NullString
			last, prevUntil                  sql.NullTime
		)
		if err := rows.Scan(&d.ID, &r.TokenHash, &r.PrevTokenHash, &prevUntil, &d.CreatedAt, &d.Name, &d.Customer, &d.Platform, &d.Cloud, &d.Region,
			&d.Stack, &labels, &mode, &d.Connected, &d.RunningRelease, &d.AgentVersion, &d.InstanceUID, &last,
			&health, &d.ConfigHash, &d.ExpectedConfigHash, &update, &pin, &ls, &ro, &thr); err != nil {
			return nil, fmt.Errorf("list deployments: %w", err)
		}
		d.Mode, r.LastStatus = fleet.Mode(mode), fleet.Status(ls)
		if prevUntil.Valid {
			r.PrevTokenUntil = prevUntil.Time
		}
		if last.Valid {
			d.LastCheckin = last.Time
		}
		if err := errors.Join(json.Unmarshal([]byte(labels), &d.Labels), json.Unmarshal([]byte(health), &d.Health),
			json.Unmarshal([]byte(update), &d.Update)); err != nil {
			return nil, fmt.Errorf("list deployments: decode %s: %w", d.ID, err)
		}
		if ro.Valid && ro.String != "" {
			var x store.Rollout
			if err := json.Unmarshal([]byte(ro.String), &x); err != nil {
				return nil, fmt.Errorf("list deployments: decode release state of %s: %w", d.ID, err)
			}
			x.ApplyTo(d)
		}
		if thr.Valid && thr.String != "" {
			if err := json.Unmarshal([]byte(thr.String), &d.Thresholds); err != nil {
				return nil, fmt.Errorf("list deployments: decode thresholds of %s: %w", d.ID, err)
			}
		}
		if pin.Valid {
			d.Pin = new(fleet.Pin)
			if err := json.Unmarshal([]byte(pin.String), d.Pin); err != nil {
				return nil, fmt.Errorf("list deployments: decode pin of %s: %w", d.ID, err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// CreateRelease implements store.Fleet.
func (s *Store) CreateRelease(ctx context.Context, r fleet.Release) error {
	cmds := r.Commands
	if cmds == nil {
		cmds = []command.Spec{}
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO releases (stack, version, created_at, notes, commands) VALUES (?, ?, ?, ?, ?)`,
		r.Stack, r.Version, r.CreatedAt.UTC(), r.Notes, mustJSON(cmds))
	err = s.checkWrite(err)
	if isConstraint(err) {
		return fmt.Errorf("create release %s %s: %w", r.Stack, r.Version, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create release %s %s: %w", r.Stack, r.Version, err)
	}
	s.changes.released(r)
	return nil
}

// ListReleases implements store.Fleet.
func (s *Store) ListReleases(ctx context.Context) ([]fleet.Release, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT stack, version, created_at, notes, coalesce(commands, '[]') FROM releases ORDER BY created_at, stack, version`)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	defer rows.Close()
	var out []fleet.Release
	for rows.Next() {
		var r fleet.Release
		var cmds string
		if err := rows.Scan(&r.Stack, &r.Version, &r.CreatedAt, &r.Notes, &cmds); err != nil {
			return nil, fmt.Errorf("list releases: %w", err)
		}
		if err := json.Unmarshal([]byte(cmds), &r.Commands); err != nil {
			return nil, fmt.Errorf("list releases: commands of %s %s: %w", r.Stack, r.Version, err)
		}
		if len(r.Commands) == 0 {
			r.Commands = nil
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// AppendEvents implements store.Fleet.
func (s *Store) AppendEvents(ctx context.Context, evs []fleet.Event) error {
	if len(evs) == 0 {
		return nil
	}
	err := s.withConn(ctx, func(dc driver.Conn) error {
		app, err := duckdb.NewAppenderWithColumns(dc, "", "", "status_events",
			[]string{"deployment_id", "event_at", "from_status", "to_status", "reason", "reason_code", "release"})
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := app.AppendRow(e.DeploymentID, e.At.UTC(), string(e.From), string(e.To), e.Reason, e.ReasonCode, e.Release); err != nil {
				app.Close()
				return err
			}
		}
		return app.Close()
	})
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("append %d events: %w", len(evs), err)
	}
	return nil
}

// ListEvents implements store.Fleet.
func (s *Store) ListEvents(ctx context.Context, deploymentID string, limit int) ([]fleet.Event, error) {
	q := `SELECT deployment_id, event_at, from_status, to_status, reason, coalesce(reason_code, ''), coalesce(release, '') FROM status_events`
	args := []any{}
	if deploymentID != "" {
		q += ` WHERE deployment_id = ?`
		args = append(args, deploymentID)
	}
	q += ` ORDER BY event_at DESC, seq DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []fleet.Event
	for rows.Next() {
		var e fleet.Event
		var from, to string
		if err := rows.Scan(&e.DeploymentID, &e.At, &from, &to, &e.Reason, &e.ReasonCode, &e.Release); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.From, e.To = fleet.Status(from), fleet.Status(to)
		out = append(out, e)
	}
	return out, rows.Err()
}

// CreateAPIToken implements store.Fleet.
func (s *Store) CreateAPIToken(ctx context.Context, t auth.APIToken) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (id, name, role, hash) VALUES (?, ?, ?, ?)`, t.ID, t.Name, string(t.Role), t.Hash)
	err = s.checkWrite(err)
	if isConstraint(err) {
		return fmt.Errorf("create API token %s: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create API token %s: %w", t.ID, err)
	}
	return nil
}

// ListAPITokens implements store.Fleet.
func (s *Store) ListAPITokens(ctx context.Context) ([]auth.APIToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name, role, hash FROM api_tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	defer rows.Close()
	var out []auth.APIToken
	for rows.Next() {
		var t auth.APIToken
		var role string
		if err := rows.Scan(&t.ID, &t.Name, &role, &t.Hash); err != nil {
			return nil, fmt.Errorf("list API tokens: %w", err)
		}
		t.Role = auth.Role(role)
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteAPIToken implements store.Fleet.
func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	s.sessionsMu.Lock()
	defer s.sessionsMu.Unlock()
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM api_tokens WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ = res.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM dashboard_sessions WHERE starts_with(token_id, ?)`, id+"/")
		return err
	})
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("delete API token %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("delete API token %s: %w", id, store.ErrNotFound)
	}
	return nil
}
