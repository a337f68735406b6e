package opamp

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/agent/statefile"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/desired"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// releasePattern is what an offered release must look like before it goes near a
// shell: no spaces, quotes or metacharacters, so {{.Release}} needs no quoting.
var releasePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// shellSafePattern admits the other template values only when they, too, cannot
// change the meaning of the command they are pasted into.
var shellSafePattern = regexp.MustCompile(`^[A-Za-z0-9._+:/@=-]*$`)

const (
	// stateFile, in the data directory, remembers what the hook did across restarts.
	stateFile = "release-state.json"
	// outputTail is how much of a failed command's output reaches the operator:
	// enough for the error helm or terraform ends with, not a whole log.
	outputTail = 1024
	// webhookBodyMax is how much of a refusing webhook's answer is reported.
	webhookBodyMax = 512
	// defaultKillGrace is how long a hook that timed out gets to stop after
	// SIGTERM (terraform and helm release their locks) before SIGKILL; short
	// enough that the agent still stops within its 10 s shutdown budget.
	defaultKillGrace = 5 * time.Second
	// interruptedMessage is the failure recorded when the agent stops mid-hook.
	interruptedMessage = "the agent stopped while the update hook was running, so its outcome is unknown: check the deployment"
)

// offerJob is one offer to apply.
type offerJob struct {
	hash  []byte
	offer desired.Offer
}

// outcome is the agent's answer to one offer.
type outcome struct {
	hash    []byte
	release string
	status  protobufs.RemoteConfigStatuses
	err     string
}

func (o *outcome) report() *protobufs.RemoteConfigStatus {
	return &protobufs.RemoteConfigStatus{LastRemoteConfigHash: o.hash, Status: o.status, ErrorMessage: o.err}
}

// releaseState is stateFile's content.
type releaseState struct {
	// FlagRelease is --release when the state was written: if it differs at start,
	// someone redeployed the agent and the flag is the truth.
	FlagRelease string `json:"flag_release"`
	// Release is what the deployment runs.
	Release string `json:"release"`
	// OfferHash (hex), OfferRelease, Status and Error are the last answer to an offer.
	OfferHash    string `json:"offer_hash,omitempty"`
	OfferRelease string `json:"offer_release,omitempty"`
	Status       string `json:"status,omitempty"`
	Error        string `json:"error,omitempty"`
}

func statusName(s protobufs.RemoteConfigStatuses) string {
	switch s {
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING:
		return "applying"
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED:
		return "applied"
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED:
		return "failed"
	}
	return ""
}

func parseStatus(s string) (protobufs.RemoteConfigStatuses, bool) {
	for _, st := range []protobufs.RemoteConfigStatuses{protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING,
		protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED} {
		if statusName(st) == s {
			return st, true
		}
	}
	return 0, false
}

// Release is the release the agent reports running: --release, or the last one
// its update hook applied while --release stayed the same.
func (a *Agent) Release() string {
	a.umu.Lock()
	defer a.umu.Unlock()
	return a.release
}

// loadReleaseState restores the release and the last answer to an offer from the
// data directory, and returns that answer for the manager (nil when none).
func (a *Agent) loadReleaseState() *protobufs.RemoteConfigStatus {
	a.umu.Lock()
	defer a.umu.Unlock()
	path := filepath.Join(a.cfg.DataDir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var st releaseState
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		// The flag is a safe fallback, and the next apply rewrites the file.
		a.log.Warn("ignoring unreadable update state; reporting the --release flag", "path", path, "err", err)
		return nil
	}
	if st.FlagRelease != a.cfg.Release {
		a.log.Info("--release changed since the last update, so the deployment was redeployed: reporting the flag's release",
			"flag_was", st.FlagRelease, "flag", a.cfg.Release, "hook_applied", st.Release)
		// Rewritten now so that a later return to the old flag value is not
		// mistaken for an unchanged flag.
		a.saveStateLocked(nil)
		return nil
	}
	a.release = st.Release
	status, ok := parseStatus(st.Status)
	hash, err := hex.DecodeString(st.OfferHash)
	if !ok || err != nil {
		return nil
	}
	o := &outcome{hash: hash, release: st.OfferRelease, status: status, err: st.Error}
	if status == protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING {
		// Running the hook again could loop forever if it is what restarted the
		// agent; an operator can tell what happened, the agent cannot.
		o.status, o.err = protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, interruptedMessage
		a.log.Warn("an update was interrupted by the agent stopping; reporting it failed", "to", o.release)
		a.saveStateLocked(o)
	}
	a.last = o
	return o.report()
}

