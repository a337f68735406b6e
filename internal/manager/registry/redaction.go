package registry

import (
	"fmt"
	"time"

	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// Redaction is what a deployment's agent last reported of its redaction policy.
//
// It lives in memory only: an agent reports it in its effective configuration at
// every connect, and the check-in server asks an agent the registry has not heard it
// from since the manager started for its full state, so a restart loses it only
// until each agent's next check-in.
type Redaction struct {
	redactpolicy.Report
	// InSync is whether the agent holds the manager's current vendor policy.
	InSync bool
	// ReportedAt is when the agent reported it.
	ReportedAt time.Time
}

// redactionState is an entry's redaction report; guarded by the entry's mu.
type redactionState struct {
	// heard is set once the agent reported an effective configuration since the
	// manager started; report is nil when that configuration carried no report.
	heard  bool
	report *redactpolicy.Report
	at     time.Time
}

// RedactionReport is an agent's report on redaction in a check-in.
type RedactionReport struct {
	// Report is nil when the agent's effective configuration carries none (a
	// stock Collector, an agent from before redaction).
	Report *redactpolicy.Report
}

// VendorRedactionHash is the hash of the manager's vendor redaction policy, the one
// agents should hold.
func (r *Registry) VendorRedactionHash() string { return r.vendorHash }

// RedactionState returns what deployment id's agent last reported of redaction:
// heard is false until it reported an effective configuration since the manager
// started, and rep is nil when it reported none.
func (r *Registry) RedactionState(id string) (rep *redactpolicy.Report, heard bool, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.deps[id]
	if !ok {
		return nil, false, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.red.report, e.red.heard, nil
}

// redactionViewLocked is the entry's redaction for a view; nil when not reported.
// The caller holds e.mu.
func (r *Registry) redactionViewLocked(e *entry) *Redaction {
	if e.red.report == nil {
		return nil
	}
	return &Redaction{Report: *e.red.report, InSync: e.red.report.VendorHash == r.vendorHash, ReportedAt: e.red.at}
}
