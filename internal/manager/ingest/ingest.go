// Package ingest is the manager's side of the telemetry pipeline: it takes OTLP export
// requests from deployments, proves who sent each one by its deployment token,
// overwrites the deployment context on every resource from the manager's own records,
// drops batches it has already taken, and hands the rest to its sinks (the exporters
// and the telemetry store).
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Deployments resolves tokens and deployment context from the manager's records.
type Deployments interface {
	// Authenticate returns the deployment a token belongs to.
	Authenticate(token string) (id string, ok bool)
	// Context returns the deployment context of a deployment.
	Context(id string) (otlp.Context, bool)
}

// Settings configure an Ingest.
type Settings struct {
	// Dir holds the delivered-batch watermarks, so duplicates are recognised across
	// restarts.
	Dir string
	// Clock stamps batches; nil means the wall clock.
	Clock clock.Clock
	// Logger reports refused requests; nil means slog.Default().
	Logger *slog.Logger
	// Registerer gets the ingest metrics; nil means none.
	Registerer prometheus.Registerer
}

// Ingest is the manager's consumer.Consumer and consumer.Authorizer.
type Ingest struct {
	deps  Deployments
	sinks []consumer.Sink
	s     Settings

	mu      sync.Mutex
	streams map[string]*stream
	dirty   bool

	records    *prometheus.CounterVec
	requests   *prometheus.CounterVec
	duplicates *prometheus.CounterVec
}

// stream is one agent queue's delivery position.
type stream struct {
	// turn is held (a token in the channel taken) while a batch of the stream is
	// handed to sinks; a channel so a waiting retry can give up with its request.
	turn chan struct{}
	last uint64
	seen time.Time // when a batch of the stream last arrived; written under Ingest.mu
}

func newStream(last uint64, seen time.Time) *stream {
	st := &stream{turn: make(chan struct{}, 1), last: last, seen: seen}
	st.turn <- struct{}{}
	return st
}

// New returns an Ingest reading deployments from deps and handing batches to sinks in
// order. It loads the watermarks kept in s.Dir.
func New(deps Deployments, sinks []consumer.Sink, s Settings) (*Ingest, error) {
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	in := &Ingest{
		deps: deps, sinks: sinks, s: s, streams: map[string]*stream{},
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_ingest_records_total",
			Help: "Log records, spans and metric data points accepted from deployments.",
		}, []string{"signal"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_ingest_requests_total",
			Help: "OTLP export requests from deployments, by signal and outcome.",
		}, []string{"signal", "outcome"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_ingest_duplicate_batches_total",
			Help: "Batches an agent resent after a crash or timeout, accepted and not stored again.",
		}, []string{"signal"}),
	}
	if s.Registerer != nil {
		for _, c := range []prometheus.Collector{in.records, in.requests, in.duplicates} {
			if err := s.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ingest metrics: %w", err)
			}
		}
	}
	if err := in.load(); err != nil {
		return nil, err
	}
	return in, nil
}

// Consume authenticates, tags, deduplicates and passes on one export request.
func (in *Ingest) Consume(ctx context.Context, r consumer.Request) error {
	err := in.consume(ctx, r)
	in.requests.WithLabelValues(r.Signal.String(), outcome(err)).Inc()
	return err
}

// outcome labels a request's result in the requests metric. A refusal is labelled
// with the name of the gRPC code its kind is answered with, in lower case
// ("invalidargument"): the labels this metric had when ingest chose the codes itself.
func outcome(err error) string {
	var e *consumer.Error
	switch {
	case err == nil:
		return "accepted"
	case !errors.As(err, &e):
		return "error"
	}
	switch consumer.KindOf(e) {
	case consumer.KindMalformed, consumer.KindTooLarge:
		return "invalidargument"
	case consumer.KindFull:
		return "resourceexhausted"
	case consumer.KindUnauthorized:
		return "unauthenticated"
	case consumer.KindAlreadyDelivered:
		return "alreadyexists"
	}
	return "unavailable"
}

