// Package postgres is the fleet store on a PostgreSQL server, for managers that
// outgrow one machine: several manager replicas open the same database, and
// every write is a transaction the server orders between them.
//
// Concurrency. Each method is one transaction, so two replicas never see half
// of a write. State that may only move forward (an invocation's state) moves
// with a conditional UPDATE, so of two replicas racing the same move exactly
// one succeeds and the other gets store.ErrConflict. Pins and whole-row
// updates lock their deployments in id order first, so two of them wait for
// each other instead of deadlocking; a check-in flush does not (see
// UpdateCheckins) and is tried again if the server aborts it as a deadlock.
//
// Bulk writes use COPY (new deployments, events, audit entries, a check-in
// flush into a temporary table applied by one UPDATE … FROM) or one UPDATE
// from arrays, so a large fleet costs one statement per batch, as with the
// embedded store.
//
// Replicas (changes.go, replicas.go): every write of a deployment records its
// transaction id, so each replica reads what the others changed
// (FleetChangesSince); operator writes NOTIFY ChannelFleet and queued
// commands ChannelCommands, which Listen hears; Lead holds the leader's
// advisory lock.
//
// Migrations are plain SQL files embedded in the binary, applied in order under
// a transaction-scoped advisory lock, so replicas starting together against an
// empty database apply each once.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// Store is the PostgreSQL fleet store. Use Open; it is safe for concurrent use,
// and any number of Stores (in any number of processes) may share a database.
type Store struct {
	pool *pgxpool.Pool
	// unwritable is why the last write was refused for want of resources (a
	// full disk, a read-only server), nil while writes succeed (see Writable).
	unwritable atomic.Pointer[string]
	closeOnce  sync.Once
	// snaps are FleetChangesSince's positions (see changes.go).
	snaps snapshots
}

var (
	_ store.Fleet         = (*Store)(nil)
	_ store.Notifications = (*Store)(nil)
	_ store.Commands      = (*Store)(nil)
)

// IsURL reports whether storage, the manager's storage setting, names a
// PostgreSQL database (a postgres:// or postgresql:// URL).
func IsURL(storage string) bool {
	return strings.HasPrefix(storage, "postgres://") || strings.HasPrefix(storage, "postgresql://")
}

// Open connects to the database url names (a postgres:// URL; pgx's pool
// parameters such as pool_max_conns apply, and search_path selects a schema),
// checks that the server answers and applies pending migrations. Errors never
// repeat the URL, which may hold a password.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors quote the URL; say only what is wrong with it.
		return nil, errors.New("open PostgreSQL fleet store: the storage URL is not a valid PostgreSQL connection URL")
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL fleet store at %s: %w", where, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open PostgreSQL fleet store at %s: %w", where, err)
	}
	s := &Store{pool: pool}
	if err := migrate(ctx, pool, migrations); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate PostgreSQL fleet store at %s: %w", where, err)
	}
	return s, nil
}

// Close closes the store's connections; it is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// tx runs fn in a transaction, committing when it returns nil; every error
// passes through checkWrite.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.checkWrite(pgx.BeginFunc(ctx, s.pool, fn))
}

// sqlState is err's SQLSTATE, "" when it is not the server's error.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// isConflict tells whether err is a unique or primary key violation.
func isConflict(err error) bool { return sqlState(err) == "23505" }

// cannotWrite tells whether err is the server refusing a write for a reason
// that passes (a full disk, memory, a read-only server during a failover) and,
// if so, the reason in words safe to show anyone. Nothing of a refused
// statement is written.
func cannotWrite(err error) (reason string, ok bool) {
	switch code := sqlState(err); {
	case code == "53100":
		return "the database server's disk is full", true
	case strings.HasPrefix(code, "53"):
		return "the database server is out of resources", true
	case code == "25006":
		return "the database server is read-only", true
	case code == "57P03":
		return "the database server is not accepting connections yet", true
	}
	return "", false
}

