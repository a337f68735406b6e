package receiver

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Every kind of refusal gets the HTTP status, gRPC code and headers the OTLP
// specification asks for (and Periscope's agents read), whatever wraps it.
func TestStatusOfEveryKind(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		http   int
		code   codes.Code
		msg    string
		header map[string]string
		retry  time.Duration // the RetryInfo delay over gRPC
	}{
		{"malformed", consumer.Malformed("bad %s", "proto"), 400, codes.InvalidArgument, "bad proto", nil, 0},
		{"too large", consumer.TooLarge("too big"), 413, codes.InvalidArgument, "too big", nil, 0},
		{"full", consumer.Full("queue full", 5*time.Second), 429, codes.ResourceExhausted, "queue full",
			map[string]string{"Retry-After": "5"}, 5 * time.Second},
		{"full, delay rounded up", consumer.Full("queue full", 1500*time.Millisecond), 429, codes.ResourceExhausted, "queue full",
			map[string]string{"Retry-After": "2"}, 1500 * time.Millisecond},
		{"unavailable", consumer.Unavailable("disk", time.Second), 503, codes.Unavailable, "disk",
			map[string]string{"Retry-After": "1"}, time.Second},
		{"unavailable without a delay", consumer.Unavailable("disk", 0), 503, codes.Unavailable, "disk", nil, 0},
		{"unauthorized", consumer.Unauthorized("no token"), 401, codes.Unauthenticated, "no token",
			map[string]string{"Www-Authenticate": `Bearer realm="periscope"`}, 0},
		{"already delivered", consumer.AlreadyDelivered("have up to 5", 5), 409, codes.AlreadyExists, "have up to 5",
			map[string]string{"Periscope-Delivered": "5"}, 0},
		{"unstorable", fmt.Errorf("store: %w", consumer.Unstorable("constraint failed")), 422, codes.InvalidArgument,
			"constraint failed", nil, 0},
		{"wrapped", fmt.Errorf("ingest: %w", consumer.Unauthorized("no token")), 401, codes.Unauthenticated, "no token",
			map[string]string{"Www-Authenticate": `Bearer realm="periscope"`}, 0},
		{"zero kind", &consumer.Error{Message: "odd"}, 503, codes.Unavailable, "odd", nil, 0},
		{"any other error", errors.New("store closed"), 503, codes.Unavailable, "store closed",
			map[string]string{"Retry-After": "1"}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := StatusOf(tc.err)
			if s.HTTP != tc.http || s.Code != tc.code || s.Message != tc.msg {
				t.Errorf("StatusOf = %d %v %q, want %d %v %q", s.HTTP, s.Code, s.Message, tc.http, tc.code, tc.msg)
			}
			h := http.Header{}
			s.SetHTTPHeaders(h)
			got := map[string]string{}
			for k := range h {
				got[k] = h.Get(k)
			}
			if !maps.Equal(got, tc.header) {
				t.Errorf("headers %v, want %v", got, tc.header)
			}
			if d := retryInfo(t, s.GRPCDetails()); d != tc.retry {
				t.Errorf("RetryInfo delay %v, want %v", d, tc.retry)
			}
		})
	}
}

// retryInfo decodes a grpc-status-details-bin value and returns its RetryInfo delay.
func retryInfo(t *testing.T, bin string) time.Duration {
	t.Helper()
	if bin == "" {
		return 0
	}
	b, err := base64.RawStdEncoding.DecodeString(bin)
	if err != nil {
		t.Fatal(err)
	}
	var st spb.Status
	if err := proto.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Details {
		var ri errdetails.RetryInfo
		if a.UnmarshalTo(&ri) == nil {
			return ri.RetryDelay.AsDuration()
		}
	}
	t.Fatalf("details %v hold no RetryInfo", st.Details)
	return 0
}
