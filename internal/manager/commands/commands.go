// Package commands is the manager's side of remote commands: it checks an
// operator's invocation against each target's declarations, its customer's rule
// and the parameter schema before anything is queued, hands queued invocations
// to agents (at once over a push connection, in the reply to the next check-in
// otherwise), stores what agents report back, forward only and only for their
// own deployment, expires what outlives its deadline, and writes every step to
// the audit log.
package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/store"
)

// Errors callers branch on with errors.Is.
var (
	// ErrInvalid means the request itself is wrong (no reason, an empty
	// selection, too many targets).
	ErrInvalid = errors.New("invalid")
	// ErrNotFound means no such invocation or deployment.
	ErrNotFound = store.ErrNotFound
	// ErrConflict means the invocation is not in a state that allows the change.
	ErrConflict = store.ErrConflict
)

// Bounds.
const (
	// MaxTargets bounds the deployments one request runs a command on.
	MaxTargets = 1000
	// DefaultDeliveryAllowance is how long an invocation may wait for its agent
	// to pick it up, on top of the command's own timeout.
	DefaultDeliveryAllowance = 10 * time.Minute
	// MaxDeliveryAllowance bounds what a request may ask for.
	MaxDeliveryAllowance = 24 * time.Hour
	// MinDeliveryAllowance keeps a deadline reachable by a polling agent.
	MinDeliveryAllowance = time.Second
	// redeliverAfter is when an invocation delivered but not started is sent
	// again (the agent runs an id at most once, so a resend is safe).
	redeliverAfter = time.Minute
	// maxBatchBytes bounds the invocations in one message, well under
	// command.MaxWireBytes.
	maxBatchBytes = 1 << 20
	// sweepBatch bounds the overdue invocations expired per sweep step.
	sweepBatch = 500
)

// Fleet is what the service needs of the fleet registry.
type Fleet interface {
	CommandTargets(sel registry.Selector) ([]registry.CommandTarget, error)
}

// Actor is who asks: an API token's name and role.
type Actor struct {
	Name, Role string
}

// Request is an operator's request to run a command on a selection.
type Request struct {
	Actor   Actor
	Select  registry.Selector
	Command string
	// Params are raw values (JSON values or command-line strings).
	Params map[string]any
	Reason string
	// Allowance is how long the invocation may wait for its agent on top of the
	// command's timeout (DefaultDeliveryAllowance when zero).
	Allowance time.Duration
}

// Settings are the service's collaborators; zero values are safe. Audit
// entries go through the store.Commands methods, in the transaction of the
// change they record.
type Settings struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Rand is the source of invocation ids (crypto/rand when nil).
	Rand       io.Reader
	Registerer prometheus.Registerer
	// Push asks the check-in server to send the listed deployments their
	// pending invocations now, over their push connections.
	Push func(ctx context.Context, ids []string)
	// SweepInterval is how often invocations past their deadline are expired.
	SweepInterval time.Duration
}

// Service runs remote commands. Create with New; Start begins the deadline
// sweep.
type Service struct {
	st    store.Commands
	fleet Fleet
	log   *slog.Logger
	clk   clock.Clock
	rand  io.Reader
	push  func(ctx context.Context, ids []string)
	sweep time.Duration
	total *prometheus.CounterVec

	// finished is closed, and replaced, whenever an invocation ends: waiters
	// re-read what they wait for.
	mu       sync.Mutex
	finished chan struct{}

	// Most check-ins find nothing to send; idle spares them the store. It
	// holds, per deployment found with nothing pending, the queued count at the
	// time of that read; queued counts what Invoke queued per deployment. A
	// deployment is idle while the two agree, so an invocation queued during a
	// read is never missed. Both hold at most one entry per deployment.
	idleMu sync.Mutex
	idle   map[string]uint64
	queued map[string]uint64
	// A deployment with no idle entry is idle too while primed holds the
	// pending deployments read once from the store (prime), and its queued
	// count still equals primedAt's, taken before that read: after a start,
	// 100,000 first check-ins cost one read, not one each.
	primed   map[string]bool
	primedAt map[string]uint64
	// primeGen numbers the reads prime starts: only the latest installs
	// its view, so a slow read from before a reconnection cannot replace
	// a newer one.
	primeGen uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a service over st; it starts nothing.
func New(st store.Commands, f Fleet, s Settings) (*Service, error) {
	if st == nil || f == nil {
		return nil, errors.New("commands: a store and a fleet are required")
	}
	svc := &Service{st: st, fleet: f, log: s.Logger, clk: clock.Or(s.Clock), rand: s.Rand, push: s.Push,
		sweep: s.SweepInterval, finished: make(chan struct{}), idle: map[string]uint64{}, queued: map[string]uint64{}}
	if svc.log == nil {
		svc.log = slog.New(slog.DiscardHandler)
	}
	if svc.sweep <= 0 {
		svc.sweep = 5 * time.Second
	}
	svc.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "periscope_manager_commands_total",
		Help: "Remote-command invocations reaching each state."}, []string{"state"})
	if s.Registerer != nil {
		if err := s.Registerer.Register(svc.total); err != nil {
			return nil, fmt.Errorf("commands: register metrics: %w", err)
		}
	}
	return svc, nil
}

