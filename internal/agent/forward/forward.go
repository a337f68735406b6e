// Package forward sends what the agent queued to the manager: OTLP/HTTP protobuf,
// compressed, with the deployment token, retried with exponential backoff and jitter
// until the manager takes it.
//
// Delivery is at-least-once and in order per signal. Every request carries a batch id,
// "<queue id>:<first seq>-<last seq>", and the forwarder records the last sequence
// number it may have in flight before sending, so after a crash it resends exactly
// what the manager may already hold and the manager can drop it as a duplicate.
package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/periscope-dev/periscope/internal/agent/reach"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/retry"
)

// Queue is what the forwarder needs of a durable queue.
type Queue interface {
	ID() string
	Read(ctx context.Context, after uint64, maxRecords, maxBytes int) ([]queue.Record, error)
	Ack(upTo uint64) error
	Acked() uint64
	SetInflight(last uint64) error
	Inflight() uint64
}

// Observer is told what the forwarder does, for self-metrics. Its methods must be
// safe for concurrent use and return quickly.
type Observer interface {
	// Sent reports records the manager accepted.
	Sent(sig otlp.Signal, records int, bytes int)
	// Retried reports a failed attempt that will be retried.
	Retried(sig otlp.Signal, reason string)
	// Dropped reports records the manager refused for good.
	Dropped(sig otlp.Signal, records int, reason string)
}

// Settings configure a Forwarder.
type Settings struct {
	// Endpoint is the manager's base URL; the signal's path is appended.
	Endpoint string
	// Token is the deployment token sent as a bearer token.
	Token string
	// TokenFunc, when set, is asked for the token before every request instead
	// of Token, so a token the manager rotates takes effect at once.
	TokenFunc func() string
	// Compression is gzip (default), zstd or none.
	Compression string
	// MaxBatchBytes bounds the uncompressed body of one request (default 4 MiB); it
	// must stay under the manager's max_request_bytes.
	MaxBatchBytes int
	// MaxBatchEntries bounds how many queued requests go in one request (default 1024).
	MaxBatchEntries int
	// Linger is how long the forwarder waits for more queued requests when what is
	// queued is smaller than MinBatchBytes (default 200ms): fewer, larger requests cost
	// the agent and the manager less per record. Negative sends at once.
	Linger time.Duration
	// MinBatchBytes is the size below which the forwarder lingers (default 512 KiB).
	MinBatchBytes int
	// Timeout bounds one attempt (default 30s).
	Timeout time.Duration
	// InitialBackoff and MaxBackoff bound the wait between attempts (defaults 500ms
	// and 30s); a longer Retry-After from the manager is still honoured.
	InitialBackoff, MaxBackoff time.Duration
	// Client sends requests; nil means a client with keep-alive to one host,
	// trusting the manager as TLS says.
	Client *http.Client
	// TLS is the client TLS towards an https:// manager when Client is nil;
	// nil means the system's CAs.
	TLS *tls.Config
	// Rand gives the jitter; nil means a randomly seeded source.
	Rand *rand.Rand
	// Logger gets one line per failed attempt; nil means slog.Default().
	Logger *slog.Logger
	// Reach, when set, is told when the manager cannot be reached at all (no
	// HTTP answer) and when it answers again; such failures are then logged
	// by it, once per change of state, and here only at debug level.
	Reach *reach.Tracker
	// Observer gets self-metrics; nil discards them.
	Observer Observer
}

// Forwarder sends one signal's queue to the manager.
type Forwarder struct {
	sig  otlp.Signal
	q    Queue
	s    Settings
	url  string
	gz   *gzip.Writer
	zs   *zstd.Encoder
	body bytes.Buffer
	// plain is reused to decompress queued entries.
	plain []byte
	// backoff spaces out the attempts at one batch.
	backoff retry.Backoff
}

