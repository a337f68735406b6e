package telstore

import (
	"context"
	"sync"
	"time"
)

// Gate admits batches to a store's writers until the store closes, and tells
// log tails when a commit lands. Both telemetry stores write through one: a
// batch once queued is always answered, and Close returns only after every
// sender has queued or given up.
type Gate[T any] struct {
	in   chan T
	stop chan struct{}

	// mu guards closing and committed. committed is closed and replaced after
	// each commit, waking log tails.
	mu        sync.Mutex
	closing   bool
	senders   sync.WaitGroup
	committed chan struct{}
}

// NewGate returns an open gate queueing up to queue items.
func NewGate[T any](queue int) *Gate[T] {
	return &Gate[T]{in: make(chan T, queue), stop: make(chan struct{}), committed: make(chan struct{})}
}

// Send queues p for the writers: ErrClosed once the gate is closing, ctx's
// error if it ends first.
func (g *Gate[T]) Send(ctx context.Context, p T) error {
	g.mu.Lock()
	closing := g.closing
	if !closing {
		g.senders.Add(1)
	}
	g.mu.Unlock()
	if closing {
		return ErrClosed
	}
	defer g.senders.Done()
	select {
	case g.in <- p:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops admitting, waits for the senders under way, and closes Stopped.
func (g *Gate[T]) Close() {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.senders.Wait()
	close(g.stop)
}

// Stopped is closed once the gate is closed and nothing more will be queued.
func (g *Gate[T]) Stopped() <-chan struct{} { return g.stop }

// NotifyCommit wakes every tail waiting for new rows.
func (g *Gate[T]) NotifyCommit() {
	g.mu.Lock()
	close(g.committed)
	g.committed = make(chan struct{})
	g.mu.Unlock()
}

// Committed returns a channel closed at the next commit.
func (g *Gate[T]) Committed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.committed
}

// Serve calls commit with groups of queued items, each p and what else is
// queued up to limit by size, until the gate closes; then with what is still
// queued.
func (g *Gate[T]) Serve(commit func([]T), size func(T) int, limit int) {
	gather := func(p T) []T {
		ps := []T{p}
		n := size(p)
		for n < limit {
			select {
			case q := <-g.in:
				ps = append(ps, q)
				n += size(q)
				continue
			default:
			}
			break
		}
		return ps
	}
	for {
		select {
		case p := <-g.in:
			commit(gather(p))
		case <-g.stop:
			// Nothing is sent once stop is closed; take what is queued.
			for {
				select {
				case p := <-g.in:
					commit(gather(p))
					continue
				default:
				}
				return
			}
		}
	}
}

// RunEvery calls fn every interval until stop closes, with a context that
// ends at stop or after timeout, so closing never waits for a whole run.
func RunEvery(stop <-chan struct{}, every, timeout time.Duration, fn func(context.Context)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			go func() {
				select {
				case <-stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			fn(ctx)
			cancel()
		}
	}
}
