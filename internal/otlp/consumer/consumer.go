// Package consumer is the contract between the stages of the telemetry path, in both
// programs: a receiver hands each OTLP export Request to a Consumer (the agent's
// pipeline, the manager's ingest), and ingest hands each accepted Batch to its Sinks
// (the exporters' fan-out, the telemetry store).
//
//	receiver ──Request──▶ Consumer ──Batch──▶ Sink
//
// It holds only types, interfaces and errors, so a stage depends on the contract and
// never on a transport or on another stage.
//
// # Data ownership
//
// Request.Body is borrowed: it is valid only until Consume returns, because receivers
// reuse the buffer for a later request, and the caller MUST NOT modify it while
// Consume runs. A Consumer MUST NOT keep Body, or a slice of it, past its return; one
// that needs the bytes later MUST copy them. The same holds for Request.Header.
//
// Batch.Data is handed over: once a caller passes a Batch to Sink.Consume it MUST NOT
// modify Data any more. A Sink MAY keep Data without copying it, and MUST NOT modify
// it, since every sink of a batch gets the same slice.
//
// # Concurrency
//
// Consume MAY be called concurrently, for requests of one connection as for requests
// of different ones; a Consumer, Authorizer or Sink MUST be safe for that.
//
// # Errors
//
// A refusal is an *Error of one Kind, which the receivers turn into the HTTP status
// and gRPC code the OTLP specification asks for, so senders retry exactly what they
// should. Any other error counts as KindUnavailable. This package names no status
// codes: the mapping lives with the receivers.
package consumer

import (
	"context"
	"time"

	"github.com/periscope-dev/periscope/internal/otlp"
)

// Request is one OTLP export request handed to a Consumer.
type Request struct {
	// Signal says which export request Body is.
	Signal otlp.Signal
	// Body is the protobuf encoding of the export request, decompressed and converted
	// from JSON if it came that way. It is borrowed: valid only until Consume returns
	// (see the package documentation).
	Body []byte
	// Header returns a request header (HTTP) or metadata value (gRPC), such as
	// "authorization"; lookups are case-insensitive. It is valid only until Consume
	// returns, like Body.
	Header func(key string) string
}

// Consumer takes export requests. Its error, an *Error or any other, decides what the
// sender is told (see KindOf).
type Consumer interface {
	Consume(ctx context.Context, r Request) error
}

// ConsumerFunc adapts a function to Consumer.
type ConsumerFunc func(ctx context.Context, r Request) error

// Consume calls f.
func (f ConsumerFunc) Consume(ctx context.Context, r Request) error { return f(ctx, r) }

// Authorizer is implemented by consumers that check credentials. Receivers call it
// before reading the request body, so a client without valid credentials costs no
// memory for its payload, and pass the context it returns (which may carry who the
// sender is) on to Consume. header is valid only until Authorize returns.
type Authorizer interface {
	Authorize(ctx context.Context, header func(key string) string) (context.Context, error)
}

// Batch is one accepted OTLP export request on its way to the exporters and the store.
type Batch struct {
	// Signal says which export request Data holds.
	Signal otlp.Signal
	// DeploymentID is the deployment that sent the batch, as its token proves.
	DeploymentID string
	// Received is when the manager accepted the batch.
	Received time.Time
	// Records counts log records, spans or metric data points in Data.
	Records int
	// Stream names the agent queue the batch came from, unique across
	// deployments and signals ("<deployment>/<signal>/<queue id>"), and First
	// and Last are the queue sequence numbers it spans. Stream is "" for a batch
	// sent without a batch id. A sink that stores the batch and its identity in
	// one transaction can refuse a copy another manager replica already stored.
	Stream      string
	First, Last uint64
	// Data is the protobuf encoding of the OTLP export request for Signal, with every
	// resource already tagged with the deployment context. It is shared by every sink
	// and MUST NOT be modified (see the package documentation).
	Data []byte
}

// Sink takes accepted batches. An error makes the sender retry the batch, so a sink
// MUST fail only when it could not keep the batch at all. A sink that will refuse the
// batch identically however often it is resent MUST say so with an Unstorable error:
// the caller then sets the batch aside and the sender moves on, where a retryable
// error would hold up everything queued behind the batch for good.
type Sink interface {
	Consume(ctx context.Context, b Batch) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, b Batch) error

// Consume calls f.
func (f SinkFunc) Consume(ctx context.Context, b Batch) error { return f(ctx, b) }
