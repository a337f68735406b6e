package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
)

// fleet is a two-deployment directory, keyed by token.
type fleet map[string]otlp.Context

func (f fleet) Authenticate(token string) (string, bool) {
	c, ok := f[token]
	return c.DeploymentID, ok
}

func (f fleet) Context(id string) (otlp.Context, bool) {
	for _, c := range f {
		if c.DeploymentID == id {
			return c, true
		}
	}
	return otlp.Context{}, false
}

var deployments = fleet{
	"pdt_acme":     {DeploymentID: "acme-prod", Customer: "acme", Cloud: "aws", Release: "1.8.0", Stack: "lighthouse"},
	"pdt_umbrella": {DeploymentID: "umbrella-dr", Customer: "umbrella", Cloud: "azure", Release: "1.7.2", Stack: "lighthouse"},
}

type sink struct {
	mu      sync.Mutex
	batches []consumer.Batch
	fail    error
}

func (s *sink) Consume(_ context.Context, b consumer.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.batches = append(s.batches, b)
	return nil
}

func request(t *testing.T, token, batch string) consumer.Request {
	t.Helper()
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	rl.Resource().Attributes().PutStr(otlp.AttrDeploymentID, "umbrella-dr")
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("hello")
	body, err := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]string{"Authorization": "Bearer " + token, otlp.BatchHeader: batch}
	return consumer.Request{Signal: otlp.Logs, Body: body, Header: func(k string) string { return h[k] }}
}

// status is the HTTP status the receivers answer err with.
func status(err error) int {
	var e *consumer.Error
	if errors.As(err, &e) {
		return receiver.StatusOf(e).HTTP
	}
	if err != nil {
		return -1
	}
	return http.StatusOK
}