// New returns a forwarder for the queue of sig.
func New(sig otlp.Signal, q Queue, s Settings) (*Forwarder, error) {
	if s.Endpoint == "" {
		return nil, errors.New("forward: no manager endpoint")
	}
	if s.MaxBatchBytes <= 0 {
		s.MaxBatchBytes = 4 << 20
	}
	if s.MaxBatchEntries <= 0 {
		s.MaxBatchEntries = 1024
	}
	if s.Timeout <= 0 {
		s.Timeout = 30 * time.Second
	}
	if s.Linger == 0 {
		s.Linger = 200 * time.Millisecond
	}
	if s.MinBatchBytes <= 0 {
		s.MinBatchBytes = 512 << 10
	}
	if s.InitialBackoff <= 0 {
		s.InitialBackoff = 500 * time.Millisecond
	}
	if s.MaxBackoff <= 0 {
		s.MaxBackoff = 30 * time.Second
	}
	if s.Client == nil {
		s.Client = &http.Client{
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
				TLSClientConfig: s.TLS, ForceAttemptHTTP2: true},
			// Following a redirect turns the POST into a GET without a body, which
			// would lose the batch or pass it off as delivered; report it instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if s.Rand == nil {
		s.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Observer == nil {
		s.Observer = discard{}
	}
	f := &Forwarder{sig: sig, q: q, s: s, url: strings.TrimRight(s.Endpoint, "/") + sig.Path()}
	// Jitter around the exponential step spreads a fleet's retries out.
	f.backoff = retry.Centred(s.InitialBackoff, s.MaxBackoff)
	f.backoff.Rand = s.Rand.Float64
	switch s.Compression {
	case "", "gzip":
		f.s.Compression = "gzip"
		f.gz, _ = gzip.NewWriterLevel(nil, gzip.BestSpeed)
	case "zstd":
		var err error
		if f.zs, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)); err != nil {
			return nil, fmt.Errorf("forward: zstd: %w", err)
		}
	case "none":
	default:
		return nil, fmt.Errorf("forward: compression %q (want gzip, zstd or none)", s.Compression)
	}
	return f, nil
}

// Run sends until ctx is done, then returns ctx's error. Records stay queued until the
// manager has taken them, so stopping at any point loses nothing.
func (f *Forwarder) Run(ctx context.Context) error {
	after := f.q.Acked()
	inflight := f.q.Inflight()
	for {
		recs, raw, err := f.read(ctx, after)
		if err != nil {
			return err
		}
		if f.s.Linger > 0 && inflight <= after && len(recs) < f.s.MaxBatchEntries && raw < f.s.MinBatchBytes {
			if !clock.Sleep(ctx, f.s.Linger) {
				return ctx.Err()
			}
			if recs, _, err = f.read(ctx, after); err != nil {
				return err
			}
		}
		// After a restart, first resend no more than what may have reached the
		// manager, so the batch ids match what it has seen.
		if inflight > after {
			n := 0
			for n < len(recs) && recs[n].Seq <= inflight {
				n++
			}
			if n > 0 {
				recs = recs[:n]
			}
		}
		last := recs[len(recs)-1].Seq
		if last > inflight {
			if err := f.retryQueue(ctx, "mark in-flight", func() error { return f.q.SetInflight(last) }); err != nil {
				return err
			}
			inflight = last
		}
		if err := f.deliver(ctx, recs); err != nil {
			return err
		}
		if err := f.retryQueue(ctx, "acknowledge", func() error { return f.q.Ack(last) }); err != nil {
			return err
		}
		after = last
	}
}

// read returns the next records after after that fit in one request, and their
// uncompressed size, retrying queue errors: a disk that fails for a while must not
// stop forwarding for good.
func (f *Forwarder) read(ctx context.Context, after uint64) ([]queue.Record, int, error) {
	var recs []queue.Record
	err := f.retryQueue(ctx, "read", func() error {
		var err error
		recs, err = f.q.Read(ctx, after, f.s.MaxBatchEntries, f.s.MaxBatchBytes)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	recs, raw := fit(recs, f.s.MaxBatchBytes)
	return recs, raw, nil
}

// retryQueue runs op until it succeeds, ctx ends or the queue is closed.
func (f *Forwarder) retryQueue(ctx context.Context, what string, op func() error) error {
	for {
		err := op()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, queue.ErrClosed):
			return fmt.Errorf("forward %s: %w", f.sig, err)
		}
		f.s.Logger.Error("agent queue failed; retrying", "signal", f.sig, "operation", what, "error", err)
		if !clock.Sleep(ctx, f.s.MaxBackoff) {
			return ctx.Err()
		}
	}
}

