package grpcserver

import (
	"context"
	"sync"
	"time"
)

// deadlineCtx is a request's context carrying the deadline its grpc-timeout set.
//
// It starts the timer behind Done only when Done or Err is first called. A
// context.WithTimeout per request costs a timer and a registration with the
// connection's context, about 2% of the agent's CPU under load, and the agent's
// consumer, which answers in microseconds, never waits on it; a consumer that does
// wait gets the same behaviour as from context.WithDeadline.
type deadlineCtx struct {
	context.Context // the connection's
	deadline        time.Time

	once   sync.Once
	timed  context.Context
	cancel context.CancelFunc
}

func newDeadlineCtx(parent context.Context, deadline time.Time) *deadlineCtx {
	return &deadlineCtx{Context: parent, deadline: deadline}
}

func (c *deadlineCtx) start() {
	c.once.Do(func() { c.timed, c.cancel = context.WithDeadline(c.Context, c.deadline) })
}

// Deadline reports the request's deadline, or the parent's when that is earlier.
func (c *deadlineCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done is closed when the deadline passes or the parent is done.
func (c *deadlineCtx) Done() <-chan struct{} {
	c.start()
	return c.timed.Done()
}

// Err says why Done was closed, as context.WithDeadline's Err does.
func (c *deadlineCtx) Err() error {
	c.start()
	return c.timed.Err()
}

// release ends the context as cancelling a context.WithDeadline would: Done is closed
// from now on, and the timer, if Done or Err started one, is stopped.
func (c *deadlineCtx) release() {
	c.once.Do(func() { c.timed = canceledCtx })
	if c.cancel != nil {
		c.cancel()
	}
}

// canceledCtx is done from the start; it never changes.
var canceledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()
