// Package commands runs the remote commands the manager invokes on this
// deployment, under the customer's rule, and reports their progress back.
//
// A command runs only when the release the agent was last offered declares it
// (the specs, kept in <data_dir>/commands/specs.json so a restart knows them
// before the offer comes again), the customer's [command.Rule] permits it, its
// parameters pass the schema and its deadline has not passed; anything else
// ends refused or expired with the reason. Each invocation id runs at most
// once, across restarts: the journal (<data_dir>/commands/journal.jsonl, 0600,
// synced) records "started" before the handler runs, so an id that was started
// when the agent died ends failed and is never run again, and a re-delivered
// id gets its known final update instead of a second run.
//
// Handlers are an executable with fixed arguments (never a shell; parameters
// in the environment or as JSON on stdin, killed with its whole process group
// at the timeout or the deadline) or an HTTP endpoint. Their output is kept up
// to the spec's limit, counted whole, and passed through the agent's redaction
// before it leaves. Updates go to a Sink: delivered, running, then the final
// state, which is kept and sent again until the manager acks it.
//
// Usage: New validates; Start reads the journal and the specs and starts the
// sending loop; Invoke, Ack and SetSpecs may be called from any goroutine;
// Shutdown stops running handlers (their invocations end failed), sends what
// it can and closes the journal.
package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/periscope-dev/periscope/internal/agent/statefile"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
)

// DirName is the runner's directory inside the agent's data directory.
const DirName = "commands"

// Dir returns the runner's directory for the agent data directory dataDir.
func Dir(dataDir string) string { return filepath.Join(dataDir, DirName) }

// Defaults and bounds.
const (
	// DefaultResendInterval is how often final updates the manager has not
	// acked are sent again.
	DefaultResendInterval = 30 * time.Second
	// DefaultMaxRunning bounds the handlers running at once.
	DefaultMaxRunning = 4
	// maxWaiting bounds the invocations accepted and not finished (running or
	// waiting for a slot); past it an invocation is refused as busy.
	maxWaiting = 256
	// maxOutbox bounds the updates waiting to be sent; past it the oldest
	// non-final ones are dropped (finals are kept in the journal anyway).
	maxOutbox = 4096
	// maxMessageBytes keeps one update message well under command.MaxWireBytes.
	maxMessageBytes = command.MaxWireBytes / 2
	specsName       = "specs.json"
	// ReasonInterrupted ends an invocation that was running when the agent died.
	ReasonInterrupted = "the agent stopped while the command ran, so its outcome is unknown; it was not run again"
	// ReasonShutdown ends an invocation whose handler the agent stopped at shutdown.
	ReasonShutdown = "the agent shut down while the command ran and stopped it; it was not run again"
)

// Sink sends updates to the manager. Send returns an error when they could not
// be handed over (no connection); the runner keeps them and tries again.
type Sink interface {
	Send(ctx context.Context, updates []command.Update) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, updates []command.Update) error

// Send calls f.
func (f SinkFunc) Send(ctx context.Context, updates []command.Update) error { return f(ctx, updates) }

// Event is one fact for the customer's local record.
type Event struct {
	// Kind is "received", "refused", "started" or "finished".
	Kind       string
	Invocation command.Invocation
	// State and Reason are the update the event reports.
	State  command.State
	Reason string
	Result *command.Result
}

// Recorder keeps the customer's local record of invocations.
type Recorder interface {
	Command(Event)
}

// Redactor applies the agent's effective redaction policy to output, returning
// it with what it removed counted by reason.
type Redactor func(s string) (string, map[string]int)