// Start begins expiring invocations past their deadline.
func (s *Service) Start(ctx context.Context) error {
	s.prime(ctx)
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.sweep)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("expiring overdue commands failed", "err", err)
				}
			}
		}
	}()
	return nil
}

// Shutdown stops the sweep.
func (s *Service) Shutdown(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("commands: shutdown: %w", ctx.Err())
	}
}

func (s *Service) newID() (string, error) {
	var b [16]byte
	r := s.rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("commands: invocation id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Invoke creates one invocation per selected deployment. Each is checked
// before anything is queued: the command must be declared by the deployment's
// desired release, permitted by its customer's rule, and its parameters must
// pass the schema; otherwise the invocation is created already refused, with
// the reason. Every invocation is audited; queued ones are pushed at once to
// deployments holding a push connection.
func (s *Service) Invoke(ctx context.Context, req Request) ([]store.Invocation, error) {
	if req.Reason == "" {
		return nil, fmt.Errorf("a reason is required: %w", ErrInvalid)
	}
	if len(req.Reason) > command.MaxReasonBytes || len(req.Actor.Name) > command.MaxReasonBytes {
		return nil, fmt.Errorf("reason of %d bytes, at most %d: %w", len(req.Reason), command.MaxReasonBytes, ErrInvalid)
	}
	if len(req.Params) > command.MaxParams {
		return nil, fmt.Errorf("%d parameters, at most %d: %w", len(req.Params), command.MaxParams, ErrInvalid)
	}
	if !command.ValidName(req.Command) {
		return nil, fmt.Errorf("command name %.80q: %w", req.Command, ErrInvalid)
	}
	allowance := req.Allowance
	switch {
	case allowance == 0:
		allowance = DefaultDeliveryAllowance
	case allowance < MinDeliveryAllowance || allowance > MaxDeliveryAllowance:
		return nil, fmt.Errorf("timeout %v: between %v and %v: %w", allowance, MinDeliveryAllowance, MaxDeliveryAllowance, ErrInvalid)
	}
	targets, err := s.fleet.CommandTargets(req.Select)
	if errors.Is(err, registry.ErrInvalid) {
		return nil, fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	if len(targets) > MaxTargets {
		return nil, fmt.Errorf("%d deployments selected, at most %d: %w", len(targets), MaxTargets, ErrInvalid)
	}
	now := s.clk.Now().UTC()
	invs := make([]store.Invocation, 0, len(targets))
	for _, t := range targets {
		id, err := s.newID()
		if err != nil {
			return nil, err
		}
		inv := store.Invocation{ID: id, DeploymentID: t.ID, Customer: t.Customer, Command: req.Command, Reason: req.Reason,
			Actor: req.Actor.Name, ActorRole: req.Actor.Role, State: command.StateQueued, QueuedAt: now}
		spec, declared := command.Find(t.Commands, req.Command)
		timeout := command.DefaultTimeout
		switch {
		case !declared:
			inv.StateReason = fmt.Sprintf("release %s does not declare command %s", orNone(t.Release), req.Command)
		default:
			timeout = spec.EffectiveTimeout()
			// The customer's refusal comes before any fault in the parameters:
			// fixing them would not make the command run.
			if t.Rule != nil {
				if ok, why := t.Rule.Permits(req.Command); !ok {
					inv.StateReason = why
					break
				}
			}
			params, err := command.ValidateParams(spec, req.Params)
			if err != nil {
				inv.StateReason = err.Error()
				break
			}
			inv.Params, inv.Spec = params, &spec
		}
		inv.Deadline = now.Add(timeout + allowance)
		if inv.StateReason != "" {
			inv.State, inv.FinishedAt = command.StateRefused, now
			if inv.Params == nil && len(req.Params) > 0 {
				// The audit trail shows what was asked, even what was refused.
				inv.Params = asked(req.Params)
			}
		}
		invs = append(invs, inv)
	}
	entries := make([]store.AuditEntry, len(invs))
	for i, inv := range invs {
		entries[i] = s.entry(inv, req.Actor.Name, req.Actor.Role, store.ActionCommandInvoke, string(inv.State), inv.Reason, detail{Invocation: inv.ID, Params: inv.Params, Refused: inv.StateReason})
	}
	if err := s.st.CreateInvocations(ctx, invs, entries); err != nil {
		return nil, fmt.Errorf("queue %s: %w", req.Command, err)
	}
	var queued []string
	for _, inv := range invs {
		s.total.WithLabelValues(string(inv.State)).Inc()
		if inv.State == command.StateQueued {
			queued = append(queued, inv.DeploymentID)
		}
	}
	s.queuedFor(ctx, queued)
	return invs, nil
}

// asked is the raw parameters of a refused invocation as the audit trail
// keeps them: scalars as given (strings cut to command.MaxStringParam), anything
// else named by its kind only, so a hostile request cannot fill the store.
func asked(raw map[string]any) command.Params {
	out := make(command.Params, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			if len(x) > command.MaxStringParam {
				x = x[:command.MaxStringParam]
			}
			out[k] = x
		case bool, float64, int64, json.Number, nil:
			out[k] = x
		default:
			out[k] = fmt.Sprintf("(a %T)", v)
		}
	}
	return out
}

func orNone(release string) string {
	if release == "" {
		return "(none)"
	}
	return release
}

// detail is an audit entry's Detail.
type detail struct {
	Invocation   string         `json:"invocation"`
	Params       command.Params `json:"params,omitempty"`
	Refused      string         `json:"refused,omitempty"`
	StateReason  string         `json:"state_reason,omitempty"`
	ReportedBy   string         `json:"reported_by,omitempty"`
	ExitCode     *int           `json:"exit_code,omitempty"`
	HTTPStatus   int            `json:"http_status,omitempty"`
	OutputBytes  int64          `json:"output_bytes,omitempty"`
	OutputSHA256 string         `json:"output_sha256,omitempty"`
	Truncated    bool           `json:"truncated,omitempty"`
	DurationMS   int64          `json:"duration_ms,omitempty"`
}

func (s *Service) entry(inv store.Invocation, actor, role, action, outcome, reason string, d detail) store.AuditEntry {
	b, _ := json.Marshal(d) // plain data cannot fail to marshal
	return store.AuditEntry{At: s.clk.Now().UTC(), Actor: actor, ActorRole: role, Action: action, DeploymentID: inv.DeploymentID,
		Customer: inv.Customer, Target: inv.Command, Outcome: outcome, Reason: reason, Detail: string(b)}
}

// resultDetail is a command.result entry's detail. The entry's actor and reason
// are the operator's, so `audit --actor` finds the outcome of what they ran;
// who reported it (the agent, or the manager's deadline sweep) and why it
// ended so are here.
func resultDetail(inv store.Invocation, reportedBy string) detail {
	return detail{Invocation: inv.ID, Params: inv.Params, StateReason: inv.StateReason, ReportedBy: reportedBy, ExitCode: inv.ExitCode, HTTPStatus: inv.HTTPStatus, OutputBytes: inv.OutputBytes,
		OutputSHA256: inv.OutputSHA256, Truncated: inv.Truncated, DurationMS: inv.Duration.Milliseconds()}
}

// auditFunc adapts one entry per change to the store's AuditFunc: the store
// writes it in the same transaction as the change it records.
func auditFunc(entry func(store.Invocation) store.AuditEntry) store.AuditFunc {
	return func(inv store.Invocation) []store.AuditEntry { return []store.AuditEntry{entry(inv)} }
}

// resultAudit is the command.result entry of an invocation reaching a final
// state, reported by reportedBy; moves to other states write none.
func (s *Service) resultAudit(reportedBy string) store.AuditFunc {
	return func(inv store.Invocation) []store.AuditEntry {
		if !inv.State.Final() {
			return nil
		}
		return []store.AuditEntry{s.entry(inv, inv.Actor, inv.ActorRole, store.ActionCommandResult, string(inv.State), inv.Reason, resultDetail(inv, reportedBy))}
	}
}

// Get returns one invocation.
func (s *Service) Get(ctx context.Context, id string) (store.Invocation, error) {
	return s.st.GetInvocation(ctx, id)
}

// List returns a page of invocations, newest first, and the next cursor.
func (s *Service) List(ctx context.Context, f store.InvocationFilter) ([]store.Invocation, string, error) {
	return s.st.ListInvocations(ctx, f)
}

// Wait returns invocation id once it is final, or as it is when ctx ends.
// An invocation ending here wakes it at once; it also reads the store every
// waitRecheck, for one whose agent is connected to another manager replica.
func (s *Service) Wait(ctx context.Context, id string) (store.Invocation, error) {
	// ctx bounds the wait, not the reads: the answer at the end of the wait is
	// the invocation as it is then, not an error.
	read := context.WithoutCancel(ctx)
	t := time.NewTicker(waitRecheck)
	defer t.Stop()
	for {
		s.mu.Lock()
		ch := s.finished
		s.mu.Unlock()
		inv, err := s.st.GetInvocation(read, id)
		if err != nil || inv.State.Final() {
			return inv, err
		}
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			return inv, nil
		}
	}
}

// waitRecheck is how often Wait reads an invocation that has not ended here.
const waitRecheck = time.Second

// ended wakes waiters and counts a final state.
func (s *Service) ended(st command.State) {
	s.total.WithLabelValues(string(st)).Inc()
	s.mu.Lock()
	close(s.finished)
	s.finished = make(chan struct{})
	s.mu.Unlock()
}

// Cancel cancels a queued invocation; one in any other state is ErrConflict
// naming its state.
func (s *Service) Cancel(ctx context.Context, actor Actor, id, reason string) (store.Invocation, error) {
	if reason == "" || len(reason) > command.MaxReasonBytes {
		return store.Invocation{}, fmt.Errorf("a reason of 1 to %d bytes is required: %w", command.MaxReasonBytes, ErrInvalid)
	}
	inv, err := s.st.CancelInvocation(ctx, id, "cancelled by "+actor.Name+": "+reason, s.clk.Now().UTC(), auditFunc(func(inv store.Invocation) store.AuditEntry {
		return s.entry(inv, actor.Name, actor.Role, store.ActionCommandCancel, string(command.StateCancelled), reason, detail{Invocation: inv.ID})
	}))
	if err != nil {
		return inv, err
	}
	s.ended(command.StateCancelled)
	return inv, nil
}

// Sweep expires every invocation past its deadline and says how many.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n := 0
	for {
		now := s.clk.Now().UTC()
		over, err := s.st.OverdueInvocations(ctx, now, sweepBatch)
		if err != nil {
			return n, err
		}
		for _, inv := range over {
			why := "the agent did not pick it up before its deadline"
			if inv.State == command.StateRunning {
				why = "the agent did not report a result before its deadline"
			}
			_, err := s.st.AdvanceInvocation(ctx, store.Invocation{ID: inv.ID, DeploymentID: inv.DeploymentID, State: command.StateExpired,
				StateReason: why, FinishedAt: now}, s.resultAudit("periscope"))
			if errors.Is(err, store.ErrConflict) {
				continue // it ended meanwhile
			}
			if err != nil {
				return n, err
			}
			n++
			s.ended(command.StateExpired)
		}
		if len(over) < sweepBatch {
			return n, nil
		}
	}
}

