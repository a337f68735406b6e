// Package periodic runs a manager chore (a regression check, a retention
// sweep) every interval in the background, between Start and Shutdown.
package periodic

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Loop runs its function every interval. New starts nothing.
type Loop struct {
	name   string
	every  time.Duration
	fn     func(context.Context)
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a loop named name (for errors) running fn every interval; fn
// gets a context that ends at Shutdown.
func New(name string, every time.Duration, fn func(context.Context)) *Loop {
	return &Loop{name: name, every: every, fn: fn}
}

// Start runs fn every interval until Shutdown, and once at once when first is
// set. It fails only when called twice.
func (l *Loop) Start(ctx context.Context, first bool) error {
	if l.cancel != nil {
		return fmt.Errorf("%s already started", l.name)
	}
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(l.every)
		defer t.Stop()
		if first {
			l.fn(ctx)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				l.fn(ctx)
			}
		}
	}()
	return nil
}

// Shutdown stops the loop and waits for a run in progress, or until ctx ends.
// It is idempotent and safe without Start.
func (l *Loop) Shutdown(ctx context.Context) error {
	if l.cancel != nil {
		l.cancel()
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", l.name, ctx.Err())
	}
}
