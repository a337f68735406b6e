package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/retry"
)

// LeaderLockKey is the advisory lock the leading manager replica holds: one
// bigint key in the database's advisory-lock space ("periscope" in ASCII).
const LeaderLockKey int64 = 0x70657269_73636f70

// connect opens a connection of its own to the store's database, outside the
// pool: a session lock or a LISTEN belongs to one connection for its life.
func (s *Store) connect(ctx context.Context) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
}

// LeaderSettings tune Lead; zero values are safe.
type LeaderSettings struct {
	Logger *slog.Logger
	// Every is how often a follower tries for the lock and a leader checks
	// its connection (1 s when zero).
	Every time.Duration
}

// Lead competes for leadership among the replicas on this database until ctx
// ends: a session-level advisory lock (LeaderLockKey) held on a connection of
// its own, tried every LeaderSettings.Every. It calls elected once it holds
// the lock (an error from it ends Lead with that error) and returns nil when
// ctx ends. Once it has led, a broken
// connection means the server has let the lock go (and another replica may
// take it within a second), so Lead returns an error at once: the caller must
// stop the leader's work. A replica killed outright loses its connection, and
// with it the lock, as the server notices the connection close.
func (s *Store) Lead(ctx context.Context, set LeaderSettings, elected func() error) error {
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := set.Every
	if every <= 0 {
		every = time.Second
	}
	backoff := retry.Backoff{Initial: every, Max: 10 * every, Jitter: 0.5}
	failures := 0
	for ctx.Err() == nil {
		led, err := s.leadOnce(ctx, every, elected)
		if led {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fleet leadership ended: %w", err)
		}
		wait := every
		if err != nil && ctx.Err() == nil {
			failures++
			wait = backoff.Delay(failures, err)
			log.Warn("cannot try for fleet leadership; will retry", "err", err, "in", wait)
		}
		if !clock.Sleep(ctx, wait) {
			break
		}
	}
	return nil
}

// leadOnce opens a connection, tries for the lock every interval while it
// answers, and once held calls elected and keeps checking the connection. It
// reports whether it led and why it stopped.
func (s *Store) leadOnce(ctx context.Context, every time.Duration, elected func() error) (led bool, err error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, LeaderLockKey).Scan(&got); err != nil {
			return false, err
		}
		if got {
			break
		}
		if !clock.Sleep(ctx, every) {
			return false, ctx.Err()
		}
	}
	if err := elected(); err != nil {
		return true, fmt.Errorf("start the leader's work: %w", err)
	}
	for clock.Sleep(ctx, every) {
		pctx, cancel := context.WithTimeout(ctx, 2*every)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			return true, err
		}
	}
	return true, ctx.Err()
}

// Listen receives the notifications of channels (ChannelFleet,
// ChannelCommands) until ctx ends, on a connection of its own, handing each to
// fn (channel, payload) on Listen's goroutine. It calls connected each time it
// has (re)started listening: what was notified while it was not listening is
// lost, so the caller reads afresh what it may have missed. A broken
// connection is opened again after a backoff (internal/retry). It returns nil
// when ctx ends.
func (s *Store) Listen(ctx context.Context, log *slog.Logger, channels []string, connected func(), fn func(channel, payload string)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := retry.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5}
	failures := 0
	for ctx.Err() == nil {
		heard, err := s.listenOnce(ctx, channels, connected, fn)
		if ctx.Err() != nil {
			return nil
		}
		if heard {
			failures = 0
		}
		failures++
		wait := backoff.Delay(failures, err)
		log.Warn("listening for other replicas' changes failed; will listen again", "err", err, "in", wait)
		if !clock.Sleep(ctx, wait) {
			break
		}
	}
	return nil
}

// listenOnce listens on one connection until it fails; listening reports
// whether it got as far as listening.
func (s *Store) listenOnce(ctx context.Context, channels []string, connected func(), fn func(channel, payload string)) (listening bool, err error) {
	conn, err := s.connect(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return false, err
		}
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return true, nil
			}
			return true, err
		}
		fn(n.Channel, n.Payload)
	}
}