// Authorize checks the deployment token before the receiver reads the body, and
// returns a context that carries the deployment to Consume.
func (in *Ingest) Authorize(ctx context.Context, header func(string) string) (context.Context, error) {
	id, err := in.authenticate(header)
	if err != nil {
		in.requests.WithLabelValues("any", "unauthenticated").Inc()
		return ctx, err
	}
	return context.WithValue(ctx, deploymentKey{}, id), nil
}

// deploymentKey holds the deployment Authorize found in a request's context.
type deploymentKey struct{}

func (in *Ingest) authenticate(header func(string) string) (string, error) {
	token, ok := auth.BearerToken(header("Authorization"))
	if !ok {
		return "", consumer.Unauthorized("missing bearer deployment token")
	}
	id, ok := in.deps.Authenticate(token)
	if !ok {
		return "", consumer.Unauthorized("unknown or revoked deployment token")
	}
	return id, nil
}

func (in *Ingest) consume(ctx context.Context, r consumer.Request) error {
	// The token was hashed and looked up in Authorize already when a receiver called it.
	id, ok := ctx.Value(deploymentKey{}).(string)
	if !ok {
		var err error
		if id, err = in.authenticate(r.Header); err != nil {
			return err
		}
	}
	dc, ok := in.deps.Context(id)
	if !ok {
		return consumer.Unauthorized("deployment no longer exists")
	}
	data, records, err := otlp.NewTagger(dc).Tag(r.Signal, make([]byte, 0, len(r.Body)+256), r.Body)
	if err != nil {
		return consumer.Malformed("%v", err)
	}
	batch := consumer.Batch{Signal: r.Signal, DeploymentID: id, Received: in.s.Clock.Now(), Records: records, Data: data}

	key, first, last, hasID, err := parseBatchID(id, r.Signal, r.Header(otlp.BatchHeader))
	if err != nil {
		return consumer.Malformed("%v", err)
	}
	if !hasID {
		return in.hand(ctx, batch)
	}
	st := in.stream(key)
	select {
	case <-st.turn:
	case <-ctx.Done():
		return consumer.Unavailable("an earlier copy of this batch is still being stored", time.Second)
	}
	defer func() { st.turn <- struct{}{} }()
	if last <= st.last {
		in.duplicates.WithLabelValues(r.Signal.String()).Inc()
		return nil
	}
	if first <= st.last {
		// Part of the batch was delivered already (the agent lost its own position,
		// say on power loss): taking it whole would store that part twice. Tell the
		// agent where delivery stands so it resends only the rest.
		return consumer.AlreadyDelivered(fmt.Sprintf("this queue's records up to %d are already delivered", st.last), st.last)
	}
	if err := in.hand(ctx, batch); err != nil {
		return err
	}
	in.mu.Lock()
	st.last = last
	st.seen = batch.Received
	in.dirty = true
	in.mu.Unlock()
	return nil
}

// hand passes a batch to every sink.
func (in *Ingest) hand(ctx context.Context, b consumer.Batch) error {
	for _, s := range in.sinks {
		if err := s.Consume(ctx, b); err != nil {
			in.s.Logger.Error("could not keep telemetry; the sender will retry", "deployment", b.DeploymentID,
				"signal", b.Signal, "error", err)
			return consumer.Unavailable("manager could not store the batch: "+err.Error(), 5*time.Second)
		}
	}
	in.records.WithLabelValues(b.Signal.String()).Add(float64(b.Records))
	return nil
}

func (in *Ingest) stream(key string) *stream {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := in.streams[key]
	if st == nil {
		st = newStream(0, in.s.Clock.Now())
		in.streams[key] = st
	}
	return st
}