// Settings configure a Runner.
type Settings struct {
	// Dir holds the journal and the specs (Dir(data_dir)); created 0700.
	Dir string
	// Rule is the customer's rule.
	Rule command.Rule
	// Redact applies the agent's redaction to output; nil is refused by New:
	// output never leaves unredacted.
	Redact Redactor
	// Sink receives updates.
	Sink Sink
	// Record, when set, is told every invocation received, refused, started
	// and finished.
	Record Recorder
	// Clock stamps updates and judges deadlines (the wall clock when nil).
	Clock clock.Clock
	// Env is the environment executables start from; its PERISCOPE_*
	// variables are left out (os.Environ() when nil).
	Env []string
	// HTTPClient calls HTTP handlers (one that follows no redirect when nil).
	HTTPClient *http.Client
	// ResendInterval is DefaultResendInterval when zero.
	ResendInterval time.Duration
	// MaxRunning is DefaultMaxRunning when zero.
	MaxRunning int
	// JournalIDs and JournalAge bound what the journal remembers
	// (DefaultJournalIDs, DefaultJournalAge when zero).
	JournalIDs int
	JournalAge time.Duration
	Logger     *slog.Logger
}

// Runner runs invocations and reports their progress.
type Runner struct {
	s   Settings
	clk clock.Clock
	log *slog.Logger

	// smu serialises sending, so an update is never handed over twice at once.
	smu sync.Mutex

	mu    sync.Mutex
	j     *journal
	specs []command.Spec
	// offered is whether a release offer ever brought declarations (kept on
	// disk); until one has, the invocation's own declaration is used.
	offered  bool
	active   map[string]bool // ids accepted in this run and not finished
	outbox   []command.Update
	started  bool
	stopping bool
	slots    chan struct{}
	kick     chan struct{}
	resend   chan struct{}
	runCtx   context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	loopDone chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// New validates s and returns a runner that has started nothing.
func New(s Settings) (*Runner, error) {
	if s.Dir == "" {
		return nil, errors.New("commands: dir must be set")
	}
	if s.Redact == nil {
		return nil, errors.New("commands: a redactor must be set: output never leaves unredacted")
	}
	if s.Sink == nil {
		return nil, errors.New("commands: a sink must be set")
	}
	if err := s.Rule.Validate(); err != nil {
		return nil, fmt.Errorf("commands: %w", err)
	}
	if s.Env == nil {
		s.Env = os.Environ()
	}
	if s.HTTPClient == nil {
		s.HTTPClient = newHTTPClient()
	}
	if s.ResendInterval <= 0 {
		s.ResendInterval = DefaultResendInterval
	}
	if s.MaxRunning <= 0 {
		s.MaxRunning = DefaultMaxRunning
	}
	if s.JournalIDs <= 0 {
		s.JournalIDs = DefaultJournalIDs
	}
	if s.JournalAge <= 0 {
		s.JournalAge = DefaultJournalAge
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runner{s: s, clk: clock.Or(s.Clock), log: s.Logger, active: map[string]bool{},
		slots: make(chan struct{}, s.MaxRunning), kick: make(chan struct{}, 1), resend: make(chan struct{}, 1)}, nil
}

// Start reads the journal and the kept specs, ends what was running when the
// agent died as failed, and starts sending updates.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return errors.New("commands: started after shutdown")
	}
	if r.started {
		return nil
	}
	j, err := openJournal(r.s.Dir, r.s.JournalIDs, r.s.JournalAge)
	if err != nil {
		return err
	}
	specs, offered, err := loadSpecs(r.s.Dir)
	if err != nil {
		// The next offer brings them again; until then nothing is declared.
		r.log.Error("ignoring the kept command declarations until the next release offer", "err", err)
	}
	now := r.clk.Now()
	var interrupted []*entry
	for _, e := range j.entries {
		if e.started && e.final == nil {
			interrupted = append(interrupted, e)
		}
	}
	sort.Slice(interrupted, func(a, b int) bool { return interrupted[a].first.Before(interrupted[b].first) })
	for _, e := range interrupted {
		u := command.Update{ID: e.id, State: command.StateFailed, At: now, Reason: ReasonInterrupted}
		inv := e.invocation() // before the final line drops it
		if err := j.write(journalLine{Op: opFinal, ID: e.id, At: now, Update: &u}); err != nil {
			j.close()
			return err
		}
		r.log.Warn("a command was running when the agent stopped; reporting it failed, not running it again", "invocation", e.id)
		r.record(Event{Kind: "finished", Invocation: inv, State: u.State, Reason: u.Reason})
	}
	if err := j.compactIfDue(now, func(string) bool { return false }); err != nil {
		r.log.Warn("cannot compact the commands journal", "err", err)
	}
	r.j, r.specs, r.offered, r.started = j, specs, offered, true
	r.outbox = append(r.outbox, j.unacked()...)
	r.runCtx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.loopDone = make(chan struct{})
	go r.loop(r.runCtx)
	r.kickLocked()
	return nil
}