// QueuedElsewhere tells the service that another manager replica queued
// invocations for deployments ids (read from the store's notification), so
// their next check-in here reads the store and a push connection here is sent
// them at once, as for an invocation queued on this replica.
func (s *Service) QueuedElsewhere(ctx context.Context, ids []string) { s.queuedFor(ctx, ids) }

// queuedFor makes the next check-in of deployments ids read the store, and
// pushes their invocations to the push connections here.
func (s *Service) queuedFor(ctx context.Context, ids []string) {
	s.idleMu.Lock()
	for _, id := range ids {
		s.queued[id]++
	}
	s.idleMu.Unlock()
	if len(ids) > 0 && s.push != nil {
		s.push(ctx, ids)
	}
}

// ForgetIdle drops what the service knows of deployments with nothing
// pending, so every next check-in reads the store: for a replica that may
// have missed another's notification (its listening connection was down).
func (s *Service) ForgetIdle(ctx context.Context) {
	s.idleMu.Lock()
	clear(s.idle)
	s.primed, s.primedAt = nil, nil
	s.idleMu.Unlock()
	s.prime(ctx)
}

// prime reads which deployments have invocations pending, so the first
// check-in of every other one needs no read of its own. The queued counts are
// taken before the read: an invocation queued after them moves its
// deployment's count and is read at its check-in; one queued before them was
// committed before the read, which finds it. On failure every deployment is
// read at its first check-in, as before.
func (s *Service) prime(ctx context.Context) {
	s.idleMu.Lock()
	s.primeGen++
	gen := s.primeGen
	at := maps.Clone(s.queued)
	s.idleMu.Unlock()
	ids, err := s.st.PendingDeployments(ctx)
	if err != nil {
		s.log.Warn("reading which deployments have pending commands failed; each check-in reads its own", "err", err)
		return
	}
	pending := make(map[string]bool, len(ids))
	for _, id := range ids {
		pending[id] = true
	}
	s.idleMu.Lock()
	if s.primeGen == gen {
		s.primed, s.primedAt = pending, at
	}
	s.idleMu.Unlock()
}

