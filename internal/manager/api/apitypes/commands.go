package apitypes

import (
	"fmt"
	"strconv"

	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
)

// Invocation is one remote command on one deployment: who ran it and why, its
// state and times, and its result once it ended.
type Invocation = store.Invocation

// InvocationList is a page of invocations, newest first; Next is the cursor of
// the next page ("" on the last).
type InvocationList struct {
	Items []Invocation `json:"items"`
	Next  string       `json:"next,omitempty"`
}

// CommandSelection picks the deployments of POST /api/v1/commands: the listed
// ids, or every deployment matching all the other fields (at least one).
type CommandSelection struct {
	IDs      []string          `json:"ids,omitempty"`
	Customer string            `json:"customer,omitempty"`
	Stack    string            `json:"stack,omitempty"`
	Release  string            `json:"release,omitempty"`
	Status   fleet.Status      `json:"status,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// NewInvocation is the body of POST /api/v1/deployments/{id}/commands and,
// with Selection, of POST /api/v1/commands.
type NewInvocation struct {
	Selection *CommandSelection `json:"selection,omitempty"`
	Command   string            `json:"command"`
	// Params are checked against the command's declared schema.
	Params map[string]any `json:"params,omitempty"`
	// Reason is required; it goes to the audit trail and to the customer's record.
	Reason string `json:"reason"`
	// Timeout is how long the invocation may wait for its agent on top of the
	// command's own timeout, as a Go duration ("10m", the default).
	Timeout string `json:"timeout,omitempty"`
}

// CommandCancel is the body of POST /api/v1/commands/{id}/cancel.
type CommandCancel struct {
	Reason string `json:"reason"`
}

// Check implements Checker.
func (n NewInvocation) Check() error {
	if err := checkNames("", "command", n.Command, "timeout", n.Timeout); err != nil {
		return err
	}
	if err := checkLen("reason", n.Reason, MaxReasonBytes); err != nil {
		return err
	}
	if len(n.Params) > command.MaxParams {
		return fmt.Errorf("params: %d, %w of %d", len(n.Params), ErrLimit, command.MaxParams)
	}
	for k, v := range n.Params {
		if len(k) > command.MaxNameBytes {
			return fmt.Errorf("params: a name of %d bytes, %w of %d bytes", len(k), ErrLimit, command.MaxNameBytes)
		}
		if s, ok := v.(string); ok {
			if err := checkLen("params."+k, s, command.MaxStringParam); err != nil {
				return err
			}
		}
	}
	s := n.Selection
	if s == nil {
		return nil
	}
	if err := checkCount("selection.ids", len(s.IDs)); err != nil {
		return err
	}
	for i, id := range s.IDs {
		if err := checkLen("selection.ids["+strconv.Itoa(i)+"]", id, MaxNameBytes); err != nil {
			return err
		}
	}
	if err := checkNames("selection.", "customer", s.Customer, "stack", s.Stack, "release", s.Release, "status", string(s.Status)); err != nil {
		return err
	}
	return checkLabels("selection.labels", s.Labels)
}

// Check implements Checker.
func (c CommandCancel) Check() error { return checkLen("reason", c.Reason, MaxReasonBytes) }
