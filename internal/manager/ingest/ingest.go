// Package ingest is the manager's side of the telemetry pipeline: it takes OTLP export
// requests from deployments, proves who sent each one by its deployment token,
// overwrites the deployment context on every resource from the manager's own records,
// drops batches it has already taken, and hands the rest to its sinks (the exporters
// and the telemetry store).
//
// Each sink sees each batch once: ingest keeps every sink's delivered position per
// agent queue, so when one sink refuses a batch and the agent resends it, only the
// sinks that have not taken it get it again. A batch a sink refuses for good
// (consumer.KindUnstorable) is set aside in a dead-letter directory, counted, and
// answered so, and the agent moves on to what follows.
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

// Sink is one destination of accepted batches. Its name keys its delivered
// positions on disk, so it must stay the same across restarts and be unique.
type Sink struct {
	// Name identifies the sink, as in "exporter/s3-archive" or "telstore".
	Name string
	// Sink takes the batches.
	Sink consumer.Sink
}

// Settings configure an Ingest.
type Settings struct {
	// Dir holds the delivered-batch watermarks, so duplicates are recognised across
	// restarts, and the dead-letter directory (DeadLetterDir) where batches a sink
	// refuses for good are set aside. Empty keeps neither.
	Dir string
	// DeadLetterBytes bounds the dead-letter directory; the oldest batches go first
	// (default DefaultDeadLetterBytes).
	DeadLetterBytes int64
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
	sinks []Sink
	s     Settings
	dead  *deadLetter

	mu      sync.Mutex
	streams map[string]*stream
	dirty   bool
	// flushMu keeps two flushes from writing the watermarks file at once.
	flushMu sync.Mutex

	records    *prometheus.CounterVec
	requests   *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	unstorable *prometheus.CounterVec
}

// stream is one agent queue's delivery position.
type stream struct {
	// turn is held (a token in the channel taken) while a batch of the stream is
	// handed to sinks; a channel so a waiting retry can give up with its request.
	turn chan struct{}
	// last is the last sequence number every sink has taken (or set aside).
	last uint64
	// sinks holds, by sink name, positions of sinks that are ahead of last: they
	// took a batch another sink refused, and must not take its resend again.
	sinks map[string]uint64
	seen  time.Time // when a batch of the stream last arrived; written under Ingest.mu
}

func newStream(last uint64, sinks map[string]uint64, seen time.Time) *stream {
	st := &stream{turn: make(chan struct{}, 1), last: last, sinks: sinks, seen: seen}
	st.turn <- struct{}{}
	return st
}

// New returns an Ingest reading deployments from deps and handing batches to sinks.
// It loads the watermarks kept in s.Dir. Sink names must be unique.
func New(deps Deployments, sinks []Sink, s Settings) (*Ingest, error) {
	if s.Clock == nil {
		s.Clock = clock.Real{}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	seen := map[string]bool{}
	for _, k := range sinks {
		if k.Name == "" || seen[k.Name] {
			return nil, fmt.Errorf("ingest: sink name %q is empty or used twice", k.Name)
		}
		seen[k.Name] = true
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
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_ingest_resent_batches_skipped_total",
			Help: "Resent batches a sink had taken already (another sink refused them), not handed to it again, by sink.",
		}, []string{"sink"}),
		unstorable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "periscope_ingest_unstorable_batches_total",
			Help: "Batches a sink refused for good (they fail identically on every resend), set aside and answered so, by sink and signal.",
		}, []string{"sink", "signal"}),
	}
	if s.Dir != "" {
		in.dead = newDeadLetter(filepath.Join(s.Dir, DeadLetterDir), s.DeadLetterBytes, s.Clock)
	}
	if s.Registerer != nil {
		cs := []prometheus.Collector{in.records, in.requests, in.duplicates, in.skipped, in.unstorable}
		if in.dead != nil {
			cs = append(cs, in.dead.collectors()...)
		}
		for _, c := range cs {
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
	case consumer.KindMalformed, consumer.KindTooLarge, consumer.KindUnstorable:
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
		// Without a batch id a resend cannot be told from a new batch: every sink
		// gets it again.
		_, err := in.hand(ctx, batch, "", nil, 0)
		return err
	}
	batch.Stream, batch.First, batch.Last = key, first, last
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
	took, err := in.hand(ctx, batch, r.Header(otlp.BatchHeader), st, last)
	in.mu.Lock()
	st.seen = batch.Received
	if took {
		in.dirty = true
	}
	if k := consumer.KindOf(err); k == consumer.KindUnavailable || k == consumer.KindAlreadyDelivered {
		if took {
			// Some sinks took the batch and another did not: the agent resends it, and
			// only that sink's position tells the others to skip it, so write it now
			// rather than risk a crash before the next flush.
			in.mu.Unlock()
			if ferr := in.Flush(); ferr != nil {
				in.s.Logger.Error("could not save delivered-batch positions; a crash now would export the batch twice",
					"error", ferr)
			}
			return err
		}
		in.mu.Unlock()
		return err
	}
	// Every sink has taken the batch or set it aside: delivery moves on.
	st.last = last
	clear(st.sinks)
	in.dirty = true
	in.mu.Unlock()
	return err
}