// saveStateLocked writes the release and o, the latest answer to an offer (nil
// for none), atomically. The caller holds umu.
func (a *Agent) saveStateLocked(o *outcome) {
	st := releaseState{FlagRelease: a.cfg.Release, Release: a.release}
	if o != nil {
		st.OfferHash, st.OfferRelease, st.Status, st.Error = hex.EncodeToString(o.hash), o.release, statusName(o.status), o.err
	}
	body, _ := json.MarshalIndent(st, "", "  ") // strings only: cannot fail
	if err := statefile.Write(a.cfg.DataDir, stateFile, append(body, '\n')); err != nil {
		// Not fatal: the manager still hears the outcome now; only a restart
		// would report the --release flag instead of the applied release.
		a.log.Error("cannot save the update state", "err", err)
	}
}

// onMessage takes what the manager sends beyond acknowledgements: release offers
// (and the commands they declare), command messages, the vendor's redaction
// policy and the deployment's thresholds.
func (a *Agent) onMessage(ctx context.Context, msg *types.MessageData) {
	if msg.RemoteConfig != nil {
		// Before any invocation in the same message: it may run a command
		// this offer declares.
		a.keepOfferedCommands(msg.RemoteConfig)
	}
	if msg.CustomMessage != nil {
		switch msg.CustomMessage.GetCapability() {
		case command.Capability:
			a.receiveCommandMessage(msg.CustomMessage)
		case thresholds.Capability:
			a.receiveThresholds(ctx, msg.CustomMessage)
		default:
			a.receiveCustomMessage(ctx, msg.CustomMessage)
		}
	}
	if msg.RemoteConfig != nil && a.cfg.Update.Enabled() {
		a.receiveOffer(msg.RemoteConfig)
	}
}

// receiveOffer answers or starts applying an offer. It never waits for a hook:
// it runs on the OpAMP client's goroutine.
func (a *Agent) receiveOffer(rc *protobufs.AgentRemoteConfig) {
	offer, err := desired.Decode(rc)
	hash := rc.GetConfigHash()
	if len(hash) == 0 {
		hash = []byte{} // OpAMP refuses a status without a hash
		if err == nil {
			hash = desired.Hash(offer)
		}
	}
	a.umu.Lock()
	defer a.umu.Unlock()
	if a.stopping {
		return
	}
	refusal := ""
	switch {
	case errors.Is(err, desired.ErrNoOffer):
		refusal = "the remote configuration carries no release offer (" + desired.FileName + "); this agent only applies releases"
	case err != nil:
		refusal = err.Error()
	case !releasePattern.MatchString(offer.Release):
		refusal = fmt.Sprintf("refused release %q: a release must match %s so it is safe to pass to the update hook", offer.Release, releasePattern)
	}
	if refusal != "" {
		// The manager's newest wish replaces whatever was waiting.
		a.pending = nil
		a.log.Warn("refused a release offer", "reason", refusal)
		a.reportLocked(&outcome{hash: hash, release: offer.Release, status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, err: refusal})
		return
	}
	job := &offerJob{hash: hash, offer: offer}
	if a.running != nil {
		if bytes.Equal(hash, a.running.hash) {
			a.pending = nil
			a.reportLocked(&outcome{hash: hash, release: offer.Release, status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING})
			return
		}
		if a.pending == nil || !bytes.Equal(hash, a.pending.hash) {
			a.log.Info("release offer queued behind the update in progress", "release", offer.Release, "applying", a.running.offer.Release)
		}
		a.pending = job
		return
	}
	a.startLocked(job)
}

// startLocked answers job at once when it can, or starts its hook. The caller
// holds umu and no hook is running.
func (a *Agent) startLocked(job *offerJob) {
	if a.last != nil && bytes.Equal(job.hash, a.last.hash) {
		// The manager resends offers (after its restart, on every poll): one
		// offer runs the hook once.
		a.reportLocked(a.last)
		return
	}
	if job.offer.Release == a.release {
		o := &outcome{hash: job.hash, release: job.offer.Release, status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED}
		a.log.Info("offered release is already running", "release", a.release)
		a.last = o
		a.saveStateLocked(o)
		a.reportLocked(o)
		return
	}
	o := &outcome{hash: job.hash, release: job.offer.Release, status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING}
	a.running = job
	// Saved before the hook starts so that an agent killed mid-hook knows, at its
	// next start, not to run it again.
	a.saveStateLocked(o)
	a.reportLocked(o)
	a.applies.Add(1)
	go a.apply(job, a.release)
}

