// Package receiver serves OTLP/HTTP: the handlers for /v1/logs, /v1/traces and
// /v1/metrics (protobuf or JSON, gzip or zstd). It also holds what every OTLP receiver
// shares, here and in package grpcserver: the mapping of a consumer's refusal to the
// HTTP status and gRPC code its sender sees (StatusOf), and the bound on requests in
// progress (Limiter).
//
// A receiver hands each request to a consumer.Consumer as the protobuf encoding of
// the export request, without decoding it into pdata: the agent only tags and queues
// it, the manager tags, deduplicates and fans it out, and neither needs the records as
// objects. The error kinds consumers return become the OTLP status codes the
// specification asks for, so any OpenTelemetry SDK or Collector retries exactly what
// it should.
package receiver

import (
	"time"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// DefaultMaxBytes bounds a request body, compressed or not, when no limit is set.
const DefaultMaxBytes = 16 << 20

// Limiter bounds how many requests are read and handled at once, so a burst of large
// requests cannot hold unbounded memory: beyond the bound, senders are told to retry.
// A nil *Limiter admits everything. One Limiter may be shared by several receivers.
type Limiter struct{ slots chan struct{} }

// NewLimiter admits n requests at a time (n <= 0 means no limit).
func NewLimiter(n int) *Limiter {
	if n <= 0 {
		return nil
	}
	return &Limiter{slots: make(chan struct{}, n)}
}

// Acquire takes a slot, to be given back with Release, or refuses with a
// consumer.KindFull error when none is free.
func (l *Limiter) Acquire() error {
	if l == nil {
		return nil
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
		return consumer.Full("too many requests in progress; retry shortly", time.Second)
	}
}

// Release gives back a slot Acquire took.
func (l *Limiter) Release() {
	if l != nil {
		<-l.slots
	}
}
