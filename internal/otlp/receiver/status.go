package receiver

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Status is a receiver's answer to a request it did not accept, in both protocols:
// the OTLP/HTTP handler writes it as a status code, headers and a google.rpc.Status
// body, the gRPC server as trailers.
type Status struct {
	// HTTP is the OTLP/HTTP status code.
	HTTP int
	// Code is the gRPC status code; OTLP/HTTP bodies carry it too.
	Code codes.Code
	// Message is shown to the sender.
	Message string
	// RetryAfter, when positive, asks the sender to wait before retrying: the
	// Retry-After header over HTTP, RetryInfo over gRPC.
	RetryAfter time.Duration
	// Delivered, when not empty, is the otlp.DeliveredHeader value (HTTP only: gRPC senders
	// are applications, which know no delivery positions).
	Delivered string
}

// StatusOf maps a consumer's error to the answer its sender gets. It is the one place
// where consumer.Kind becomes an HTTP status and a gRPC code, chosen as the OTLP
// specification asks so that senders retry exactly what they should. An error that is
// not a *consumer.Error is unavailable, retried after a second. err must not be nil.
func StatusOf(err error) Status {
	var e *consumer.Error
	if !errors.As(err, &e) {
		return Status{HTTP: http.StatusServiceUnavailable, Code: codes.Unavailable, Message: err.Error(), RetryAfter: time.Second}
	}
	s := Status{Message: e.Message, RetryAfter: e.RetryAfter}
	switch e.Kind {
	case consumer.KindMalformed:
		s.HTTP, s.Code = http.StatusBadRequest, codes.InvalidArgument
	case consumer.KindTooLarge:
		s.HTTP, s.Code = http.StatusRequestEntityTooLarge, codes.InvalidArgument
	case consumer.KindFull:
		s.HTTP, s.Code = http.StatusTooManyRequests, codes.ResourceExhausted
	case consumer.KindUnauthorized:
		s.HTTP, s.Code = http.StatusUnauthorized, codes.Unauthenticated
	case consumer.KindAlreadyDelivered:
		s.HTTP, s.Code = http.StatusConflict, codes.AlreadyExists
		s.Delivered = strconv.FormatUint(e.Delivered, 10)
	case consumer.KindUnstorable:
		// A 4xx other than 429 is never retried by OTLP senders (nor INVALID_ARGUMENT
		// over gRPC); 422 rather than 400 lets Periscope's agents count it apart from
		// a malformed request.
		s.HTTP, s.Code = http.StatusUnprocessableEntity, codes.InvalidArgument
	default: // KindUnavailable, and a zero or unknown Kind
		s.HTTP, s.Code = http.StatusServiceUnavailable, codes.Unavailable
	}
	return s
}

// SetHTTPHeaders sets the response headers that go with s over OTLP/HTTP.
func (s Status) SetHTTPHeaders(h http.Header) {
	if s.RetryAfter > 0 {
		h.Set("Retry-After", retryAfterSeconds(s.RetryAfter))
	}
	if s.Delivered != "" {
		h.Set(otlp.DeliveredHeader, s.Delivered)
	}
	if s.HTTP == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="periscope"`)
	}
}

// retryAfterSeconds formats a Retry-After header value, rounding up so a sender never
// comes back early.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}

// GRPCDetails returns the grpc-status-details-bin trailer value that goes with s over
// gRPC, or "" when there is none: a RetryInfo when RetryAfter is set, since OTLP
// senders retry RESOURCE_EXHAUSTED only when RetryInfo says when.
func (s Status) GRPCDetails() string {
	if s.RetryAfter <= 0 {
		return ""
	}
	withInfo, err := status.New(s.Code, s.Message).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(s.RetryAfter)})
	if err != nil {
		return ""
	}
	b, err := proto.Marshal(withInfo.Proto())
	if err != nil {
		return ""
	}
	return base64.RawStdEncoding.EncodeToString(b)
}