// reportLocked hands o to the OpAMP client. The caller holds umu, which keeps
// statuses in order.
func (a *Agent) reportLocked(o *outcome) {
	a.mu.Lock()
	c := a.client
	a.reported = o
	a.mu.Unlock()
	if c == nil {
		return
	}
	if err := c.SetRemoteConfigStatus(o.report()); err != nil {
		a.log.Error("cannot report the update status", "err", err)
	}
}

// apply runs the hook for job and reports how it went, then starts the offer
// that arrived meanwhile, if any.
func (a *Agent) apply(job *offerJob, from string) {
	defer a.applies.Done()
	start := a.clk.Now()
	a.log.Info("applying release", "from", from, "to", job.offer.Release, "stack", job.offer.Stack)
	err := a.runHook(job, from)
	took := a.clk.Now().Sub(start)

	a.umu.Lock()
	defer a.umu.Unlock()
	o := &outcome{hash: job.hash, release: job.offer.Release, status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED}
	if err != nil {
		o.status, o.err = protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, err.Error()
		a.log.Info("release update failed", "from", from, "to", job.offer.Release, "duration", took, "outcome", "failed", "err", o.err)
	} else {
		a.release = job.offer.Release
		a.log.Info("release updated", "from", from, "to", job.offer.Release, "duration", took, "outcome", "applied")
	}
	a.running, a.last = nil, o
	a.saveStateLocked(o)
	if err == nil {
		// The description goes first: the manager must never see APPLIED while
		// the agent still reports the old release.
		a.mu.Lock()
		c := a.client
		a.mu.Unlock()
		if c != nil {
			if err := c.SetAgentDescription(a.description(a.det, a.release)); err != nil {
				a.log.Error("cannot report the new release", "err", err)
			}
		}
	}
	a.reportLocked(o)
	next := a.pending
	a.pending = nil
	if next != nil && !a.stopping {
		a.startLocked(next)
	}
}

// runHook runs the configured command or calls the webhook within the timeout.
func (a *Agent) runHook(job *offerJob, from string) error {
	ctx, cancel := context.WithTimeout(a.applyCtx, time.Duration(a.cfg.Update.Timeout))
	defer cancel()
	if a.cfg.Update.Command != "" {
		return a.runCommand(ctx, job, from)
	}
	return a.callWebhook(ctx, job, from)
}

// stopReason says why the hook's context ended, or nil if it has not.
func (a *Agent) stopReason(ctx context.Context) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("update hook timed out after %s", time.Duration(a.cfg.Update.Timeout))
	case ctx.Err() != nil:
		return errors.New(interruptedMessage)
	}
	return nil
}

// hookData is what the command template sees. Values other than the release
// (already checked) are checked only when the template uses them, so an odd
// stack name fails only commands that paste it into the shell.
type hookData struct {
	offer    desired.Offer
	previous string
}

// Release is the offered release.
func (d hookData) Release() string { return d.offer.Release }

// PreviousRelease is the release the deployment runs now.
func (d hookData) PreviousRelease() (string, error) {
	return shellSafe("current release", d.previous, "PERISCOPE_CURRENT_RELEASE")
}

// Stack is the stack the release belongs to.
func (d hookData) Stack() (string, error) {
	return shellSafe("stack", d.offer.Stack, "PERISCOPE_STACK")
}

// ConfigHash is the effective-configuration hash the manager expects afterwards.
func (d hookData) ConfigHash() (string, error) {
	return shellSafe("expected config hash", d.offer.ConfigHash, "PERISCOPE_EXPECTED_CONFIG_HASH")
}

func shellSafe(what, v, env string) (string, error) {
	if !shellSafePattern.MatchString(v) {
		return "", fmt.Errorf("%s %q has characters that are not safe in a shell command: use \"$%s\" instead", what, v, env)
	}
	return v, nil
}

