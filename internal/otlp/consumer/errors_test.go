package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Each constructor builds its kind, KindOf finds it through wrapping, and anything
// that is not a refusal counts as unavailable.
func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want consumer.Kind
	}{
		{nil, 0},
		{consumer.Malformed("bad %d", 1), consumer.KindMalformed},
		{consumer.TooLarge("big"), consumer.KindTooLarge},
		{consumer.Full("full", time.Second), consumer.KindFull},
		{consumer.Unavailable("disk", time.Second), consumer.KindUnavailable},
		{consumer.Unauthorized("who"), consumer.KindUnauthorized},
		{consumer.AlreadyDelivered("have", 7), consumer.KindAlreadyDelivered},
		{consumer.Unstorable("constraint"), consumer.KindUnstorable},
		{fmt.Errorf("store: %w", consumer.Unstorable("constraint")), consumer.KindUnstorable},
		{fmt.Errorf("ingest: %w", consumer.Full("full", time.Second)), consumer.KindFull},
		{&consumer.Error{Message: "no kind"}, consumer.KindUnavailable},
		{errors.New("disk on fire"), consumer.KindUnavailable},
		{context.Canceled, consumer.KindUnavailable},
	} {
		if got := consumer.KindOf(tc.err); got != tc.want {
			t.Errorf("KindOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A refusal reads as its message, and carries what its kind needs.
func TestErrorCarriesWhatItsKindNeeds(t *testing.T) {
	err := error(consumer.Malformed("bad %s header %q", "Periscope-Batch", "x"))
	if err.Error() != `bad Periscope-Batch header "x"` {
		t.Errorf("message %q", err.Error())
	}
	var e *consumer.Error
	if !errors.As(fmt.Errorf("wrapped: %w", consumer.Full("queue full", 5*time.Second)), &e) || e.RetryAfter != 5*time.Second {
		t.Errorf("Full: %+v, want RetryAfter 5s", e)
	}
	if e := consumer.AlreadyDelivered("have up to 9", 9); e.Delivered != 9 || e.Message != "have up to 9" {
		t.Errorf("AlreadyDelivered: %+v", e)
	}
	for k, want := range map[consumer.Kind]string{0: "none", consumer.KindUnavailable: "unavailable", consumer.KindMalformed: "malformed",
		consumer.KindTooLarge: "too_large", consumer.KindFull: "full", consumer.KindUnauthorized: "unauthorized",
		consumer.KindAlreadyDelivered: "already_delivered", consumer.KindUnstorable: "unstorable", 99: "kind(99)"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), k.String(), want)
		}
	}
}

// The Func adapters call the function they adapt.
func TestFuncAdapters(t *testing.T) {
	var got []string
	c := consumer.ConsumerFunc(func(_ context.Context, r consumer.Request) error {
		got = append(got, r.Signal.String()+" "+r.Header("authorization"))
		return nil
	})
	s := consumer.SinkFunc(func(_ context.Context, b consumer.Batch) error {
		got = append(got, b.Signal.String()+" "+b.DeploymentID)
		return consumer.Unavailable("store closed", 0)
	})
	if err := c.Consume(context.Background(), consumer.Request{Signal: otlp.Logs, Header: func(string) string { return "Bearer x" }}); err != nil {
		t.Fatal(err)
	}
	if err := s.Consume(context.Background(), consumer.Batch{Signal: otlp.Traces, DeploymentID: "acme-prod"}); consumer.KindOf(err) != consumer.KindUnavailable {
		t.Fatalf("sink error %v, want unavailable", err)
	}
	if len(got) != 2 || got[0] != "logs Bearer x" || got[1] != "traces acme-prod" {
		t.Errorf("adapters saw %q", got)
	}
}
