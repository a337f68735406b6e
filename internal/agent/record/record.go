package record

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp"
)

// DirName is the record's directory inside the agent's data directory.
const DirName = "record"

// Dir returns the record's directory for the agent data directory dataDir.
func Dir(dataDir string) string { return filepath.Join(dataDir, DirName) }

// Defaults and limits of Options.
const (
	DefaultMaxFileBytes  = 8 << 20
	DefaultMaxFiles      = 8
	DefaultFlushInterval = 10 * time.Second
	// MinMaxFileBytes keeps a file larger than many lines, so rotation bounds disk
	// use rather than making a file per line.
	MinMaxFileBytes = 4 << 10
	// MaxKeysPerInterval bounds the distinct (signal, kind, key) triples one flush
	// interval aggregates; removals under further keys count under OtherKey.
	MaxKeysPerInterval = 1000
)

// In-memory bounds on sent batches waiting for the flush loop: past kickSent the
// loop is woken early; past maxPendingSent further batches are folded into one line
// per signal and destination, so memory stays bounded however fast batches come.
const (
	kickSent       = 4096
	maxPendingSent = 16384
	maxSentFolds   = 64
	maxDestCache   = 16
)

// Options configures a Record.
type Options struct {
	// Dir is the record's directory, normally Dir(data_dir); created 0700, files 0600.
	Dir string
	// MaxFileBytes rotates a file past this size (default 8 MiB, at least 4 KiB).
	MaxFileBytes int64
	// MaxFiles is how many files each stream keeps, the newest (default 8); the
	// oldest is deleted, so a stream takes at most MaxFiles×MaxFileBytes.
	MaxFiles int
	// FlushInterval is how often aggregated removals and waiting batches are
	// written (default 10s): what a crash can lose.
	FlushInterval time.Duration
	// Clock stamps the lines (default the wall clock).
	Clock clock.Clock
	// Logger reports write failures (default discards).
	Logger *slog.Logger
}

// Removal is what redaction took out of one request under one kind and key: never
// the value itself.
type Removal struct {
	// Kind is the detector or rule: "email", "card", "ip", "bearer", "api_key",
	// "jwt", "password", "custom", "url", "sql", "attribute", "secret",
	// "truncated" or "dropped_record".
	Kind string
	// Key is the attribute key, or "log.body", "span.name", ….
	Key string
	// Count is how many values (or records, for dropped_record) it removed.
	Count int
}

// Record keeps the agent's local record of what it sent and removed. Its methods are
// safe for concurrent use.
type Record struct {
	o     Options
	log   *slog.Logger
	clock clock.Clock

	mu       sync.Mutex
	sent     []sentLine
	folds    map[sentKey]*sentLine // batches past maxPendingSent, folded
	removed  map[removalKey]int64
	distinct int               // keys in removed other than OtherKey
	commands []CommandEvent    // invocation events waiting for the flush loop
	lostCmds int               // events dropped past maxPendingCommands
	dests    map[string]string // destination as given → as written, so a URL is parsed once

	// wmu serialises flushes, so lines reach the files in the order they were
	// taken, and guards the lifecycle fields below it.
	wmu      sync.Mutex
	sentS    *stream
	removedS *stream
	cmdS     *stream
	failing  bool
	closed   bool // the files are closed: nothing more is written
	stopping bool // Shutdown has begun: Start refuses
	kick     chan struct{}
	cancel   context.CancelFunc
	loopDone chan struct{}
	shutdown sync.Once
	shutErr  error
}

type sentKey struct{ signal, dest string }

type removalKey struct{ signal, kind, key string }