// hookEnv is the agent's environment, without its token, plus the offer.
func (a *Agent) hookEnv(job *offerJob, from string) []string {
	env := make([]string, 0, len(a.env)+4)
	for _, kv := range a.env {
		// The hook has no use for the deployment token, and hooks that print
		// their environment would leak it into the failure message.
		if !strings.HasPrefix(kv, "PERISCOPE_TOKEN=") && !strings.HasPrefix(kv, "PERISCOPE_AGENT_TOKEN=") {
			env = append(env, kv)
		}
	}
	return append(env, "PERISCOPE_DESIRED_RELEASE="+job.offer.Release, "PERISCOPE_CURRENT_RELEASE="+from,
		"PERISCOPE_STACK="+job.offer.Stack, "PERISCOPE_EXPECTED_CONFIG_HASH="+job.offer.ConfigHash)
}

func (a *Agent) runCommand(ctx context.Context, job *offerJob, from string) error {
	var script strings.Builder
	if err := a.hook.Execute(&script, hookData{offer: job.offer, previous: from}); err != nil {
		return fmt.Errorf("update command: %w", err)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script.String())
	cmd.Env = a.hookEnv(job, from)
	out := &tailBuffer{max: outputTail}
	cmd.Stdout, cmd.Stderr = out, out
	ownProcessGroup(cmd, a.killGrace)
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		// SIGTERM went to the group when ctx ended; whatever ignored it goes now.
		killGroup(cmd)
		msg := a.stopReason(ctx).Error()
		if tail := out.String(); tail != "" {
			msg += "; last output: " + tail
		}
		return errors.New(msg)
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success() {
		// The command succeeded but left a background process holding its output.
		err = nil
	}
	if err != nil {
		if tail := out.String(); tail != "" {
			return fmt.Errorf("%w: %s", err, tail)
		}
		return err
	}
	return nil
}

// webhookRequest is the body POSTed to the webhook.
type webhookRequest struct {
	Release         string `json:"release"`
	PreviousRelease string `json:"previous_release"`
	Stack           string `json:"stack"`
	ConfigHash      string `json:"config_hash"`
	InstanceUID     string `json:"instance_uid"`
}

func (a *Agent) callWebhook(ctx context.Context, job *offerJob, from string) error {
	body, _ := json.Marshal(webhookRequest{Release: job.offer.Release, PreviousRelease: from, Stack: job.offer.Stack,
		ConfigHash: job.offer.ConfigHash, InstanceUID: uuid.UUID(a.uid).String()}) // strings only: cannot fail
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.Update.Webhook, bytes.NewReader(body))
	if err != nil {
		// Not wrapped: the error would repeat the URL, which may carry a token.
		return errors.New("cannot build the webhook request from update.webhook")
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range a.cfg.Update.WebhookHeaders {
		req.Header.Set(k, v)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		if r := a.stopReason(ctx); r != nil {
			return r
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may carry a token
		}
		return fmt.Errorf("webhook request failed: %w", err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, webhookBodyMax))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil
	}
	msg := fmt.Sprintf("webhook answered %d", resp.StatusCode)
	if t := strings.TrimSpace(strings.ToValidUTF8(string(head), "")); t != "" {
		msg += ": " + t
	}
	return errors.New(msg)
}

// newWebhookClient does not follow redirects: a redirected POST becomes a GET,
// which would trigger nothing and still answer 200.
func newWebhookClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// parseHookCommand parses the command template as config.Validate does.
func parseHookCommand(command string) (*template.Template, error) {
	t, err := template.New("command").Option("missingkey=error").Parse(command)
	if err != nil {
		return nil, fmt.Errorf("update.command: %w", err)
	}
	return t, nil
}

// redactWebhook keeps the webhook's scheme and host only: trigger URLs often
// carry a token in their path or query.
func redactWebhook(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "<redacted>"
	}
	r := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		r += "/<redacted>"
	}
	return r
}

// tailBuffer keeps the last bytes written to it, so a chatty hook cannot grow
// the agent's memory.
type tailBuffer struct {
	max int
	b   []byte
	cut bool
}

// Write keeps the end of p.
func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.cut = t.cut || len(t.b) > 0 || len(p) > t.max
		t.b = append(t.b[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
		t.cut = true
	}
	return n, nil
}

// String is the kept output, trimmed, marked when its start was cut.
func (t *tailBuffer) String() string {
	b, cut := t.b, t.cut
	if len(b) > t.max {
		b, cut = b[len(b)-t.max:], true
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
	if cut && s != "" {
		s = "…" + s
	}
	return s
}
