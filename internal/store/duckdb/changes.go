package duckdb

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// changeLog numbers this store's writes for FleetChangesSince. The embedded
// store has one process as its only writer, so the log lives in memory: a
// position is valid with the open store that returned it, as the contract
// says. It holds one number per deployment written, deleted or released.
type changeLog struct {
	mu       sync.Mutex
	seq      int64
	deps     map[string]int64
	gone     map[string]int64
	releases []releaseAt
}

type releaseAt struct {
	seq int64
	rel fleet.Release
}

// wrote numbers a committed write of recs' deployments.
func (c *changeLog) wrote(recs []store.DeploymentRecord) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	if c.deps == nil {
		c.deps = map[string]int64{}
	}
	for i := range recs {
		c.deps[recs[i].Deployment.ID] = c.seq
	}
}

// deleted numbers a committed deletion.
func (c *changeLog) deleted(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	if c.gone == nil {
		c.gone = map[string]int64{}
	}
	c.gone[id] = c.seq
	delete(c.deps, id)
}

// released numbers a committed release.
func (c *changeLog) released(r fleet.Release) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.releases = append(c.releases, releaseAt{c.seq, r})
}

// since is the position now and what was numbered after position after.
func (c *changeLog) since(after int64) (now int64, deps []string, gone []string, rels []fleet.Release) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.deps {
		if n > after {
			deps = append(deps, id)
		}
	}
	for id, n := range c.gone {
		if n > after {
			gone = append(gone, id)
		}
	}
	for _, r := range c.releases {
		if r.seq > after {
			rels = append(rels, r.rel)
		}
	}
	return c.seq, deps, gone, rels
}

// FleetChangesSince implements store.Fleet. The position is taken before the
// rows are read, and a write is numbered once committed, so a write is never
// missed, only sometimes read twice.
func (s *Store) FleetChangesSince(ctx context.Context, after int64) (store.FleetChanges, error) {
	now, ids, gone, rels := s.changes.since(after)
	out := store.FleetChanges{Next: now}
	var err error
	if after == 0 {
		if out.Deployments, err = s.ListDeployments(ctx); err != nil {
			return store.FleetChanges{}, fmt.Errorf("read fleet changes: %w", err)
		}
		if out.Releases, err = s.ListReleases(ctx); err != nil {
			return store.FleetChanges{}, fmt.Errorf("read fleet changes: %w", err)
		}
		return out, nil
	}
	// In chunks, so a statement's parameters stay bounded.
	const chunk = 1000
	for len(ids) > 0 {
		n := min(chunk, len(ids))
		recs, err := s.listDeployments(ctx, ids[:n])
		if err != nil {
			return store.FleetChanges{}, fmt.Errorf("read fleet changes: %w", err)
		}
		out.Deployments = append(out.Deployments, recs...)
		ids = ids[n:]
	}
	out.Deleted, out.Releases = gone, rels
	return out, nil
}

// UpdateCheckins implements store.Fleet with one query appender, like
// UpdateDeployments, over the columns a check-in owns.
func (s *Store) UpdateCheckins(ctx context.Context, recs []store.DeploymentRecord) error {
	if len(recs) == 0 {
		return nil
	}
	const newer = "deployments.last_checkin IS NULL OR a.col10 >= deployments.last_checkin"
	err := s.withConn(ctx, func(dc driver.Conn) error { return updateDeployments(dc, recs, checkinColumns, newer) })
	if err := s.checkWrite(err); err != nil {
		return fmt.Errorf("write check-ins of %d deployments: %w", len(recs), err)
	}
	s.changes.wrote(recs)
	return nil
}

// checkinColumns are the deployment columns a check-in owns (see
// store.Fleet.UpdateCheckins); last_checkin is the ninth, col10 of the
// appended row after the id.
var checkinColumns = []string{
	"platform", "cloud", "region", "mode", "connected", "running_release", "agent_version", "instance_uid",
	"last_checkin", "health", "config_hash", "update_state", "last_status", "rollout",
}
