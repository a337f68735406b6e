package manager

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/store/postgres"
)

// Replicas. With the fleet in PostgreSQL, any number of managers may serve
// one fleet behind a load balancer. Each keeps the fleet in memory and reads
// the others' writes every second and on NOTIFY (registry.Sync); operator
// changes and queued commands made on one replica reach push connections on
// every other at once (LISTEN on periscope_fleet and periscope_commands).
// The background work that must run once (recording status changes and
// notifying about them, regression checks, the command expiry sweep, audit
// retention, expiring rotation overlaps) runs on the replica holding the
// leader lock. The telemetry store is PostgreSQL's too (pgtel), so regression
// checks read every replica's rollups; its retention runs on each replica,
// which is safe (dropping a partition twice is a no-op). Exporters' queues stay
// each replica's own.

// syncInterval is how often the registry reads other replicas' changes: zero
// (never) for the embedded store, which has one writer.
func (m *Manager) syncInterval() time.Duration {
	if !postgres.IsURL(m.cfg.Storage) {
		return 0
	}
	return cmp.Or(m.set.LeaderEvery, time.Second)
}

// startReplica starts the leader's work at once with the embedded store; on
// PostgreSQL it competes for leadership and listens for other replicas'
// changes in the background group. A leader whose lock connection breaks
// stops the manager with an error (as Kubernetes' controllers do): another
// replica may be leading within a second, and a supervisor restarts this one
// as a follower.
func (m *Manager) startReplica(ctx context.Context, reg prometheus.Registerer) error {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "periscope_fleet_leader",
		Help: "1 while this manager runs the fleet's once-only background work (stale events, notifications, regression checks, sweeps), else 0."},
		func() float64 {
			if m.leading.Load() {
				return 1
			}
			return 0
		}))
	pg, ok := m.store.(*postgres.Store)
	if !ok {
		return m.lead(ctx)
	}
	every := m.syncInterval()
	log := m.log.With("component", "replicas")
	m.group.Go(func() error {
		return pg.Lead(m.groupCtx, postgres.LeaderSettings{Logger: log, Every: every}, func() error { return m.lead(m.groupCtx) })
	})
	m.group.Go(func() error { return m.followRollouts(m.groupCtx, every) })
	m.group.Go(func() error { return m.followTokens(m.groupCtx, every) })
	m.group.Go(func() error {
		// Whatever was notified while not listening is read afresh.
		connected := func() {
			m.reg.Wake()
			m.cmds.ForgetIdle(m.groupCtx)
		}
		return pg.Listen(m.groupCtx, log, []string{postgres.ChannelFleet, postgres.ChannelCommands}, connected, func(channel, payload string) {
			switch channel {
			case postgres.ChannelFleet:
				m.reg.Wake()
			case postgres.ChannelCommands:
				m.cmds.QueuedElsewhere(m.groupCtx, []string{payload})
			}
		})
	})
	return nil
}

// lead starts the work that runs on one replica at a time. The notifier
// starts before the registry records status changes, so none is lost, and
// compares what was last sent with the fleet as it is, as after a restart.
func (m *Manager) lead(ctx context.Context) error {
	if m.notify != nil {
		if err := m.notify.Start(ctx, m.reg); err != nil {
			return err
		}
	}
	m.reg.SetLeader(true)
	if err := m.cmds.Start(ctx); err != nil {
		return err
	}
	if err := m.regress.Start(ctx); err != nil {
		return err
	}
	if err := m.auditSw.Start(ctx); err != nil {
		return err
	}
	// Only the leader steps rollouts: opens waves, checks gates, pins back.
	if err := m.rollouts.Start(ctx); err != nil {
		return err
	}
	m.leading.Store(true)
	if m.syncInterval() > 0 {
		m.log.Info("leading the fleet's background work", "store", "postgres")
	}
	return nil
}

// healthz answers 200 while the process serves, with its fleet role (leader
// or follower) in the body and the Periscope-Fleet-Role header.
func (m *Manager) healthz(w http.ResponseWriter, _ *http.Request) {
	role := "follower"
	if m.leading.Load() {
		role = "leader"
	}
	w.Header().Set("Periscope-Fleet-Role", role)
	fmt.Fprintf(w, "ok\nfleet role: %s\n", role)
}

// followTokens reads the operator tokens from the store every interval until
// ctx ends, so that a token created or deleted through another replica is
// accepted or refused here too, and the dashboard sessions of a deleted one
// end on every replica. The table holds a few tokens: reading it whole is
// cheaper than tracking its changes.
func (m *Manager) followTokens(ctx context.Context, every time.Duration) error {
	return eachTick(ctx, every, func() {
		if err := m.keys.Load(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("reading the API tokens failed; will retry", "err", err)
		}
	})
}

// eachTick calls fn every interval until ctx ends.
func eachTick(ctx context.Context, every time.Duration, fn func()) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fn()
	}
}

// followRollouts reads the rollouts every replica shares from the store every
// interval until ctx ends: the leader's steps and the actions and starts
// other replicas took. When anything Decide reads changed, every deployment
// is evaluated afresh and its offer pushed if it changed.
func (m *Manager) followRollouts(ctx context.Context, every time.Duration) error {
	return eachTick(ctx, every, func() {
		changed, err := m.rollouts.Reload(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("reading the rollouts failed; will retry", "err", err)
			}
			return
		}
		if changed {
			ms := (&rolloutFleet{reg: m.reg}).Members("")
			ids := make([]string, len(ms))
			for i := range ms {
				ids[i] = ms[i].ID
			}
			m.reg.DesiredChanged(ids)
		}
	})
}