// SetSpecs makes specs (the latest offer's declarations) the commands that may
// run, and keeps them on disk for the next start.
func (r *Runner) SetSpecs(specs []command.Spec) error {
	if err := command.ValidateSpecs(specs); err != nil {
		return fmt.Errorf("commands: %w", err)
	}
	body, _ := json.Marshal(specs) // plain data cannot fail to marshal
	r.mu.Lock()
	defer r.mu.Unlock()
	r.specs, r.offered = append([]command.Spec(nil), specs...), true
	if err := statefile.Write(r.s.Dir, specsName, body); err != nil {
		return fmt.Errorf("commands: keep the declarations: %w", err)
	}
	return nil
}

// Specs returns the declarations in force.
func (r *Runner) Specs() []command.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]command.Spec(nil), r.specs...)
}

func loadSpecs(dir string) ([]command.Spec, bool, error) {
	path := filepath.Join(dir, specsName)
	b, err := statefile.Read(path, 4<<20)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	var specs []command.Spec
	if err == nil {
		err = json.Unmarshal(b, &specs)
	}
	if err == nil {
		err = command.ValidateSpecs(specs)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	return specs, true, nil
}

// Invoke takes invocations from the manager. It never waits for a handler.
func (r *Runner) Invoke(invs []command.Invocation) {
	for _, inv := range invs {
		r.invoke(inv)
	}
}

func (r *Runner) invoke(inv command.Invocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started || r.stopping {
		// The manager sends a queued invocation again until it hears of it.
		r.log.Warn("an invocation arrived while the commands runner is stopped; the manager will send it again", "invocation", inv.ID)
		return
	}
	if r.active[inv.ID] {
		return // running now: its updates follow
	}
	if e := r.j.get(inv.ID); e != nil {
		if e.final != nil {
			r.log.Info("an invocation arrived again; sending its known outcome, not running it again", "invocation", inv.ID, "state", e.final.State)
			r.queueLocked(*e.final)
		}
		return
	}
	now := r.clk.Now()
	r.record(Event{Kind: "received", Invocation: inv, State: command.StateDelivered})
	r.queueLocked(command.Update{ID: inv.ID, State: command.StateDelivered, At: now})
	spec, params, refusal := r.checkLocked(inv, now)
	if refusal != nil {
		r.finishLocked(inv, *refusal)
		return
	}
	if len(r.active) >= maxWaiting {
		r.finishLocked(inv, command.Update{ID: inv.ID, State: command.StateRefused, At: now,
			Reason: fmt.Sprintf("the agent is busy: %d invocations are running or waiting", len(r.active))})
		return
	}
	r.active[inv.ID] = true
	r.wg.Add(1)
	go r.run(inv, spec, params)
}

// checkLocked returns the spec inv runs and its typed parameters, or the
// final update that ends it without running: refused when it is not
// declared, not permitted or its parameters are invalid, else expired when
// its deadline has passed.
func (r *Runner) checkLocked(inv command.Invocation, now time.Time) (command.Spec, command.Params, *command.Update) {
	end := func(st command.State, reason string) *command.Update {
		return &command.Update{ID: inv.ID, State: st, At: now, Reason: clipReason(reason)}
	}
	spec, ok := command.Find(r.specs, inv.Command)
	switch {
	case ok:
	case !r.offered && inv.Spec != nil:
		// An agent without an update hook takes no offers, so it learns the
		// declaration with the invocation; the customer's rule and the
		// parameter check below still hold.
		spec = *inv.Spec
	case !r.offered:
		return spec, nil, end(command.StateRefused, fmt.Sprintf("command %q is not declared: this agent holds no release declarations", inv.Command))
	default:
		return spec, nil, end(command.StateRefused, fmt.Sprintf("command %q is not declared by the release this agent was offered", inv.Command))
	}
	if ok, why := r.s.Rule.Permits(inv.Command); !ok {
		return spec, nil, end(command.StateRefused, why)
	}
	// The manager checked them; the customer's side holds even if it did not.
	params, err := command.ValidateParams(spec, inv.Params)
	if err != nil {
		return spec, nil, end(command.StateRefused, "invalid parameters: "+err.Error())
	}
	if !inv.Deadline.IsZero() && !now.Before(inv.Deadline) {
		return spec, nil, end(command.StateExpired, fmt.Sprintf("its deadline %s had passed when it reached the agent", inv.Deadline.UTC().Format(time.RFC3339)))
	}
	return spec, params, nil
}

// finishLocked journals and sends a final update that ran nothing.
func (r *Runner) finishLocked(inv command.Invocation, u command.Update) {
	if err := r.j.write(journalLine{Op: opFinal, ID: inv.ID, At: u.At, Update: &u}); err != nil {
		r.log.Error("cannot journal an invocation's outcome; sending it anyway", "invocation", inv.ID, "err", err)
	}
	kind := "refused"
	if u.State != command.StateRefused {
		kind = "finished"
	}
	r.compactLocked()
	r.record(Event{Kind: kind, Invocation: inv, State: u.State, Reason: u.Reason})
	r.log.Info("command not run", "invocation", inv.ID, "command", inv.Command, "by", inv.By, "state", u.State, "reason", u.Reason)
	r.queueLocked(u)
}

// run waits for a slot, journals the start and runs the handler.
func (r *Runner) run(inv command.Invocation, spec command.Spec, params command.Params) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.active, inv.ID)
		r.mu.Unlock()
	}()
	ctx := r.runCtx
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done(): // ends it below, without running
	}
	r.mu.Lock()
	now := r.clk.Now()
	if ctx.Err() != nil {
		r.finishLocked(inv, command.Update{ID: inv.ID, State: command.StateFailed, At: now, Reason: "the agent shut down before the command could start"})
		r.mu.Unlock()
		return
	}
	if !inv.Deadline.IsZero() && !now.Before(inv.Deadline) {
		r.finishLocked(inv, command.Update{ID: inv.ID, State: command.StateExpired, At: now, Reason: "its deadline passed while it waited for a free slot"})
		r.mu.Unlock()
		return
	}
	// The start is on disk before the handler runs: whatever happens next,
	// this id never runs again.
	if err := r.j.write(journalLine{Op: opStarted, ID: inv.ID, At: now, Invocation: &inv}); err != nil {
		r.finishLocked(inv, command.Update{ID: inv.ID, State: command.StateFailed, At: now,
			Reason: clipReason("the agent could not record the start, so it did not run the command: " + err.Error())})
		r.mu.Unlock()
		return
	}
	r.queueLocked(command.Update{ID: inv.ID, State: command.StateRunning, At: now})
	r.mu.Unlock()
	r.record(Event{Kind: "started", Invocation: inv, State: command.StateRunning})
	r.log.Info("running command", "invocation", inv.ID, "command", inv.Command, "by", inv.By, "reason", inv.Reason)

	timeout := spec.EffectiveTimeout()
	limit, byDeadline := timeout, false
	if !inv.Deadline.IsZero() {
		if left := inv.Deadline.Sub(now); left < limit {
			limit, byDeadline = left, true
		}
	}
	hctx, cancel := context.WithTimeout(ctx, limit)
	var o outcome
	if spec.Exec != nil {
		o = runExec(hctx, spec, inv, params, r.s.Env)
	} else {
		o = runHTTP(hctx, r.s.HTTPClient, spec, params)
	}
	timedOut := errors.Is(hctx.Err(), context.DeadlineExceeded)
	cancel()
	done := r.clk.Now()
	u := command.Update{ID: inv.ID, At: done, Result: r.result(o, done.Sub(now))}
	switch {
	case o.ok:
		u.State = command.StateSucceeded
	case ctx.Err() != nil:
		u.State, u.Reason = command.StateFailed, ReasonShutdown
	case timedOut && byDeadline:
		u.State, u.Reason = command.StateExpired, fmt.Sprintf("stopped at the invocation's deadline, after %s", limit.Round(time.Millisecond))
	case timedOut:
		u.State, u.Reason = command.StateFailed, fmt.Sprintf("timed out after %s, the command's declared timeout", timeout)
	default:
		u.State, u.Reason = command.StateFailed, o.reason
	}
	u.Reason = clipReason(u.Reason)
	r.mu.Lock()
	if err := r.j.write(journalLine{Op: opFinal, ID: inv.ID, At: done, Update: &u}); err != nil {
		r.log.Error("cannot journal a command's outcome; sending it anyway", "invocation", inv.ID, "err", err)
	}
	r.queueLocked(u)
	r.compactLocked()
	r.mu.Unlock()
	r.record(Event{Kind: "finished", Invocation: inv, State: u.State, Reason: u.Reason, Result: u.Result})
	r.log.Info("command finished", "invocation", inv.ID, "command", inv.Command, "state", u.State, "duration", u.Result.Duration,
		"output_bytes", u.Result.OutputBytes)
}