// fit returns the longest prefix of recs (at least one) whose uncompressed requests
// fit in limit bytes, and their uncompressed size. Entries are compressed in the queue,
// so the queue's own byte limit cannot stand in for the manager's request limit.
func fit(recs []queue.Record, limit int) ([]queue.Record, int) {
	total := 0
	for i, r := range recs {
		e, err := DecodeEntry(r.Data)
		if err != nil {
			return recs[:max(i, 1)], total // encode skips the bad entry
		}
		if i > 0 && total+e.RawBytes > limit {
			return recs[:i], total
		}
		total += e.RawBytes
	}
	return recs, total
}

// deliver sends recs until the manager accepts or refuses them for good; it only
// fails when ctx is done.
func (f *Forwarder) deliver(ctx context.Context, recs []queue.Record) error {
	records, raw, err := f.encode(recs)
	if err != nil {
		// Compressing into memory failed: nothing a retry would fix.
		f.s.Observer.Dropped(f.sig, records, "encode")
		f.s.Logger.Error("could not encode queued telemetry; dropping it", "signal", f.sig, "error", err)
		return nil
	}
	if f.body.Len() == 0 {
		return nil // every entry was unreadable
	}
	batch := fmt.Sprintf("%s:%d-%d", f.q.ID(), recs[0].Seq, recs[len(recs)-1].Seq)
	for attempt := 1; ; attempt++ {
		err := f.send(ctx, batch)
		var se *statusError
		switch {
		case err == nil:
			f.s.Reach.OK()
			f.s.Observer.Sent(f.sig, records, raw)
			return nil
		case errors.As(err, &se):
			f.s.Reach.OK() // it answered, if not as hoped
		default:
			f.s.Reach.Failed(err)
		}
		if errors.As(err, &se) && se.code == http.StatusConflict && se.delivered >= recs[0].Seq {
			// The manager already has the front of this batch (this agent lost its
			// own position): send only what follows.
			rest := recs
			for len(rest) > 0 && rest[0].Seq <= se.delivered {
				rest = rest[1:]
			}
			f.s.Logger.Warn("manager already had part of a batch; sending the rest", "signal", f.sig, "batch", batch,
				"delivered", se.delivered)
			if len(rest) == 0 {
				return nil
			}
			return f.deliver(ctx, rest)
		}
		if errors.As(err, &se) && se.code == http.StatusRequestEntityTooLarge && len(recs) > 1 {
			// The manager takes less per request than this agent sends: halve the
			// batch. Each half keeps its own in-order batch id range.
			half := len(recs) / 2
			f.s.Logger.Warn("manager refused a batch as too large; splitting it", "signal", f.sig, "batch", batch,
				"entries", len(recs))
			if err := f.deliver(ctx, recs[:half]); err != nil {
				return err
			}
			return f.deliver(ctx, recs[half:])
		}
		if retry.IsPermanent(err) {
			why := dropReason(err)
			f.s.Observer.Dropped(f.sig, records, why)
			if why == "unstorable" {
				// Holding on to it would stall every later record of the signal; the
				// manager keeps a copy for its operators.
				f.s.Logger.Error("manager cannot store a batch and has set it aside; moving on to the next",
					"signal", f.sig, "batch", batch, "records", records, "error", err)
			} else {
				f.s.Logger.Error("manager refused telemetry for good; dropping it", "signal", f.sig,
					"batch", batch, "records", records, "error", err)
			}
			return nil
		}
		f.s.Observer.Retried(f.sig, reason(err))
		// A longer Retry-After from the manager wins over the backoff.
		wait := f.backoff.Delay(attempt, err)
		level := slog.LevelWarn
		if se == nil && f.s.Reach != nil {
			level = slog.LevelDebug // the tracker says the manager is unreachable
		}
		f.s.Logger.Log(ctx, level, "sending telemetry failed; will retry", "signal", f.sig, "batch", batch,
			"attempt", attempt, "wait", wait.Round(time.Millisecond), "error", reach.Cause(err))
		if !clock.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// encode fills f.body with the queued requests as one request body. Concatenated
// export requests are one export request, so entries are decompressed from the
// queue's encoding and compressed together as one stream, which costs less per byte
// than compressing each on its own. Entries already in the wire encoding are copied as
// they are: gzip members and zstd frames concatenate into one valid stream.
func (f *Forwarder) encode(recs []queue.Record) (records, raw int, err error) {
	f.body.Reset()
	var w io.WriteCloser // the open compressed stream, if any
	closeStream := func() error {
		if w == nil {
			return nil
		}
		err := w.Close()
		w = nil
		return err
	}
	for _, r := range recs {
		e, err := DecodeEntry(r.Data)
		var plain []byte
		if err == nil && e.Encoding != f.s.Compression {
			if plain, err = e.Plain(f.plain); err == nil && e.Encoding != "none" {
				f.plain = plain[:0]
			}
		}
		if err != nil {
			// An entry that passed the queue's checksum but does not decode: skip it
			// alone rather than the whole batch.
			f.s.Observer.Dropped(f.sig, e.Records, "corrupt")
			f.s.Logger.Error("dropping an unreadable queued request", "signal", f.sig, "seq", r.Seq, "error", err)
			continue
		}
		records += e.Records
		raw += e.RawBytes
		if e.Encoding == f.s.Compression {
			if err := closeStream(); err != nil {
				return records, raw, err
			}
			f.body.Write(e.Payload)
			continue
		}
		if w == nil {
			w = f.openStream()
		}
		if _, err := w.Write(plain); err != nil {
			return records, raw, err
		}
	}
	return records, raw, closeStream()
}

// openStream starts a compressed stream in the wire encoding at the end of f.body.
func (f *Forwarder) openStream() io.WriteCloser {
	switch {
	case f.gz != nil:
		f.gz.Reset(&f.body)
		return f.gz
	case f.zs != nil:
		f.zs.Reset(&f.body)
		return f.zs
	}
	return nopCloser{&f.body}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// send makes one attempt. A failure carries how long the manager asked to wait, if it
// did (see retry.RetryAfter), and is permanent when resending cannot help.
func (f *Forwarder) send(ctx context.Context, batch string) error {
	ctx, cancel := context.WithTimeout(ctx, f.s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(f.body.Bytes()))
	if err != nil {
		return retry.Permanent(err)
	}
	req.Header.Set("Content-Type", otlp.ContentTypeProto)
	if f.s.Compression != "none" {
		req.Header.Set("Content-Encoding", f.s.Compression)
	}
	tok := f.s.Token
	if f.s.TokenFunc != nil {
		tok = f.s.TokenFunc()
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(otlp.BatchHeader, batch)
	resp, err := f.s.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", f.url, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return nil
	}
	if resp.StatusCode/100 == 3 {
		return fmt.Errorf("manager answered %d redirecting to %q: set the agent's manager URL to where it points",
			resp.StatusCode, resp.Header.Get("Location"))
	}
	se := &statusError{code: resp.StatusCode, msg: strings.TrimSpace(statusMessage(resp.Header.Get("Content-Type"), msg))}
	if resp.StatusCode == http.StatusConflict {
		se.delivered, _ = strconv.ParseUint(resp.Header.Get(otlp.DeliveredHeader), 10, 64)
		return se // handled by deliver, never dropped
	}
	err = se
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		http.StatusRequestTimeout,
		// A revoked or mistyped token is fixed by an operator, not by dropping data.
		http.StatusUnauthorized, http.StatusForbidden:
		return retry.ThrottleHeader(err, resp.Header, time.Now())
	}
	if resp.StatusCode/100 == 4 {
		return retry.Permanent(err)
	}
	return retry.ThrottleHeader(err, resp.Header, time.Now())
}

// statusMessage extracts the message of an OTLP error body, protobuf or JSON.
func statusMessage(ct string, body []byte) string {
	if strings.HasPrefix(ct, otlp.ContentTypeJSON) || ct == otlp.ContentTypeProto {
		return otlp.ParseStatusMessage(ct, body)
	}
	return string(body)
}

type statusError struct {
	code      int
	msg       string
	delivered uint64 // from a 409: what the manager already has from this queue
}

func (e *statusError) Error() string {
	return fmt.Sprintf("manager answered %d %s: %s", e.code, http.StatusText(e.code), e.msg)
}

// dropReason names a permanent failure for the dropped metric: the manager could
// not store the batch and set it aside (422), refused it otherwise, or no request
// could be made of it.
func dropReason(err error) string {
	var se *statusError
	switch {
	case errors.As(err, &se) && se.code == http.StatusUnprocessableEntity:
		return "unstorable"
	case se != nil:
		return "refused"
	}
	return "request"
}

// reason names a retryable failure for the retried metric.
func reason(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return strconv.Itoa(se.code)
	}
	return "network"
}

type discard struct{}

func (discard) Sent(otlp.Signal, int, int)       {}
func (discard) Retried(otlp.Signal, string)      {}
func (discard) Dropped(otlp.Signal, int, string) {}
