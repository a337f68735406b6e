package postgres

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/store"
)

// The channels replicas LISTEN on. A fleet notification says only "read the
// changes" (its payload is empty); a commands one names the deployment an
// invocation was queued for.
const (
	// ChannelFleet is notified, at commit, by every operator write of the
	// fleet: new deployments, pins, thresholds, tokens, deletions, releases.
	// Check-in flushes notify nothing: replicas read them every second.
	ChannelFleet = "periscope_fleet"
	// ChannelCommands is notified, at commit, with the id of each deployment
	// an invocation was queued for.
	ChannelCommands = "periscope_commands"
)

// notifyFleet tells the replicas listening that the fleet changed; the
// server delivers it when tx commits, and not at all if it rolls back.
func notifyFleet(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, ChannelFleet)
	return err
}

// notifyQueued tells the replicas listening which deployments got queued
// invocations, once each, at commit.
func notifyQueued(ctx context.Context, tx pgx.Tx, invs []store.Invocation) error {
	var ids []string
	for i := range invs {
		if invs[i].State == command.StateQueued {
			ids = append(ids, invs[i].DeploymentID)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id`, ChannelCommands, ids)
	return err
}

// checkinColumns are the deployment columns a check-in owns: what
// UpdateCheckins writes. The operator's columns (name, customer, stack,
// labels, expected_config_hash, pin, thresholds) are written only by the
// operation that changes them.
var checkinColumns = []string{
	"platform", "cloud", "region", "mode", "connected", "running_release", "agent_version", "instance_uid",
	"last_checkin", "health", "config_hash", "update_state", "last_status", "rollout",
}

// checkinRow fills row with the id and checkinColumns' values of r, for
// COPY (which is done with a row before asking for the next).
func checkinRow(row []any, r *store.DeploymentRecord) []any {
	d := &r.Deployment
	row[0] = d.ID
	copy(row[1:], []any{d.Platform, d.Cloud, d.Region, string(d.Mode), d.Connected, d.RunningRelease, d.AgentVersion, d.InstanceUID,
		nullTime(d.LastCheckin), mustJSON(d.Health), d.ConfigHash, mustJSON(d.Update), string(r.LastStatus), mustJSON(store.RolloutOf(d))})
	return row
}

// checkinIndex are checkinColumns' positions in deploymentRow (after the id).
var checkinIndex = func() []int {
	out := make([]int, len(checkinColumns))
	for i, c := range checkinColumns {
		j := slices.Index(mutableColumns, c)
		if j < 0 {
			panic("check-in column " + c + " is not a deployment column")
		}
		out[i] = j + 1
	}
	return out
}()

// checkinTableSQL creates the temporary table a flush is copied into.
var checkinTableSQL = func() string {
	cols := []string{"id text"}
	for i, c := range checkinColumns {
		cols = append(cols, c+" "+mutableTypes[checkinIndex[i]-1])
	}
	return "CREATE TEMPORARY TABLE checkin_flush (" + strings.Join(cols, ", ") + ") ON COMMIT DROP"
}()

// checkinSQL applies the rows COPY put in checkin_flush. A row whose stored
// last check-in is later is left alone: another replica heard the agent since.
var checkinSQL = func() string {
	set := make([]string, len(checkinColumns))
	for i, c := range checkinColumns {
		set[i] = c + " = u." + c
	}
	return "UPDATE deployments d SET " + strings.Join(set, ", ") + ", changed_xid = pg_current_xact_id() FROM checkin_flush u" +
		" WHERE d.id = u.id AND (d.last_checkin IS NULL OR u.last_checkin >= d.last_checkin)"
}()

// UpdateCheckins implements store.Fleet: COPY into a temporary table, then
// one UPDATE … FROM it. The rows are not locked in id order first (that alone
// costs more than the update at 100,000 rows): two replicas' flushes seldom
// share a deployment, and when they deadlock the server aborts one, which is
// tried again, up to deadlockTries times.
func (s *Store) UpdateCheckins(ctx context.Context, recs []store.DeploymentRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if err := retryDeadlock(func() error { return s.updateCheckins(ctx, recs) }); err != nil {
		return fmt.Errorf("write check-ins of %d deployments: %w", len(recs), err)
	}
	return nil
}

// deadlockTries is how often a transaction the server aborted as a deadlock
// is tried.
const deadlockTries = 3

// retryDeadlock runs tx (a whole transaction) again while the server aborts
// it as a deadlock, up to deadlockTries times in all: a check-in flush, which
// does not lock in id order, and a pin, which does, can each be the one
// aborted, and neither wrote anything.
func retryDeadlock(tx func() error) error {
	var err error
	for range deadlockTries {
		if err = tx(); sqlState(err) != "40P01" {
			return err
		}
	}
	return err
}

func (s *Store) updateCheckins(ctx context.Context, recs []store.DeploymentRecord) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		// A check-in flush lost to a server crash is written again by the
		// agents' next check-ins, so its commit does not wait for the disk.
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, checkinTableSQL); err != nil {
			return err
		}
		cols := append([]string{"id"}, checkinColumns...)
		row := make([]any, len(cols))
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"checkin_flush"}, cols, pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
			return checkinRow(row, &recs[i]), nil
		}))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, checkinSQL)
		return err
	})
}

// FleetChangesSince implements store.Fleet. A position names the snapshot
// the previous answer was read in (kept by this Store): the next answer reads
// exactly the rows of transactions that snapshot did not see as done, so a
// transaction that commits late is read once it has, and one that stays open
// long (a backup, say) costs nothing but its own rows. An unknown position
// (another Store's) reads everything, deletions included.
func (s *Store) FleetChangesSince(ctx context.Context, after int64) (store.FleetChanges, error) {
	var out store.FleetChanges
	prev, known := s.snaps.get(after)
	known = known && snapshotText.MatchString(prev)
	// One snapshot for the position and every read.
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var snap string
		if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
			return err
		}
		out.Next = s.snaps.put(snap)
		where, args := "", []any(nil)
		if known {
			// The snapshot goes in as a constant, folded once when planned;
			// as a parameter it would be parsed again for every row. It is
			// the server's own text, checked to be only digits, ':' and ','.
			xmin, _, _ := strings.Cut(prev, ":")
			where = "changed_xid >= '" + xmin + "'::xid8 AND NOT pg_visible_in_snapshot(changed_xid, '" + prev + "'::pg_snapshot)"
		}
		var err error
		if out.Deployments, err = listDeployments(ctx, tx, strings.ReplaceAll(where, "(changed_xid", "(d.changed_xid"), args...); err != nil {
			return err
		}
		if out.Releases, err = listReleases(ctx, tx, where, args...); err != nil {
			return err
		}
		if after == 0 {
			return nil
		}
		q := `SELECT DISTINCT id FROM deployment_deletions`
		if known {
			q += " WHERE " + where
		}
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out.Deleted, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return store.FleetChanges{}, fmt.Errorf("read fleet changes: %w", err)
	}
	return out, nil
}

// snapshotText is what pg_snapshot's text looks like: xmin:xmax:xip,…
var snapshotText = regexp.MustCompile(`^[0-9]+:[0-9]+:[0-9,]*$`)

// snapshots are the snapshots FleetChangesSince answered in, by position;
// only the newest few are kept, as a caller passes the position it got last.
type snapshots struct {
	mu   sync.Mutex
	last int64
	byID map[int64]string
}

// keptSnapshots is how many positions a Store remembers.
const keptSnapshots = 16

func (s *snapshots) put(snap string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[int64]string{}
	}
	s.last++
	s.byID[s.last] = snap
	delete(s.byID, s.last-keptSnapshots)
	return s.last
}

func (s *snapshots) get(pos int64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.byID[pos]
	return snap, ok
}
