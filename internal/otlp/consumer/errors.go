package consumer

import (
	"errors"
	"fmt"
	"time"
)

// Kind says why a request was refused, which decides whether and when its sender
// retries. Receivers map each kind to a status of their protocol.
type Kind uint8

// The kinds of refusal. The zero Kind is what KindOf says of no error at all.
const (
	// KindUnavailable: a fault on the receiving side that may clear, such as a disk
	// error; the sender retries, after Error.RetryAfter when it is set. Every error
	// that is not an *Error counts as this kind.
	KindUnavailable Kind = iota + 1
	// KindMalformed: the request will never be accepted as sent; the sender drops it.
	KindMalformed
	// KindTooLarge: the request is larger than the receiver can ever take; the sender
	// drops it (or splits it).
	KindTooLarge
	// KindFull: a bound is reached for now; the sender retries after
	// Error.RetryAfter.
	KindFull
	// KindUnauthorized: the request has no valid credentials.
	KindUnauthorized
	// KindAlreadyDelivered: part of the request was delivered before, up to and
	// including sequence number Error.Delivered of the sender's queue; the sender
	// resends only what comes after.
	KindAlreadyDelivered
	// KindUnstorable: the request was well formed but can never be kept as sent (a
	// store refused it in a way that fails again identically on every retry); the
	// receiver set it aside for inspection, and the sender drops it and moves on
	// rather than hold up everything queued behind it.
	KindUnstorable
)

// String names the kind in lower case with underscores, as in "already_delivered".
func (k Kind) String() string {
	switch k {
	case 0:
		return "none"
	case KindUnavailable:
		return "unavailable"
	case KindMalformed:
		return "malformed"
	case KindTooLarge:
		return "too_large"
	case KindFull:
		return "full"
	case KindUnauthorized:
		return "unauthorized"
	case KindAlreadyDelivered:
		return "already_delivered"
	case KindUnstorable:
		return "unstorable"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is a consumer's refusal of a request. Build one with the constructor of its
// kind; receivers read it with errors.As.
type Error struct {
	// Kind says why the request was refused. The zero Kind counts as KindUnavailable.
	Kind Kind
	// Message is shown to the sender, so it MUST NOT hold anything the sender may not
	// see.
	Message string
	// RetryAfter, when positive, asks the sender to wait this long before retrying
	// (KindFull and KindUnavailable).
	RetryAfter time.Duration
	// Delivered is, for KindAlreadyDelivered, the last sequence number of the
	// sender's queue that was delivered already.
	Delivered uint64
}

// Error returns the message shown to the sender.
func (e *Error) Error() string { return e.Message }

// Malformed refuses a request that will never be accepted as sent, with a message
// formatted as fmt.Sprintf does.
func Malformed(format string, args ...any) *Error {
	return &Error{Kind: KindMalformed, Message: fmt.Sprintf(format, args...)}
}

// TooLarge refuses a request larger than the consumer can ever take.
func TooLarge(msg string) *Error {
	return &Error{Kind: KindTooLarge, Message: msg}
}

// Full refuses a request for now because a bound is reached; the sender should retry
// after the given delay.
func Full(msg string, retryAfter time.Duration) *Error {
	return &Error{Kind: KindFull, Message: msg, RetryAfter: retryAfter}
}

// Unavailable refuses a request because of a fault on the receiving side that may
// clear, such as a disk error; the sender should retry after the given delay (none
// when it is zero).
func Unavailable(msg string, retryAfter time.Duration) *Error {
	return &Error{Kind: KindUnavailable, Message: msg, RetryAfter: retryAfter}
}

// Unauthorized refuses a request without valid credentials.
func Unauthorized(msg string) *Error {
	return &Error{Kind: KindUnauthorized, Message: msg}
}

// AlreadyDelivered refuses a request that overlaps what was delivered before: the
// sender's queue is delivered up to and including sequence number delivered.
func AlreadyDelivered(msg string, delivered uint64) *Error {
	return &Error{Kind: KindAlreadyDelivered, Message: msg, Delivered: delivered}
}

// Unstorable refuses a request that can never be kept as sent, however often it is
// resent, such as one a store's constraint fails on.
func Unstorable(msg string) *Error {
	return &Error{Kind: KindUnstorable, Message: msg}
}

// KindOf returns the kind of err: 0 for nil, the Kind of an *Error in err's chain,
// and KindUnavailable for anything else.
func KindOf(err error) Kind {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) && e.Kind != 0 {
		return e.Kind
	}
	return KindUnavailable
}