// result redacts the handler's output and describes it.
func (r *Runner) result(o outcome, took time.Duration) *command.Result {
	res := &command.Result{ExitCode: o.exitCode, Signal: o.signal, HTTPStatus: o.status, Duration: took}
	if o.out == nil {
		return res
	}
	limit := o.out.limit
	res.OutputBytes, res.Truncated = o.out.total, o.out.truncated()
	text := strings.ToValidUTF8(string(o.out.buf), "\uFFFD")
	text, counts := r.s.Redact(text)
	if len(text) > limit {
		// Markers can be longer than what they replace: the limit still holds.
		text, res.Truncated = cutUTF8(text, limit), true
	}
	if len(counts) > 0 {
		res.Redacted = counts
	}
	res.Output = text
	sum := sha256.Sum256([]byte(text))
	res.OutputSHA256 = hex.EncodeToString(sum[:])
	return res
}

func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s[max(0, len(s)-utf8.UTFMax):]) {
		s = s[:len(s)-1]
	}
	return s
}

func clipReason(s string) string { return cutUTF8(s, command.MaxReasonBytes) }

func (r *Runner) record(ev Event) {
	if r.s.Record != nil {
		r.s.Record.Command(ev)
	}
}

// queueLocked adds u to the updates to send and wakes the sending loop.
func (r *Runner) queueLocked(u command.Update) {
	if len(r.outbox) >= maxOutbox {
		for i, o := range r.outbox {
			if !o.State.Final() {
				r.outbox = append(r.outbox[:i], r.outbox[i+1:]...)
				break
			}
		}
	}
	if len(r.outbox) < maxOutbox {
		r.outbox = append(r.outbox, u)
	}
	r.kickLocked()
}

