// Package consumertest holds fakes of the consumer contract, for the tests of the
// receivers that feed it, and the OTLP requests to feed them with.
package consumertest

import (
	"bytes"
	"context"
	"sync"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Recorder is a consumer.Consumer that keeps a copy of every request it takes, or
// refuses each with Err. Read its fields once the requests are answered.
type Recorder struct {
	mu sync.Mutex
	// Got holds the requests taken, their bodies copied (they are borrowed) and their
	// Header dropped (it is valid only during Consume).
	Got []consumer.Request
	// Auth holds each taken request's Authorization header.
	Auth []string
	// Err, when set, refuses every request.
	Err error
}

// Consume keeps r, or refuses it with Err.
func (c *Recorder) Consume(_ context.Context, r consumer.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Err != nil {
		return c.Err
	}
	c.Auth = append(c.Auth, r.Header("Authorization"))
	r.Body, r.Header = bytes.Clone(r.Body), nil
	c.Got = append(c.Got, r)
	return nil
}

// Gatekeeper is a Recorder that is a consumer.Authorizer too: it admits only requests
// whose Authorization header is Want.
type Gatekeeper struct {
	Recorder
	Want string
}

// Authorize refuses a request without the wanted Authorization header.
func (g *Gatekeeper) Authorize(ctx context.Context, header func(string) string) (context.Context, error) {
	if header("Authorization") != g.Want {
		return ctx, consumer.Unauthorized("no")
	}
	return ctx, nil
}

// Blocker holds every request until Release is closed, then accepts it: a consumer
// busy for as long as a test needs, to fill a limiter or hold up a shutdown. When
// Started is set (buffered, capacity 1), a request arriving kicks it, so a test waits
// for a request to be held instead of sleeping.
type Blocker struct{ Started, Release chan struct{} }

// NewBlocker returns a Blocker with both channels made.
func NewBlocker() *Blocker {
	return &Blocker{Started: make(chan struct{}, 1), Release: make(chan struct{})}
}

// Consume kicks Started and waits for Release.
func (b *Blocker) Consume(context.Context, consumer.Request) error {
	if b.Started != nil {
		select {
		case b.Started <- struct{}{}:
		default: // a kick is pending already
		}
	}
	<-b.Release
	return nil
}

// LogsRequest returns a logs export request of one resource ("checkout") with n log
// records.
func LogsRequest(n int) plogotlp.ExportRequest {
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	for i := 0; i < n; i++ {
		rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("payment declined")
	}
	return plogotlp.NewExportRequestFromLogs(l)
}