func TestIngestAuthenticatesAndOverwritesContext(t *testing.T) {
	s := &sink{}
	in, err := New(deployments, []Sink{{Name: "s", Sink: s}}, Settings{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := status(in.Consume(ctx, request(t, "", ""))); got != 401 {
		t.Errorf("no token: %d", got)
	}
	if got := status(in.Consume(ctx, request(t, "pdt_nobody", ""))); got != 401 {
		t.Errorf("unknown token: %d", got)
	}
	bad := request(t, "pdt_acme", "")
	bad.Body = []byte("garbage, not protobuf")
	if got := status(in.Consume(ctx, bad)); got != 400 {
		t.Errorf("malformed: %d", got)
	}
	if len(s.batches) != 0 {
		t.Fatalf("refused requests reached the sink: %d", len(s.batches))
	}
	if got := status(in.Consume(ctx, request(t, "pdt_acme", ""))); got != 200 {
		t.Fatalf("good request: %d", got)
	}
	b := s.batches[0]
	if b.DeploymentID != "acme-prod" || b.Records != 1 {
		t.Errorf("batch from %q with %d records", b.DeploymentID, b.Records)
	}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(b.Data); err != nil {
		t.Fatal(err)
	}
	attrs := req.Logs().ResourceLogs().At(0).Resource().Attributes()
	for k, want := range map[string]string{otlp.AttrDeploymentID: "acme-prod", otlp.AttrCustomer: "acme",
		otlp.AttrRelease: "1.8.0", "service.name": "checkout"} {
		if v, _ := attrs.Get(k); v.AsString() != want {
			t.Errorf("%s = %q, want %q", k, v.AsString(), want)
		}
	}
}

func TestIngestDropsResentBatchesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s := &sink{}
	in, _ := New(deployments, []Sink{{Name: "s", Sink: s}}, Settings{Dir: dir})
	ctx := context.Background()
	send := func(in *Ingest, token, batch string) int { return status(in.Consume(ctx, request(t, token, batch))) }

	for _, b := range []string{"q1:1-5", "q1:6-9", "q1:1-5", "q1:3-9", "q1:10-10"} {
		if got := send(in, "pdt_acme", b); got != 200 {
			t.Fatalf("batch %s: %d", b, got)
		}
	}
	if len(s.batches) != 3 {
		t.Fatalf("sink got %d batches, want 3 (two resends dropped)", len(s.batches))
	}
	// Each batch carries its identity, for sinks shared by replicas.
	if b := s.batches[1]; b.Stream != "acme-prod/logs/q1" || b.First != 6 || b.Last != 9 {
		t.Errorf("the second batch says it is %q %d-%d, want acme-prod/logs/q1 6-9", b.Stream, b.First, b.Last)
	}
	// The same queue id from another deployment is another stream.
	if send(in, "pdt_umbrella", "q1:1-5"); len(s.batches) != 4 {
		t.Fatalf("umbrella's batch was taken as acme's duplicate")
	}
	for _, bad := range []string{"q1", "q1:5-1", "q1:0-3", "q1:a-b"} {
		if got := send(in, "pdt_acme", bad); got != 400 {
			t.Errorf("batch header %q: %d, want 400", bad, got)
		}
	}
	// A failing sink makes the sender retry, and the retry is not a duplicate.
	s.fail = errors.New("disk full")
	if got := send(in, "pdt_acme", "q1:11-12"); got != 503 {
		t.Fatalf("failing sink: %d, want 503", got)
	}
	s.fail = nil
	if got := send(in, "pdt_acme", "q1:11-12"); got != 200 || len(s.batches) != 5 {
		t.Fatalf("retry after a failing sink: %d, %d batches", got, len(s.batches))
	}
	if err := in.Flush(); err != nil {
		t.Fatal(err)
	}

	restarted, err := New(deployments, []Sink{{Name: "s", Sink: s}}, Settings{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	send(restarted, "pdt_acme", "q1:11-12")
	send(restarted, "pdt_acme", "q1:13-14")
	if len(s.batches) != 6 {
		t.Errorf("after restart: sink has %d batches, want 6 (the resend dropped, the new one kept)", len(s.batches))
	}
}

func TestIngestForgetsStreamsSilentForAMonth(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	s := &sink{}
	in, _ := New(deployments, []Sink{{Name: "s", Sink: s}}, Settings{Dir: dir, Clock: clk})
	ctx := context.Background()
	in.Consume(ctx, request(t, "pdt_acme", "old:1-5"))
	clk.Advance(31 * 24 * time.Hour)
	in.Consume(ctx, request(t, "pdt_acme", "new:1-5"))
	if err := in.Flush(); err != nil {
		t.Fatal(err)
	}
	restarted, _ := New(deployments, []Sink{{Name: "s", Sink: s}}, Settings{Dir: dir, Clock: clk})
	restarted.Consume(ctx, request(t, "pdt_acme", "new:1-5")) // still remembered: dropped
	restarted.Consume(ctx, request(t, "pdt_acme", "old:1-5")) // forgotten: taken again
	if len(s.batches) != 3 {
		t.Errorf("sink has %d batches, want 3 (the month-old stream forgotten, the recent one kept)", len(s.batches))
	}
}

func TestIngestAnswersAnOverlappingBatchWithWhatItHas(t *testing.T) {
	s := &sink{}
	in, _ := New(deployments, []Sink{{Name: "s", Sink: s}}, Settings{Dir: t.TempDir()})
	ctx := context.Background()
	in.Consume(ctx, request(t, "pdt_acme", "q:1-5"))
	err := in.Consume(ctx, request(t, "pdt_acme", "q:4-8"))
	var re *consumer.Error
	header := http.Header{}
	if errors.As(err, &re) {
		receiver.StatusOf(re).SetHTTPHeaders(header)
	}
	if !errors.As(err, &re) || status(err) != http.StatusConflict || header.Get(otlp.DeliveredHeader) != "5" {
		t.Fatalf("overlapping batch: %v, want 409 with %s: 5", err, otlp.DeliveredHeader)
	}
	if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:6-8"))); got != 200 || len(s.batches) != 2 {
		t.Errorf("the rest: %d, %d batches", got, len(s.batches))
	}
}

// partial is a sink shared by replicas that holds a queue up to held already.
type partial struct {
	sink
	held uint64
}

func (p *partial) Consume(ctx context.Context, b consumer.Batch) error {
	if b.First <= p.held && p.held < b.Last {
		return consumer.AlreadyDelivered("held already", p.held)
	}
	return p.sink.Consume(ctx, b)
}

// TestASinkHoldingTheStartOfABatchGetsOnlyTheRest: a shared store that another
// replica gave the start of a batch answers already delivered; the agent is
// told so, resends the rest, and every sink ends with each record once.
func TestASinkHoldingTheStartOfABatchGetsOnlyTheRest(t *testing.T) {
	own, shared := &sink{}, &partial{held: 3}
	in, _ := New(deployments, []Sink{{Name: "own", Sink: own}, {Name: "shared", Sink: shared}}, Settings{Dir: t.TempDir()})
	ctx := context.Background()
	err := in.Consume(ctx, request(t, "pdt_acme", "q:1-5"))
	var re *consumer.Error
	if !errors.As(err, &re) || re.Kind != consumer.KindAlreadyDelivered || re.Delivered != 3 {
		t.Fatalf("a batch the shared sink holds the start of: %v, want already delivered up to 3", err)
	}
	if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:4-5"))); got != 200 {
		t.Fatalf("the rest: %d", got)
	}
	if len(own.batches) != 1 || own.batches[0].Last != 5 || len(shared.batches) != 1 || shared.batches[0].First != 4 {
		t.Fatalf("own sink got %d batches, shared %d; want the whole batch once and the rest once", len(own.batches), len(shared.batches))
	}
	if got := status(in.Consume(ctx, request(t, "pdt_acme", "q:6-6"))); got != 200 || len(own.batches) != 2 || len(shared.batches) != 2 {
		t.Fatalf("the next batch: %d; own %d, shared %d batches", got, len(own.batches), len(shared.batches))
	}
}

// The requests metric keeps the outcome labels it had when consumers chose gRPC codes:
// each refusal is labelled with the name of the code the receivers answer it with.
func TestOutcomeLabelsNameTheGRPCCodeOfEachKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "accepted"},
		{consumer.Malformed("bad"), "invalidargument"},
		{consumer.TooLarge("big"), "invalidargument"},
		{consumer.Full("full", time.Second), "resourceexhausted"},
		{consumer.Unavailable("disk", time.Second), "unavailable"},
		{consumer.Unauthorized("who"), "unauthenticated"},
		{consumer.AlreadyDelivered("have", 5), "alreadyexists"},
		{consumer.Unstorable("constraint"), "invalidargument"},
		{fmt.Errorf("wrapped: %w", consumer.Unauthorized("who")), "unauthenticated"},
		{errors.New("not a refusal"), "error"},
	} {
		if got := outcome(tc.err); got != tc.want {
			t.Errorf("outcome(%v) = %q, want %q", tc.err, got, tc.want)
		}
		var e *consumer.Error
		if errors.As(tc.err, &e) {
			code := strings.ToLower(strings.ReplaceAll(receiver.StatusOf(e).Code.String(), " ", "_"))
			if code != tc.want {
				t.Errorf("%v: label %q, but the receivers answer %q", tc.err, tc.want, code)
			}
		}
	}
}