func (r *Runner) kickLocked() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Ack drops the final updates the manager has stored: they are not sent again.
func (r *Runner) Ack(ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started || r.j == nil {
		return
	}
	acked := map[string]bool{}
	for _, id := range ids {
		e := r.j.get(id)
		if e == nil || e.final == nil || e.acked {
			continue
		}
		if err := r.j.write(journalLine{Op: opAcked, ID: id, At: r.clk.Now()}); err != nil {
			r.log.Warn("cannot journal an ack; the outcome will be sent again", "invocation", id, "err", err)
			continue
		}
		acked[id] = true
	}
	if len(acked) == 0 {
		return
	}
	kept := r.outbox[:0]
	for _, u := range r.outbox {
		if !acked[u.ID] {
			kept = append(kept, u)
		}
	}
	r.outbox = kept
	r.compactLocked()
}

// compactLocked keeps the journal within its bounds; a failure leaves it as
// it is, longer, and is tried again after the next outcome.
func (r *Runner) compactLocked() {
	if err := r.j.compactIfDue(r.clk.Now(), func(id string) bool { return r.active[id] }); err != nil {
		r.log.Warn("cannot compact the commands journal", "err", err)
	}
}

// Resend sends every final update the manager has not acked again, soon: the
// agent calls it when it (re)connects.
func (r *Runner) Resend() {
	select {
	case r.resend <- struct{}{}:
	default:
	}
}