// checkWrite takes the outcome of a write: a success clears a failure Writable
// reports, and a refusal for want of resources is recorded and marked
// store.ErrUnavailable.
func (s *Store) checkWrite(err error) error {
	if err == nil {
		if s.unwritable.Load() != nil {
			s.unwritable.Store(nil)
		}
		return nil
	}
	reason, ok := cannotWrite(err)
	if !ok {
		return err
	}
	s.unwritable.Store(&reason)
	return fmt.Errorf("%w (%s): %w", store.ErrUnavailable, reason, err)
}

// Writable tells whether the store can write: nil, or store.ErrUnavailable
// with the reason (words safe to show anyone). It answers from the last write;
// after one was refused, it writes a row version of its own (rewriting the
// newest migration's row as it is) and answers nil once that commits.
func (s *Store) Writable(ctx context.Context) error {
	reason := s.unwritable.Load()
	if reason == nil {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE schema_migrations SET applied_at = applied_at WHERE version = (SELECT max(version) FROM schema_migrations)`)
	if err != nil {
		if r, ok := cannotWrite(err); ok {
			return fmt.Errorf("%w: %s", store.ErrUnavailable, r)
		}
		return fmt.Errorf("%w: %s", store.ErrUnavailable, *reason)
	}
	s.unwritable.CompareAndSwap(reason, nil)
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain data structs are marshalled here; failure is a programming error.
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return b
}

// nullTime is t for a nullable column: nil when zero.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// utc is a nullable column's time as read: zero for NULL, else in UTC.
func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// mutableColumns are the deployment columns UpdateDeployments rewrites, in the
// order deploymentRow produces them after the id.
var mutableColumns = []string{
	"name", "customer", "platform", "cloud", "region", "stack", "labels", "mode", "connected",
	"running_release", "agent_version", "instance_uid", "last_checkin", "health", "config_hash",
	"expected_config_hash", "update_state", "pin", "last_status", "rollout", "thresholds",
}

// mutableTypes are mutableColumns' SQL types, for the arrays of a batched update.
var mutableTypes = []string{
	"text", "text", "text", "text", "text", "text", "jsonb", "text", "boolean",
	"text", "text", "text", "timestamptz", "jsonb", "text",
	"text", "jsonb", "jsonb", "text", "jsonb", "jsonb",
}

// deploymentRow is the id and mutableColumns' values of r; JSON columns are
// []byte (nil for a NULL pin).
func deploymentRow(r *store.DeploymentRecord) []any {
	d := &r.Deployment
	labels := d.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	var pin []byte
	if d.Pin != nil {
		pin = mustJSON(d.Pin)
	}
	return []any{
		d.ID,
		d.Name, d.Customer, d.Platform, d.Cloud, d.Region, d.Stack, mustJSON(labels), string(d.Mode), d.Connected,
		d.RunningRelease, d.AgentVersion, d.InstanceUID, nullTime(d.LastCheckin), mustJSON(d.Health), d.ConfigHash,
		d.ExpectedConfigHash, mustJSON(d.Update), pin, string(r.LastStatus),
		mustJSON(store.RolloutOf(d)), mustJSON(d.Thresholds),
	}
}

// CreateDeployments implements store.Fleet with COPY into both tables, in one
// transaction.
func (s *Store) CreateDeployments(ctx context.Context, recs []store.DeploymentRecord) error {
	if len(recs) == 0 {
		return nil
	}
	cols := append([]string{"id", "created_at"}, mutableColumns...)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"deployments"}, cols, pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
			v := deploymentRow(&recs[i])
			return append([]any{v[0], recs[i].Deployment.CreatedAt.UTC()}, v[1:]...), nil
		}))
		if err != nil {
			return err
		}
		var toks [][]any
		for i := range recs {
			r := &recs[i]
			if r.TokenHash != "" {
				toks = append(toks, []any{r.TokenHash, r.Deployment.ID, false, nil})
			}
			if r.PrevTokenHash != "" {
				toks = append(toks, []any{r.PrevTokenHash, r.Deployment.ID, true, nullTime(r.PrevTokenUntil)})
			}
		}
		if _, err = tx.CopyFrom(ctx, pgx.Identifier{"deployment_tokens"}, []string{"hash", "deployment_id", "previous", "valid_until"}, pgx.CopyFromRows(toks)); err != nil {
			return err
		}
		return notifyFleet(ctx, tx)
	})
	if isConflict(err) {
		return fmt.Errorf("create deployments: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create deployments: %w", err)
	}
	return nil
}

// UpdateDeployments implements store.Fleet: one UPDATE from arrays, after
// locking the rows in id order.
func (s *Store) UpdateDeployments(ctx context.Context, recs []store.DeploymentRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if err := s.tx(ctx, func(tx pgx.Tx) error { return updateDeployments(ctx, tx, recs) }); err != nil {
		return fmt.Errorf("update %d deployments: %w", len(recs), err)
	}
	return nil
}

// updateSQL is the batched update: each column's values arrive as one array
// parameter, JSON ones as text cast on the server.
var updateSQL = func() string {
	var set, params, names strings.Builder
	names.WriteString("id")
	params.WriteString("$1::text[]")
	for i, c := range mutableColumns {
		typ := mutableTypes[i]
		arr := typ
		if typ == "jsonb" {
			arr = "text"
		}
		fmt.Fprintf(&params, ", $%d::%s[]", i+2, arr)
		fmt.Fprintf(&names, ", %s", c)
		if i > 0 {
			set.WriteString(", ")
		}
		if typ == "jsonb" {
			fmt.Fprintf(&set, "%s = u.%s::jsonb", c, c)
		} else {
			fmt.Fprintf(&set, "%s = u.%s", c, c)
		}
	}
	return "UPDATE deployments d SET " + set.String() + ", changed_xid = pg_current_xact_id() FROM unnest(" + params.String() + ") AS u(" + names.String() + ") WHERE d.id = u.id"
}()

// updateDeployments overwrites recs' mutable state inside tx. It locks the
// rows in id order first: two transactions updating overlapping deployments
// (two replicas' flushes, a flush and a pin) then queue behind each other
// rather than deadlock, and the later one's state holds for every deployment.
func updateDeployments(ctx context.Context, tx pgx.Tx, recs []store.DeploymentRecord) error {
	ids := make([]string, len(recs))
	for i := range recs {
		ids[i] = recs[i].Deployment.ID
	}
	if err := lockDeployments(ctx, tx, ids); err != nil {
		return err
	}
	// One typed array per column: pgx encodes them as the parameters' arrays.
	args := make([]any, 0, len(mutableColumns)+1)
	args = append(args, ids)
	rows := make([][]any, len(recs))
	for i := range recs {
		rows[i] = deploymentRow(&recs[i])
	}
	for c, typ := range mutableTypes {
		switch typ {
		case "text":
			col := make([]string, len(recs))
			for i := range rows {
				col[i] = rows[i][c+1].(string)
			}
			args = append(args, col)
		case "jsonb":
			col := make([]*string, len(recs))
			for i := range rows {
				if b := rows[i][c+1].([]byte); b != nil {
					v := string(b)
					col[i] = &v
				}
			}
			args = append(args, col)
		case "boolean":
			col := make([]bool, len(recs))
			for i := range rows {
				col[i] = rows[i][c+1].(bool)
			}
			args = append(args, col)
		case "timestamptz":
			col := make([]*time.Time, len(recs))
			for i := range rows {
				col[i] = rows[i][c+1].(*time.Time)
			}
			args = append(args, col)
		default:
			panic("no array of " + typ)
		}
	}
	_, err := tx.Exec(ctx, updateSQL, args...)
	return err
}

// lockDeployments locks the rows of ids in id order, so two transactions
// writing overlapping deployments (two replicas' flushes, a flush and a pin)
// queue behind each other rather than deadlock.
func lockDeployments(ctx context.Context, tx pgx.Tx, ids []string) error {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	_, err := tx.Exec(ctx, `SELECT 1 FROM deployments WHERE id = ANY($1) ORDER BY id FOR UPDATE`, sorted)
	return err
}

// ListDeployments implements store.Fleet.
func (s *Store) ListDeployments(ctx context.Context) ([]store.DeploymentRecord, error) {
	return listDeployments(ctx, s.pool, "")
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// listDeployments reads the deployments where (an SQL condition on d, with
// args) holds, or all when it is empty, in id order.
func listDeployments(ctx context.Context, q querier, where string, args ...any) ([]store.DeploymentRecord, error) {
	from := " FROM deployments d LEFT JOIN deployment_tokens c ON c.deployment_id = d.id AND NOT c.previous" +
		" LEFT JOIN deployment_tokens p ON p.deployment_id = d.id AND p.previous"
	if where != "" {
		// A few rows of many: their tokens by index, not by joining every
		// token of the fleet.
		from = " FROM (SELECT * FROM deployments d WHERE " + where + ") d" +
			" LEFT JOIN LATERAL (SELECT hash FROM deployment_tokens WHERE deployment_id = d.id AND NOT previous LIMIT 1) c ON true" +
			" LEFT JOIN LATERAL (SELECT hash, valid_until FROM deployment_tokens WHERE deployment_id = d.id AND previous LIMIT 1) p ON true"
	}
	sql := "SELECT d.id, coalesce(c.hash, ''), coalesce(p.hash, ''), p.valid_until, d.created_at, d." + strings.Join(mutableColumns, ", d.") + from
	rows, err := q.Query(ctx, sql+" ORDER BY d.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	defer rows.Close()
	var out []store.DeploymentRecord
	for rows.Next() {
		var (
			r                           store.DeploymentRecord
			d                           = &r.Deployment
			mode, ls                    string
			labels, health, update, pin []byte
			ro, thr                     []byte
			last, prevUntil             *time.Time
		)
		if err := rows.Scan(&d.ID, &r.TokenHash, &r.PrevTokenHash, &prevUntil, &d.CreatedAt, &d.Name, &d.Customer, &d.Platform, &d.Cloud, &d.Region,
			&d.Stack, &labels, &mode, &d.Connected, &d.RunningRelease, &d.AgentVersion, &d.InstanceUID, &last,
			&health, &d.ConfigHash, &d.ExpectedConfigHash, &update, &pin, &ls, &ro, &thr); err != nil {
			return nil, fmt.Errorf("list deployments: %w", err)
		}
		d.Mode, r.LastStatus = fleet.Mode(mode), fleet.Status(ls)
		d.CreatedAt, d.LastCheckin, r.PrevTokenUntil = d.CreatedAt.UTC(), utc(last), utc(prevUntil)
		var x store.Rollout
		if err := errors.Join(json.Unmarshal(labels, &d.Labels), json.Unmarshal(health, &d.Health),
			json.Unmarshal(update, &d.Update), json.Unmarshal(ro, &x), json.Unmarshal(thr, &d.Thresholds)); err != nil {
			return nil, fmt.Errorf("list deployments: decode %s: %w", d.ID, err)
		}
		x.ApplyTo(d)
		if pin != nil {
			d.Pin = new(fleet.Pin)
			if err := json.Unmarshal(pin, d.Pin); err != nil {
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

// ApplyThresholds implements store.Fleet: the deployment's new state and the
// audit entry commit together or not at all.
func (s *Store) ApplyThresholds(ctx context.Context, rec store.DeploymentRecord, entry store.AuditEntry) error {
	id := rec.Deployment.ID
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// Locked inside the transaction, so a deletion cannot slip between the
		// check and the write (the UPDATE alone would ignore an unknown id).
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM deployments WHERE id = $1 FOR UPDATE`, id).Scan(&one); errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("deployment %q: %w", id, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE deployments SET thresholds = $2, changed_xid = pg_current_xact_id() WHERE id = $1`,
			id, mustJSON(rec.Deployment.Thresholds)); err != nil {
			return err
		}
		if err := notifyFleet(ctx, tx); err != nil {
			return err
		}
		return insertAudit(ctx, tx, []store.AuditEntry{entry})
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("set thresholds: %w", err)
	}
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("set thresholds of %s: %w", id, err)
	}
	return nil
}

// CreateRelease implements store.Fleet.
func (s *Store) CreateRelease(ctx context.Context, r fleet.Release) error {
	cmds := r.Commands
	if cmds == nil {
		cmds = []command.Spec{}
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO releases (stack, version, created_at, notes, commands) VALUES ($1, $2, $3, $4, $5)`,
			r.Stack, r.Version, r.CreatedAt.UTC(), r.Notes, mustJSON(cmds)); err != nil {
			return err
		}
		return notifyFleet(ctx, tx)
	})
	if isConflict(err) {
		return fmt.Errorf("create release %s %s: %w", r.Stack, r.Version, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create release %s %s: %w", r.Stack, r.Version, err)
	}
	return nil
}

