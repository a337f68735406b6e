// Package receiver serves OTLP: the HTTP handlers for /v1/logs, /v1/traces and
// /v1/metrics (protobuf or JSON, gzip or zstd) and the three gRPC export services.
//
// Both hand each request to a Consumer as the protobuf encoding of the export request,
// without decoding it into pdata: the agent only tags and queues it, the manager tags,
// deduplicates and fans it out, and neither needs the records as objects. Errors the
// consumer returns become the OTLP status codes the specification asks for, so any
// OpenTelemetry SDK or Collector retries exactly what it should.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/periscope-dev/periscope/internal/otlp"
	"google.golang.org/grpc/codes"
)

// Request is one export request handed to a Consumer.
type Request struct {
	// Signal says which export request Body is.
	Signal otlp.Signal
	// Body is the protobuf encoding of the export request, decompressed and converted
	// from JSON if it came that way. It is valid only until Consume returns: the
	// receiver reuses it for a later request, so a consumer that keeps it must copy it.
	Body []byte
	// Header returns a request header (HTTP) or metadata value (gRPC), such as
	// "authorization"; lookups are case-insensitive.
	Header func(key string) string
}

// Consumer takes export requests. An error of type *Error chooses the status the
// sender sees; any other error is reported as unavailable, which senders retry.
type Consumer interface {
	Consume(ctx context.Context, r Request) error
}

// Authorizer is implemented by consumers that check credentials. Receivers call it
// before reading the request body, so a client without valid credentials costs no
// memory for its payload, and pass the context it returns (which may carry who the
// sender is) on to Consume.
type Authorizer interface {
	Authorize(ctx context.Context, header func(key string) string) (context.Context, error)
}

// ConsumerFunc adapts a function to Consumer.
type ConsumerFunc func(ctx context.Context, r Request) error

// Consume calls f.
func (f ConsumerFunc) Consume(ctx context.Context, r Request) error { return f(ctx, r) }

// Error is a consumer's refusal with the status to answer.
type Error struct {
	// HTTP is the HTTP status code; Code is the matching gRPC code.
	HTTP int
	Code codes.Code
	// Message is shown to the sender.
	Message string
	// RetryAfter, when positive, asks the sender to wait before retrying.
	RetryAfter time.Duration
	// Header holds extra HTTP response headers (gRPC ignores them).
	Header map[string]string
}

func (e *Error) Error() string { return e.Message }

// BadRequest refuses a request that will never be accepted as sent.
func BadRequest(format string, args ...any) *Error {
	return &Error{HTTP: http.StatusBadRequest, Code: codes.InvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// Unauthorized refuses a request without valid credentials.
func Unauthorized(msg string) *Error {
	return &Error{HTTP: http.StatusUnauthorized, Code: codes.Unauthenticated, Message: msg}
}

// Full refuses a request for now because a bound is reached; the sender should retry
// after the given delay.
func Full(msg string, retryAfter time.Duration) *Error {
	return &Error{HTTP: http.StatusTooManyRequests, Code: codes.ResourceExhausted, Message: msg, RetryAfter: retryAfter}
}

// Unavailable refuses a request because of a fault on the receiving side that may
// clear, such as a disk error.
func Unavailable(msg string, retryAfter time.Duration) *Error {
	return &Error{HTTP: http.StatusServiceUnavailable, Code: codes.Unavailable, Message: msg, RetryAfter: retryAfter}
}

// asError maps any consumer error to an *Error.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Unavailable(err.Error(), time.Second)
}

// retryAfterSeconds formats a Retry-After header value, rounding up so a sender never
// comes back early.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}

// Limiter bounds how many requests are read and handled at once, so a burst of large
// requests cannot hold unbounded memory: beyond the bound, senders are told to retry.
// A nil *Limiter admits everything.
type Limiter struct{ slots chan struct{} }

// NewLimiter admits n requests at a time (n <= 0 means no limit).
func NewLimiter(n int) *Limiter {
	if n <= 0 {
		return nil
	}
	return &Limiter{slots: make(chan struct{}, n)}
}

// acquire takes a slot, or reports that none is free.
func (l *Limiter) acquire() bool {
	if l == nil {
		return true
	}
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *Limiter) release() {
	if l != nil {
		<-l.slots
	}
}

var errBusy = Full("too many requests in progress; retry shortly", time.Second)