// hand passes a batch to every sink that has not taken it yet (by st's positions,
// when st is not nil), and reports whether a sink took it. A sink that refuses it
// for good gets it set aside; one that fails otherwise is retried with the resend.
// The error is unavailable if any sink should be retried, else already
// delivered if a sink holds the start of the batch (see below), else
// unstorable if any sink refused the batch for good, else nil.
func (in *Ingest) hand(ctx context.Context, b consumer.Batch, id string, st *stream, last uint64) (took bool, err error) {
	var retryErr, partErr, deadErr error
	for _, s := range in.sinks {
		if st != nil {
			in.mu.Lock()
			pos := st.sinks[s.Name]
			in.mu.Unlock()
			if last <= pos {
				in.skipped.WithLabelValues(s.Name).Inc()
				continue
			}
		}
		err := s.Sink.Consume(ctx, b)
		switch consumer.KindOf(err) {
		case 0:
		case consumer.KindUnstorable:
			in.unstorable.WithLabelValues(s.Name, b.Signal.String()).Inc()
			where := in.setAside(b, id, s.Name, err)
			in.s.Logger.Error("a sink refused a batch for good; set it aside and told the sender to move on",
				"sink", s.Name, "deployment", b.DeploymentID, "signal", b.Signal, "batch", id, "records", b.Records,
				"set_aside", where, "error", err)
			if deadErr == nil {
				deadErr = consumer.Unstorable("manager cannot store this batch, and never will (set aside): " + err.Error())
			}
		case consumer.KindAlreadyDelivered:
			// A sink shared by replicas (the PostgreSQL telemetry store) holds the
			// start of the batch: another replica stored it before the agent failed
			// over and re-cut its batches. The agent resends only the rest, which
			// this sink then takes and the others skip by their positions.
			if partErr == nil {
				partErr = err
			}
			continue
		default:
			in.s.Logger.Error("could not keep telemetry; the sender will retry", "sink", s.Name,
				"deployment", b.DeploymentID, "signal", b.Signal, "error", err)
			if retryErr == nil {
				retryErr = consumer.Unavailable("manager could not store the batch: "+err.Error(), 5*time.Second)
			}
			continue
		}
		took = true
		if st != nil {
			in.mu.Lock()
			if st.sinks == nil {
				st.sinks = map[string]uint64{}
			}
			st.sinks[s.Name] = last
			in.mu.Unlock()
		}
	}
	if retryErr != nil {
		return took, retryErr
	}
	if partErr != nil {
		return took, partErr
	}
	if deadErr == nil {
		in.records.WithLabelValues(b.Signal.String()).Add(float64(b.Records))
	}
	return took, deadErr
}

// setAside keeps a batch a sink refused for good in the dead-letter directory and
// returns where, or "" when it could not (the reason is logged).
func (in *Ingest) setAside(b consumer.Batch, id, sink string, reason error) string {
	if in.dead == nil {
		return ""
	}
	path, err := in.dead.add(b, id, sink, reason)
	if err != nil {
		in.s.Logger.Error("could not set aside a batch refused for good; it is lost", "sink", sink,
			"deployment", b.DeploymentID, "signal", b.Signal, "error", err)
		return ""
	}
	return path
}

func (in *Ingest) stream(key string) *stream {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := in.streams[key]
	if st == nil {
		st = newStream(0, nil, in.s.Clock.Now())
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
		in.streams[k] = newStream(v.Last, v.Sinks, v.Seen)
	}
	return nil
}

// mark is one stream's saved position.
type mark struct {
	Last uint64    `json:"last"`
	Seen time.Time `json:"seen"`
	// Sinks holds the positions of sinks ahead of Last, by sink name.
	Sinks map[string]uint64 `json:"sinks,omitempty"`
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
	in.flushMu.Lock()
	defer in.flushMu.Unlock()
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
		m := mark{Last: st.last, Seen: st.seen}
		for name, pos := range st.sinks {
			if pos > st.last {
				if m.Sinks == nil {
					m.Sinks = map[string]uint64{}
				}
				m.Sinks[name] = pos
			}
		}
		marks[k] = m
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
