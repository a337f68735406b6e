package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/retry"
	"github.com/periscope-dev/periscope/internal/store"
)

// maxRetryAfter bounds how long a webhook's Retry-After can hold a delivery, so
// a bad header does not park it for days.
const maxRetryAfter = time.Hour

// job is one delivery in a webhook's queue. note is shared and read-only; d
// belongs to the webhook's worker.
type job struct {
	note *store.Notification
	d    store.Delivery
}

// hook is one webhook: its queue and the worker that empties it.
type hook struct {
	n    *Notifier
	cfg  config.Webhook
	wake chan struct{}

	sent, failed, errs prometheus.Counter
	queue              prometheus.Gauge

	mu   sync.Mutex
	jobs []*job
	// unsaved are jobs whose latest state the store refused; they are written
	// again before the next sweep and at shutdown.
	unsaved []*job
}

func newHook(n *Notifier, w config.Webhook) *hook {
	return &hook{n: n, cfg: w, wake: make(chan struct{}, 1),
		sent: n.m.sent.WithLabelValues(w.Name), failed: n.m.failed.WithLabelValues(w.Name),
		errs: n.m.errors.WithLabelValues(w.Name), queue: n.m.queue.WithLabelValues(w.Name)}
}

func (h *hook) add(j *job) {
	h.mu.Lock()
	h.jobs = append(h.jobs, j)
	h.queue.Set(float64(len(h.jobs)))
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *hook) run(ctx context.Context) {
	defer h.n.wg.Done()
	t := time.NewTicker(h.n.tick)
	defer t.Stop()
	for {
		h.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
	}
}

// sweep sends every delivery that is due, oldest first. A deployment's
// deliveries go out in order (its "resolved" never overtakes its "entered"),
// and after a failure that may pass the rest wait for the next sweep, so a
// webhook that is down is not hammered with the whole queue.
func (h *hook) sweep(ctx context.Context) {
	if err := h.save(context.Background()); err != nil {
		return // the store is failing too; try again at the next tick
	}
	h.mu.Lock()
	jobs := slices.Clone(h.jobs)
	h.mu.Unlock()
	blocked := map[string]bool{}
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		dep := j.note.Deployment.ID
		if blocked[dep] || j.d.NextAttempt.After(h.n.clk.Now()) {
			blocked[dep] = true
			continue
		}
		transient := h.attempt(j)
		if j.d.State == store.Pending {
			blocked[dep] = true
		} else {
			h.mu.Lock()
			h.jobs = slices.DeleteFunc(h.jobs, func(x *job) bool { return x == j })
			h.queue.Set(float64(len(h.jobs)))
			h.mu.Unlock()
		}
		h.persist(j)
		if transient {
			return
		}
	}
}

// persist writes j's delivery state, keeping it for a later write if the store
// refuses it. An attempt cut short by shutdown is still written, so its count
// survives the restart.
func (h *hook) persist(j *job) {
	err := h.n.st.UpdateDelivery(context.Background(), j.note.ID, j.d)
	if err == nil {
		return
	}
	h.n.log.Warn("recording a notification delivery failed; will retry", "webhook", h.cfg.Name, "notification", j.note.ID, "err", err)
	h.mu.Lock()
	if !slices.Contains(h.unsaved, j) {
		h.unsaved = append(h.unsaved, j)
	}
	h.mu.Unlock()
}

// save writes the delivery states the store refused before.
func (h *hook) save(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(h.unsaved) > 0 {
		j := h.unsaved[0]
		if err := h.n.st.UpdateDelivery(ctx, j.note.ID, j.d); err != nil {
			return fmt.Errorf("notify: record delivery of %s to %s: %w", j.note.ID, h.cfg.Name, err)
		}
		h.unsaved = h.unsaved[1:]
	}
	return nil
}

// attempt POSTs j once and updates its delivery. It reports whether the attempt
// failed in a way that may pass (a refused connection, 5xx, 408, 429), which
// suggests the webhook as a whole is in trouble.
func (h *hook) attempt(j *job) (transient bool) {
	body, err := payload(h.cfg.Format, j.note)
	if err != nil {
		// Only plain data is encoded; failing here is a programming error.
		h.finish(j, store.Failed, "encode: "+err.Error())
		return false
	}
	ctx, cancel := context.WithTimeout(h.n.abortCtx, h.n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		h.finish(j, store.Failed, "invalid webhook URL")
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "periscope-manager")
	// A receiver that got a retry it had already processed can drop it by id.
	req.Header.Set("Periscope-Notification-Id", j.note.ID)
	for k, v := range h.cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := h.n.client.Do(req)
	j.d.Attempts++
	if err != nil {
		// url.Error repeats the URL, which may be a secret (Slack's are): keep
		// only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", h.n.timeout)
		}
		h.retry(j, "POST failed: "+err.Error(), 0)
		return true
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	code := resp.StatusCode
	msg := fmt.Sprintf("answered %d %s", code, http.StatusText(code))
	if s := strings.TrimSpace(string(snippet)); s != "" {
		msg += ": " + strings.ToValidUTF8(s, "?")
	}
	switch {
	case code >= 200 && code < 300:
		j.d.DeliveredAt = h.n.clk.Now().UTC()
		h.finish(j, store.Delivered, j.d.LastError)
		return false
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		// The webhook refuses this request as it is; sending it again cannot help.
		h.finish(j, store.Failed, msg)
		return false
	}
	var wait time.Duration
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		// Zero (absent, unreadable or past) leaves the wait to the backoff.
		d, _ := retry.ParseRetryAfter(resp.Header.Get("Retry-After"), h.n.clk.Now())
		wait = min(d, maxRetryAfter)
	}
	h.retry(j, msg, wait)
	return true
}

// retry schedules j's next attempt after wait, or after the backoff when wait is
// zero, unless it has had all its attempts.
func (h *hook) retry(j *job, why string, wait time.Duration) {
	h.errs.Inc()
	if j.d.Attempts >= h.n.cfg.MaxAttempts {
		h.finish(j, store.Failed, why)
		return
	}
	if wait <= 0 {
		wait = h.n.backoff.Delay(j.d.Attempts, nil)
	}
	now := h.n.clk.Now().UTC()
	j.d.LastError, j.d.UpdatedAt, j.d.NextAttempt = why, now, now.Add(wait)
	h.n.log.Debug("notification delivery failed; will retry", "webhook", h.cfg.Name, "notification", j.note.ID,
		"attempt", j.d.Attempts, "retry_in", wait, "err", why)
}

func (h *hook) finish(j *job, st store.DeliveryState, lastError string) {
	j.d.State, j.d.LastError, j.d.UpdatedAt, j.d.NextAttempt = st, lastError, h.n.clk.Now().UTC(), time.Time{}
	if st == store.Delivered {
		h.sent.Inc()
		return
	}
	h.failed.Inc()
	h.n.log.Warn("notification delivery failed for good", "webhook", h.cfg.Name, "notification", j.note.ID,
		"deployment", j.note.Deployment.ID, "kind", j.note.Kind, "state", j.note.State, "attempts", j.d.Attempts, "err", lastError)
}