// Open prepares the record in o.Dir, creating the directory and reading where each
// stream left off. It starts nothing: lines are written by Start's loop or by Flush.
func Open(o Options) (*Record, error) {
	if o.Dir == "" {
		return nil, errors.New("record: dir must be set")
	}
	switch {
	case o.MaxFileBytes == 0:
		o.MaxFileBytes = DefaultMaxFileBytes
	case o.MaxFileBytes < MinMaxFileBytes:
		return nil, fmt.Errorf("record: max file bytes %d is under the minimum %d", o.MaxFileBytes, MinMaxFileBytes)
	}
	switch {
	case o.MaxFiles == 0:
		o.MaxFiles = DefaultMaxFiles
	case o.MaxFiles < 1:
		return nil, fmt.Errorf("record: max files %d must be at least 1", o.MaxFiles)
	}
	switch {
	case o.FlushInterval == 0:
		o.FlushInterval = DefaultFlushInterval
	case o.FlushInterval < 0:
		return nil, fmt.Errorf("record: flush interval %s must be positive", o.FlushInterval)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("record: create %s: %w", o.Dir, err)
	}
	r := &Record{o: o, log: o.Logger, clock: clock.Or(o.Clock), removed: map[removalKey]int64{},
		folds: map[sentKey]*sentLine{}, dests: map[string]string{}, kick: make(chan struct{}, 1)}
	var err error
	if r.sentS, err = openStream(o.Dir, sentPrefix, o.MaxFileBytes, o.MaxFiles); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if r.removedS, err = openStream(o.Dir, removedPrefix, o.MaxFileBytes, o.MaxFiles); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if r.cmdS, err = openStream(o.Dir, commandPrefix, o.MaxFileBytes, o.MaxFiles); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	return r, nil
}

// Start runs the flush loop until Shutdown or until ctx ends. A second Start does
// nothing; a Start after Shutdown is an error.
func (r *Record) Start(ctx context.Context) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.stopping {
		return errors.New("record: started after shutdown")
	}
	if r.cancel == nil {
		ctx, r.cancel = context.WithCancel(ctx)
		r.loopDone = make(chan struct{})
		go r.loop(ctx)
	}
	return nil
}

func (r *Record) loop(ctx context.Context) {
	defer close(r.loopDone)
	t := time.NewTicker(r.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
		_ = r.Flush() // Flush logs its failures; the loop keeps going
	}
}

// Shutdown stops the flush loop, writes what is pending and closes the files. It
// is idempotent and safe without Start.
func (r *Record) Shutdown(ctx context.Context) error {
	r.shutdown.Do(func() {
		r.wmu.Lock()
		r.stopping = true
		cancel, loopDone := r.cancel, r.loopDone
		r.wmu.Unlock()
		if cancel != nil {
			cancel()
			select {
			case <-loopDone:
			case <-ctx.Done():
				r.shutErr = fmt.Errorf("record: flush loop did not stop: %w", ctx.Err())
				return
			}
		}
		err := r.Flush()
		r.wmu.Lock()
		r.closed = true
		r.shutErr = errors.Join(err, r.sentS.close(), r.removedS.close(), r.cmdS.close())
		r.wmu.Unlock()
	})
	return r.shutErr
}

