package apitypes

import (
	"errors"
	"fmt"
	"strconv"
)

// Limits on what request bodies may carry. Names and labels ride in every list
// and page afterwards, so they are kept short; the server answers 400 naming
// the field and its limit when a body goes past one.
const (
	// MaxNameBytes bounds names, identifiers, release versions, and the
	// customer, platform, cloud, region and stack of a deployment.
	MaxNameBytes = 256
	// MaxLabels bounds the labels of a deployment or a filter.
	MaxLabels = 64
	// MaxLabelBytes bounds a label's key and its value, each.
	MaxLabelBytes = 256
	// MaxReasonBytes bounds the reason of a pin change.
	MaxReasonBytes = 1 << 10
	// MaxNotesBytes bounds a release's notes.
	MaxNotesBytes = 16 << 10
	// MaxQueryValueBytes bounds each value of a query parameter.
	MaxQueryValueBytes = 1 << 10
	// MaxListItems bounds the deployments of a batch and the ids a pin change
	// lists.
	MaxListItems = 10_000
)

// Checker is a request body that checks its fields against the limits above.
type Checker interface {
	// Check returns an error naming the first field past its limit.
	Check() error
}

// ErrLimit is wrapped by every Check error.
var ErrLimit = errors.New("over the limit")

func checkLen(field, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%s: %d bytes, %w of %d bytes", field, len(v), ErrLimit, max)
	}
	return nil
}

func checkLabels(field string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%s: %d labels, %w of %d", field, len(labels), ErrLimit, MaxLabels)
	}
	for k, v := range labels {
		if len(k) > MaxLabelBytes {
			return fmt.Errorf("%s: a key of %d bytes, %w of %d bytes", field, len(k), ErrLimit, MaxLabelBytes)
		}
		if err := checkLen(field+"."+k, v, MaxLabelBytes); err != nil {
			return err
		}
	}
	return nil
}

func checkCount(field string, n int) error {
	if n > MaxListItems {
		return fmt.Errorf("%s: %d items, %w of %d", field, n, ErrLimit, MaxListItems)
	}
	return nil
}

func checkNames(prefix string, fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if err := checkLen(prefix+fields[i], fields[i+1], MaxNameBytes); err != nil {
			return err
		}
	}
	return nil
}

// Check implements Checker.
func (d NewDeployment) Check() error {
	if err := checkNames("", "id", d.ID, "name", d.Name, "customer", d.Customer, "platform", d.Platform,
		"cloud", d.Cloud, "region", d.Region, "stack", d.Stack); err != nil {
		return err
	}
	return checkLabels("labels", d.Labels)
}

// Check implements Checker.
func (b NewDeployments) Check() error {
	if err := checkCount("deployments", len(b.Deployments)); err != nil {
		return err
	}
	for i, d := range b.Deployments {
		if err := d.Check(); err != nil {
			return fmt.Errorf("deployments[%d].%w", i, err)
		}
	}
	return nil
}

// Check implements Checker.
func (r NewRelease) Check() error {
	if err := checkNames("", "stack", r.Stack, "version", r.Version); err != nil {
		return err
	}
	if err := checkLen("reason", r.Reason, MaxReasonBytes); err != nil {
		return err
	}
	return checkLen("notes", r.Notes, MaxNotesBytes)
}

// Check implements Checker.
func (p NewPin) Check() error {
	if err := checkLen("release", p.Release, MaxNameBytes); err != nil {
		return err
	}
	return checkLen("reason", p.Reason, MaxReasonBytes)
}

// Check implements Checker.
func (p PinReason) Check() error { return checkLen("reason", p.Reason, MaxReasonBytes) }

// Check implements Checker.
func (p PinRequest) Check() error {
	if err := checkNames("", "action", string(p.Action), "release", p.Release); err != nil {
		return err
	}
	if err := checkLen("reason", p.Reason, MaxReasonBytes); err != nil {
		return err
	}
	if err := checkCount("deployments", len(p.Deployments)); err != nil {
		return err
	}
	for i, id := range p.Deployments {
		if err := checkLen("deployments["+strconv.Itoa(i)+"]", id, MaxNameBytes); err != nil {
			return err
		}
	}
	if f := p.Filter; f != nil {
		if err := checkNames("filter.", "customer", f.Customer, "cloud", f.Cloud, "region", f.Region, "stack", f.Stack,
			"release", f.Release, "status", string(f.Status), "behind", f.Behind); err != nil {
			return err
		}
		return checkLabels("filter.labels", f.Labels)
	}
	return nil
}

// Check implements Checker.
func (t NewToken) Check() error { return checkNames("", "name", t.Name, "role", t.Role) }