// Outgoing returns the message deployment id's agent should get now: its
// queued invocations, and delivered ones not yet started after redeliverAfter.
// Call sent once the message is on its way, so they are recorded delivered; a
// message that did not fit a reply is simply not sent, and goes next time.
func (s *Service) Outgoing(ctx context.Context, id string) (msg *protobufs.CustomMessage, sent func()) {
	s.idleMu.Lock()
	gen := s.queued[id]
	at, known := s.idle[id]
	if !known && s.primed != nil && !s.primed[id] {
		at, known = s.primedAt[id], true
	}
	s.idleMu.Unlock()
	if known && at == gen {
		return nil, nil
	}
	pend, err := s.st.PendingInvocations(ctx, id)
	if err != nil {
		s.log.Warn("reading pending commands failed", "deployment", id, "err", err)
		return nil, nil
	}
	if len(pend) == 0 {
		s.idleMu.Lock()
		s.idle[id] = gen
		s.idleMu.Unlock()
		return nil, nil
	}
	now := s.clk.Now().UTC()
	var batch command.Invocations
	var fresh []store.Invocation
	size := 0
	for _, inv := range pend {
		if !inv.Deadline.After(now) || (inv.State == command.StateDelivered && now.Sub(inv.DeliveredAt) < redeliverAfter) {
			continue
		}
		w := command.Invocation{ID: inv.ID, Command: inv.Command, Params: inv.Params, Deadline: inv.Deadline, By: inv.Actor, Reason: inv.Reason, Spec: inv.Spec}
		b, _ := json.Marshal(w)
		if len(batch.Invocations) == command.MaxPerMessage || size+len(b) > maxBatchBytes {
			break
		}
		size += len(b)
		batch.Invocations = append(batch.Invocations, w)
		if inv.State == command.StateQueued {
			fresh = append(fresh, inv)
		}
	}
	if len(batch.Invocations) == 0 {
		return nil, nil
	}
	return command.Message(command.MessageInvoke, batch), func() {
		at := s.clk.Now().UTC()
		for _, inv := range fresh {
			_, err := s.st.AdvanceInvocation(ctx, store.Invocation{ID: inv.ID, DeploymentID: id, State: command.StateDelivered, DeliveredAt: at}, nil)
			if err == nil {
				s.total.WithLabelValues(string(command.StateDelivered)).Inc()
			} else if !errors.Is(err, store.ErrConflict) {
				s.log.Warn("recording a command delivered failed", "deployment", id, "invocation", inv.ID, "err", err)
			}
		}
	}
}

