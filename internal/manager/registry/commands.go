package registry

import (
	"fmt"

	"github.com/periscope-dev/periscope/internal/command"
)

// CommandTarget is what checking a remote command against one deployment
// needs: the commands its desired release declares and its customer's rule.
type CommandTarget struct {
	ID       string
	Customer string
	// Release is the deployment's desired release; Commands are what it declares.
	Release  string
	Commands []command.Spec
	// Rule is the customer's rule its agent reported; nil when it reported none.
	Rule *command.Rule
}

// CommandTargets resolves a selection to command targets, in id order for a
// filter and in the given order (without repeats) for ids. An unknown id, or a
// filter that matches nothing, is ErrNotFound; an empty selection is
// ErrInvalid, so a forgotten filter never runs a command on the whole fleet.
func (r *Registry) CommandTargets(sel Selector) ([]CommandTarget, error) {
	if len(sel.IDs) == 0 && sel.Filter.IsZero() && !sel.All {
		return nil, fmt.Errorf("select deployments by id or by a filter: %w", ErrInvalid)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	now := r.clk.Now()
	picked, err := r.selectLocked(sel, now)
	if err != nil {
		return nil, err
	}
	out := make([]CommandTarget, 0, len(picked))
	for _, e := range picked {
		e.mu.Lock()
		o := r.offerLocked(&e.d, now)
		t := CommandTarget{ID: e.d.ID, Customer: e.d.Customer, Release: o.Release, Commands: o.Commands}
		if e.d.CommandRule != nil {
			rule := *e.d.CommandRule
			t.Rule = &rule
		}
		e.mu.Unlock()
		out = append(out, t)
	}
	return out, nil
}