// ListReleases implements store.Fleet.
func (s *Store) ListReleases(ctx context.Context) ([]fleet.Release, error) {
	return listReleases(ctx, s.pool, "")
}

// listReleases reads the releases where (an SQL condition, with args) holds,
// or all when it is empty, oldest first.
func listReleases(ctx context.Context, q querier, where string, args ...any) ([]fleet.Release, error) {
	sql := `SELECT stack, version, created_at, notes, commands FROM releases`
	if where != "" {
		sql += " WHERE " + where
	}
	rows, err := q.Query(ctx, sql+` ORDER BY created_at, stack, version`, args...)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fleet.Release, error) {
		var r fleet.Release
		var cmds []byte
		if err := row.Scan(&r.Stack, &r.Version, &r.CreatedAt, &r.Notes, &cmds); err != nil {
			return r, err
		}
		r.CreatedAt = r.CreatedAt.UTC()
		if err := json.Unmarshal(cmds, &r.Commands); err != nil {
			return r, fmt.Errorf("commands of %s %s: %w", r.Stack, r.Version, err)
		}
		if len(r.Commands) == 0 {
			r.Commands = nil
		}
		return r, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	return out, nil
}

// AppendEvents implements store.Fleet with COPY.
func (s *Store) AppendEvents(ctx context.Context, evs []fleet.Event) error {
	if len(evs) == 0 {
		return nil
	}
	_, err := s.pool.CopyFrom(ctx, pgx.Identifier{"status_events"},
		[]string{"deployment_id", "event_at", "from_status", "to_status", "reason", "reason_code", "release"},
		pgx.CopyFromSlice(len(evs), func(i int) ([]any, error) {
			e := &evs[i]
			return []any{e.DeploymentID, e.At.UTC(), string(e.From), string(e.To), e.Reason, e.ReasonCode, e.Release}, nil
		}))
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("append %d events: %w", len(evs), err)
	}
	return nil
}