// Incoming handles a commands custom message from deployment id's agent and
// returns the reply (an ack of the final updates stored), or nil. The agent
// can only ever act on its own deployment's invocations: an update naming
// another deployment's invocation changes nothing.
func (s *Service) Incoming(ctx context.Context, id string, msg *protobufs.CustomMessage) *protobufs.CustomMessage {
	if msg == nil || msg.Capability != command.Capability || msg.Type != command.MessageUpdate {
		return nil
	}
	ups, err := command.DecodeUpdates(msg.Data)
	if err != nil {
		s.log.Warn("malformed command update from agent", "deployment", id, "err", err)
		return nil
	}
	var ack command.Ack
	for _, u := range ups.Updates {
		inv := store.Invocation{ID: u.ID, DeploymentID: id, State: u.State, StateReason: u.Reason}
		at := s.clk.Now().UTC()
		if !u.At.IsZero() && u.At.Before(at) {
			at = u.At.UTC()
		}
		switch {
		case u.State == command.StateDelivered:
			inv.DeliveredAt = at
		case u.State == command.StateRunning:
			inv.StartedAt = at
		default:
			inv.FinishedAt = at
			if u.Result != nil {
				cur, err := s.st.GetInvocation(ctx, u.ID)
				if err == nil && cur.DeploymentID == id {
					inv.Result = bound(*u.Result, s.outputLimit(id, cur.Command))
				}
			}
		}
		// The result and its audit entry are stored together before the ack,
		// so a manager that dies in between gets the update again and writes both.
		got, err := s.st.AdvanceInvocation(ctx, inv, s.resultAudit("agent:"+id))
		switch {
		case err == nil:
			if got.State.Final() {
				s.ended(got.State)
			} else {
				s.total.WithLabelValues(string(got.State)).Inc()
			}
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
			// Nothing to store (not this deployment's, or already further on);
			// a final update is still acked so the agent stops resending it.
		default:
			s.log.Warn("storing a command update failed", "deployment", id, "invocation", u.ID, "err", err)
			continue
		}
		if u.State.Final() {
			ack.IDs = append(ack.IDs, u.ID)
		}
	}
	if len(ack.IDs) == 0 {
		return nil
	}
	return command.Message(command.MessageAck, ack)
}

// outputLimit is the output limit of command name as deployment id's desired
// release declares it (command.MaxOutputLimit when it declares it no more).
func (s *Service) outputLimit(id, name string) int {
	ts, err := s.fleet.CommandTargets(registry.Selector{IDs: []string{id}})
	if err != nil || len(ts) != 1 {
		return command.MaxOutputLimit
	}
	if spec, ok := command.Find(ts[0].Commands, name); ok {
		return spec.EffectiveOutputLimit()
	}
	return command.MaxOutputLimit
}

// bound cuts an agent's output to limit bytes (at a UTF-8 boundary) and marks
// it truncated: the agent should have cut it; the manager does not rely on it.
func bound(r command.Result, limit int) command.Result {
	if len(r.Output) <= limit {
		return r
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(r.Output[cut]) {
		cut--
	}
	r.Output, r.Truncated = r.Output[:cut], true
	sum := sha256.Sum256([]byte(r.Output))
	r.OutputSHA256 = hex.EncodeToString(sum[:])
	return r
}