// Sent records one batch the manager accepted: its signal ("logs", "traces",
// "metrics"), records, bytes sent and destination URL (its user info, query and
// fragment are left out, as they may hold credentials).
func (r *Record) Sent(signal string, records, bytes int, destination string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Taken under the lock, so lines are written in time order; UTC drops the
	// monotonic reading, so a wall clock stepped back shows as such.
	now := r.clock.Now().UTC()
	dest, ok := r.dests[destination]
	if !ok {
		if len(r.dests) >= maxDestCache {
			clear(r.dests)
		}
		dest = cleanDestination(destination)
		r.dests[strings.Clone(destination)] = dest
	}
	l := sentLine{Time: now, Signal: internSignal(signal), Records: int64(max(records, 0)), Bytes: int64(max(bytes, 0)),
		Batches: 1, Destination: dest}
	if len(r.sent) < maxPendingSent {
		r.sent = append(r.sent, l)
		if len(r.sent) == kickSent {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		return
	}
	k := sentKey{l.Signal, l.Destination}
	f, ok := r.folds[k]
	if !ok && len(r.folds) >= maxSentFolds {
		k.dest = OtherKey
		f, ok = r.folds[k]
	}
	if !ok {
		f = &sentLine{Signal: k.signal, Destination: k.dest}
		r.folds[k] = f
	}
	f.Time, f.Records, f.Bytes, f.Batches = now, f.Records+l.Records, f.Bytes+l.Bytes, f.Batches+1
}

// internSignal returns the agent's own signal names without copying them, and
// copies (and bounds) any other.
func internSignal(s string) string {
	for _, sig := range otlp.Signals {
		if known := sig.String(); s == known {
			return known
		}
	}
	return clip(s, maxSignalLen)
}

// Removed records what redaction took out of one request. It only adds to counts in
// memory, keyed by signal, kind and key; keys are cut to 256 bytes and copied, and
// past 1,000 distinct keys in one interval the rest count under OtherKey.
func (r *Record) Removed(signal string, items []Removal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, it := range items {
		if it.Count <= 0 {
			continue
		}
		k := removalKey{signal, it.Kind, it.Key}
		if n, ok := r.removed[k]; ok { // the common case: no allocation
			r.removed[k] = n + int64(it.Count)
			continue
		}
		k = removalKey{clip(signal, maxSignalLen), clip(it.Kind, maxKindLen), clip(it.Key, maxKeyLen)}
		if _, ok := r.removed[k]; !ok && k.key != OtherKey {
			if r.distinct >= MaxKeysPerInterval {
				k.key = OtherKey
			} else {
				r.distinct++
			}
		}
		r.removed[k] += int64(it.Count)
	}
}

// Flush writes what is pending now. The flush loop calls it every FlushInterval;
// the agent may call it too (at shutdown, Shutdown does). A failure is logged and
// returned, and the lines it could not write are lost: the record is a report, not
// a queue.
func (r *Record) Flush() error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return nil
	}
	r.mu.Lock()
	now := r.clock.Now().UTC() // not before any batch taken below
	sent, folds, removed, cmds, lost := r.sent, r.folds, r.removed, r.commands, r.lostCmds
	r.sent, r.removed, r.distinct = make([]sentLine, 0, len(sent)), map[removalKey]int64{}, 0
	r.commands, r.lostCmds = nil, 0
	if len(folds) > 0 {
		r.folds = map[sentKey]*sentLine{}
	}
	r.mu.Unlock()

	sentLines := make([]timedLine, 0, len(sent)+len(folds))
	for _, l := range sent {
		sentLines = append(sentLines, encode(l.Time, l))
	}
	for _, l := range folds {
		sentLines = append(sentLines, encode(now, l)) // after every batch taken above
	}
	removedLines := make([]timedLine, 0, len(removed))
	for k, n := range removed {
		removedLines = append(removedLines, encode(now, removedLine{Time: now, Signal: k.signal, Kind: k.kind, Key: k.key, Count: n}))
	}
	cmdLines := make([]timedLine, 0, len(cmds))
	for _, c := range cmds {
		cmdLines = append(cmdLines, encode(c.Time, c))
	}
	if lost > 0 {
		r.log.Warn("remote command events came faster than the record writes them; some were not recorded", "lost", lost)
	}
	err := errors.Join(r.sentS.write(sentLines), r.removedS.write(removedLines), r.cmdS.write(cmdLines))
	switch {
	case err != nil:
		r.log.Warn("could not write the local record of what was sent and removed", "dir", r.o.Dir,
			"lost_sent_lines", len(sentLines), "lost_removed_lines", len(removedLines), "error", err)
		r.failing = true
	case r.failing:
		r.log.Info("writing the local record of what was sent and removed again", "dir", r.o.Dir)
		r.failing = false
	}
	return err
}

// encode writes v as one JSON line; the line types always encode.
func encode(t time.Time, v any) timedLine {
	if l, ok := v.(*sentLine); ok {
		c := *l
		c.Time = t
		v = c
	}
	b, _ := json.Marshal(v)
	return timedLine{t: t, b: append(b, '\n')}
}

// cleanDestination keeps a destination URL's scheme, host and path: user info and
// query may hold credentials, and the record is there to be shown.
func cleanDestination(dest string) string {
	u, err := url.Parse(dest)
	if err != nil || u.Host == "" {
		return clip(dest, maxDestLen)
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return clip(u.String(), maxDestLen)
}