// ListEvents implements store.Fleet.
func (s *Store) ListEvents(ctx context.Context, deploymentID string, limit int) ([]fleet.Event, error) {
	q := `SELECT deployment_id, event_at, from_status, to_status, reason, reason_code, release FROM status_events`
	args := []any{}
	if deploymentID != "" {
		q += ` WHERE deployment_id = $1`
		args = append(args, deploymentID)
	}
	q += fmt.Sprintf(` ORDER BY event_at DESC, seq DESC LIMIT $%d`, len(args)+1)
	args = append(args, max(limit, 0))
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fleet.Event, error) {
		var e fleet.Event
		var from, to string
		err := row.Scan(&e.DeploymentID, &e.At, &from, &to, &e.Reason, &e.ReasonCode, &e.Release)
		e.At, e.From, e.To = e.At.UTC(), fleet.Status(from), fleet.Status(to)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// CreateAPIToken implements store.Fleet. Only the token's hash is stored.
func (s *Store) CreateAPIToken(ctx context.Context, t auth.APIToken) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO api_tokens (id, name, role, hash) VALUES ($1, $2, $3, $4)`, t.ID, t.Name, string(t.Role), t.Hash)
	err = s.checkWrite(err)
	if isConflict(err) {
		return fmt.Errorf("create API token %s: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create API token %s: %w", t.ID, err)
	}
	return nil
}

// ListAPITokens implements store.Fleet.
func (s *Store) ListAPITokens(ctx context.Context) ([]auth.APIToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, role, hash FROM api_tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (auth.APIToken, error) {
		var t auth.APIToken
		var role string
		err := row.Scan(&t.ID, &t.Name, &role, &t.Hash)
		t.Role = auth.Role(role)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	return out, nil
}

// DeleteAPIToken implements store.Fleet.
func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	var n int64
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM api_tokens WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `DELETE FROM dashboard_sessions WHERE starts_with(token_id, $1)`, id+"/")
		return err
	})
	if err != nil {
		return fmt.Errorf("delete API token %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("delete API token %s: %w", id, store.ErrNotFound)
	}
	return nil
}