// parseBatchID reads "<queue id>:<first>-<last>". The stream key includes the
// deployment, so one deployment can never move another's position.
func parseBatchID(deployment string, sig otlp.Signal, v string) (key string, first, last uint64, ok bool, err error) {
	if v == "" {
		return "", 0, 0, false, nil
	}
	qid, rng, found := strings.Cut(v, ":")
	firstS, lastS, found2 := strings.Cut(rng, "-")
	if !found || !found2 || qid == "" || len(qid) > 64 {
		return "", 0, 0, false, fmt.Errorf("bad %s header %q (want <queue id>:<first>-<last>)", otlp.BatchHeader, v)
	}
	f, err1 := strconv.ParseUint(firstS, 10, 64)
	l, err2 := strconv.ParseUint(lastS, 10, 64)
	if err1 != nil || err2 != nil || f > l || f == 0 {
		return "", 0, 0, false, fmt.Errorf("bad %s header %q (want <queue id>:<first>-<last>)", otlp.BatchHeader, v)
	}
	return deployment + "/" + sig.String() + "/" + qid, f, l, true, nil
}

// watermarksFile holds the last delivered sequence number per agent queue.
const watermarksFile = "ingest-watermarks.json"

func (in *Ingest) load() error {
	if in.s.Dir == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(in.s.Dir, watermarksFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ingest: read watermarks: %w", err)
	}
	var marks map[string]mark
	if err := json.Unmarshal(data, &marks); err != nil {
		return fmt.Errorf("ingest: read watermarks %s: %w", filepath.Join(in.s.Dir, watermarksFile), err)
	}
	for k, v := range marks {
		in.streams[k] = newStream(v.Last, v.Seen)
	}
	return nil
}

// mark is one stream's saved position.
type mark struct {
	Last uint64    `json:"last"`
	Seen time.Time `json:"seen"`
}

// streamRetention is how long a silent stream's position is kept. Agents drop queued
// data after their queue's max_age (72h by default), so nothing older can be resent;
// forgetting keeps the file from growing with every agent ever reinstalled.
const streamRetention = 30 * 24 * time.Hour

// Flush writes the watermarks if they changed. The manager calls it every second and
// at shutdown; a crash between two flushes can let a resent batch through once more.
func (in *Ingest) Flush() error {
	if in.s.Dir == "" {
		return nil
	}
	in.mu.Lock()
	if !in.dirty {
		in.mu.Unlock()
		return nil
	}
	marks := make(map[string]mark, len(in.streams))
	now := in.s.Clock.Now()
	for k, st := range in.streams {
		// st.last and st.seen are written under in.mu, so reading them here is consistent.
		if now.Sub(st.seen) > streamRetention {
			delete(in.streams, k)
			continue
		}
		marks[k] = mark{Last: st.last, Seen: st.seen}
	}
	in.dirty = false
	in.mu.Unlock()
	data, err := json.Marshal(marks)
	if err == nil {
		tmp := filepath.Join(in.s.Dir, watermarksFile+".tmp")
		if err = writeSync(tmp, data); err == nil {
			err = os.Rename(tmp, filepath.Join(in.s.Dir, watermarksFile))
		}
	}
	if err != nil {
		in.mu.Lock()
		in.dirty = true // try again at the next flush
		in.mu.Unlock()
		return fmt.Errorf("ingest: write watermarks: %w", err)
	}
	return nil
}

func writeSync(path string, data []byte) error {
	// 0600 like every file of the data directory: the positions name agents' queues.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ContextPath is where an agent reads its own deployment context with its token.
const ContextPath = "/v1/agent/context"

// ContextHandler answers an agent's request for its deployment context, so the agent
// can tag telemetry before it leaves the customer's cloud, and keep tagging it the
// same way while the manager is unreachable.
func ContextHandler(deps Deployments) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		token, ok := auth.BearerToken(r.Header.Get("Authorization"))
		id := ""
		if ok {
			id, ok = deps.Authenticate(token)
		}
		var dc otlp.Context
		if ok {
			dc, ok = deps.Context(id)
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="periscope"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"unknown or revoked deployment token"}` + "\n"))
			return
		}
		_ = json.NewEncoder(w).Encode(dc)
	})
}