// loop sends what is queued, and the unacked finals every ResendInterval.
func (r *Runner) loop(ctx context.Context) {
	defer close(r.loopDone)
	t := time.NewTicker(r.s.ResendInterval)
	defer t.Stop()
	for {
		resend := false
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-r.resend:
			resend = true
		case <-t.C:
			resend = true
		}
		r.sendPending(ctx, resend)
	}
}

// sendPending hands the outbox (and, on resend, every unacked final) to the
// sink in messages within their bounds. What the sink does not take stays.
func (r *Runner) sendPending(ctx context.Context, resend bool) {
	r.smu.Lock()
	defer r.smu.Unlock()
	r.mu.Lock()
	if resend && r.j != nil {
		queued := map[string]bool{}
		for _, u := range r.outbox {
			if u.State.Final() {
				queued[u.ID] = true
			}
		}
		for _, u := range r.j.unacked() {
			if !queued[u.ID] {
				r.outbox = append(r.outbox, u)
			}
		}
	}
	r.mu.Unlock()
	for {
		r.mu.Lock()
		batch := nextBatch(r.outbox)
		r.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		if err := r.s.Sink.Send(ctx, batch); err != nil {
			r.log.Debug("cannot send command updates yet; keeping them", "updates", len(batch), "err", err)
			return
		}
		r.mu.Lock()
		// Appends go to the end and Ack may have dropped some of the batch
		// meanwhile: drop what was sent by identity, in order.
		k := 0
		kept := r.outbox[:0]
		for _, u := range r.outbox {
			if k < len(batch) && sameUpdate(u, batch[k]) {
				k++
				continue
			}
			kept = append(kept, u)
		}
		r.outbox = kept
		r.mu.Unlock()
	}
}

func sameUpdate(a, b command.Update) bool {
	return a.ID == b.ID && a.State == b.State && a.At.Equal(b.At)
}

// nextBatch takes the first updates of outbox that fit one message.
func nextBatch(outbox []command.Update) []command.Update {
	var batch []command.Update
	size := 0
	for _, u := range outbox {
		n := 256
		if u.Result != nil {
			n += len(u.Result.Output) * 6 / 5 // JSON escapes, roughly
		}
		n += len(u.Reason)
		if len(batch) > 0 && (size+n > maxMessageBytes || len(batch) >= command.MaxPerMessage) {
			break
		}
		batch = append(batch, u)
		size += n
	}
	return batch
}

// Shutdown stops running handlers (their invocations end failed), sends what
// it can within ctx and closes the journal. It is idempotent and safe without
// Start.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopping = true
		cancel, loopDone := r.cancel, r.loopDone
		r.mu.Unlock()
		if cancel == nil {
			return
		}
		cancel()
		done := make(chan struct{})
		go func() { r.wg.Wait(); <-loopDone; close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			r.stopErr = fmt.Errorf("commands: handlers still stopping: %w", ctx.Err())
			return
		}
		// One last try, within the caller's deadline; what is not sent is in
		// the journal and goes at the next start.
		r.sendPending(ctx, false)
		r.mu.Lock()
		r.stopErr = r.j.close()
		r.mu.Unlock()
	})
	return r.stopErr
}
