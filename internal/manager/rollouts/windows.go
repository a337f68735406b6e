package rollouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/periscope-dev/periscope/internal/rolloutplan"
	"github.com/periscope-dev/periscope/internal/store"
)

// Update windows come from the configuration file and from the API. The API's
// entry for a customer or a deployment replaces the file's entry for that same
// owner (it does not add to it); removing it through the API brings the file's
// back. As in the file, a deployment's own windows replace its customer's.

// WindowsEntry is one customer's or deployment's update windows in force.
type WindowsEntry struct {
	// Kind is store.WindowsOfCustomer or store.WindowsOfDeployment.
	Kind    string              `json:"kind"`
	Owner   string              `json:"owner"`
	Windows rolloutplan.Windows `json:"windows"`
	// Source is "api" for windows set through the API, "config" for the
	// configuration file's.
	Source    string    `json:"source"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// windowKey names an owner of windows.
type windowKey struct{ kind, owner string }

// apiWindows are the windows set through the API, with who set them.
type apiWindows struct {
	windows rolloutplan.Windows
	at      time.Time
	by      string
}

// mergeWindows is the configuration file's windows with the API's entries
// replacing the file's for the same owner.
func mergeWindows(file rolloutplan.WindowSet, api map[windowKey]apiWindows) rolloutplan.WindowSet {
	out := rolloutplan.WindowSet{Customers: map[string]rolloutplan.Windows{}, Deployments: map[string]rolloutplan.Windows{}}
	for k, v := range file.Customers {
		out.Customers[k] = v
	}
	for k, v := range file.Deployments {
		out.Deployments[k] = v
	}
	for k, v := range api {
		if k.kind == store.WindowsOfCustomer {
			out.Customers[k.owner] = v.windows
		} else {
			out.Deployments[k.owner] = v.windows
		}
	}
	return out
}

// loadWindows reads the windows set through the API from the store.
func (e *Engine) loadWindows(ctx context.Context) (map[windowKey]apiWindows, error) {
	recs, err := e.st.ListUpdateWindows(ctx)
	if err != nil {
		return nil, fmt.Errorf("load update windows: %w", err)
	}
	out := make(map[windowKey]apiWindows, len(recs))
	for _, r := range recs {
		var ws rolloutplan.Windows
		if err := json.Unmarshal(r.Windows, &ws); err != nil {
			return nil, fmt.Errorf("load the update windows of %s %s: %w", r.Kind, r.Owner, err)
		}
		out[windowKey{r.Kind, r.Owner}] = apiWindows{windows: ws, at: r.UpdatedAt, by: r.UpdatedBy}
	}
	return out, nil
}

// Windows returns every update window in force, customers first, each owner
// once: the API's entry where there is one, else the configuration file's.
func (e *Engine) Windows() []WindowsEntry {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []WindowsEntry
	for kind, m := range map[string]map[string]rolloutplan.Windows{store.WindowsOfCustomer: e.windows.Customers, store.WindowsOfDeployment: e.windows.Deployments} {
		for owner, ws := range m {
			en := WindowsEntry{Kind: kind, Owner: owner, Windows: ws, Source: "config"}
			if a, ok := e.apiWin[windowKey{kind, owner}]; ok {
				en.Source, en.UpdatedAt, en.UpdatedBy = "api", a.at, a.by
			}
			out = append(out, en)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind == store.WindowsOfCustomer
		}
		return out[i].Owner < out[j].Owner
	})
	return out
}

// checkOwner refuses an owner kind or name the API must not take.
func checkOwner(kind, owner string) error {
	if kind != store.WindowsOfCustomer && kind != store.WindowsOfDeployment {
		return fmt.Errorf("update windows belong to a customer or a deployment, not a %q: %w", kind, ErrInvalid)
	}
	if owner == "" || len(owner) > maxOwnerLen {
		return fmt.Errorf("name the %s (1 to %d bytes): %w", kind, maxOwnerLen, ErrInvalid)
	}
	return nil
}

// maxOwnerLen bounds a customer's or deployment's name in a windows entry.
const maxOwnerLen = 256

// SetWindows sets the update windows of a customer or a deployment through
// the API, replacing the configuration file's for that owner, audited with
// who and why. The deployments it concerns are re-decided at once: one whose
// window just closed shows outside-window, one whose window opened receives
// its offer.
func (e *Engine) SetWindows(ctx context.Context, kind, owner string, ws rolloutplan.Windows, a Actor) error {
	if err := checkOwner(kind, owner); err != nil {
		return err
	}
	set := rolloutplan.WindowSet{Customers: map[string]rolloutplan.Windows{}, Deployments: map[string]rolloutplan.Windows{}}
	if kind == store.WindowsOfCustomer {
		set.Customers[owner] = ws
	} else {
		set.Deployments[owner] = ws
	}
	if err := (rolloutplan.Config{Windows: set}).Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := needReason(a); err != nil {
		return err
	}
	body, err := json.Marshal(ws)
	if err != nil {
		return err
	}
	e.change.Lock()
	defer e.change.Unlock()
	now := e.clk.Now().UTC()
	entry := settingEntry(now, a, store.ActionUpdateWindows, kind+":"+owner, string(body))
	if err := e.st.PutUpdateWindows(ctx, store.UpdateWindowsRecord{Kind: kind, Owner: owner, Windows: body, UpdatedAt: now, UpdatedBy: actorName(a)}, entry); err != nil {
		return err
	}
	e.mu.Lock()
	e.apiWin[windowKey{kind, owner}] = apiWindows{windows: ws, at: now, by: actorName(a)}
	e.windows = mergeWindows(e.fileWindows, e.apiWin)
	e.mu.Unlock()
	e.windowsChanged(kind, owner)
	return nil
}

// RemoveWindows removes the update windows set through the API for a
// customer or a deployment; the configuration file's, if any, apply again.
// ErrNotFound when the API set none.
func (e *Engine) RemoveWindows(ctx context.Context, kind, owner string, a Actor) error {
	if err := checkOwner(kind, owner); err != nil {
		return err
	}
	if err := needReason(a); err != nil {
		return err
	}
	e.change.Lock()
	defer e.change.Unlock()
	now := e.clk.Now().UTC()
	entry := settingEntry(now, a, store.ActionUpdateWindows, kind+":"+owner, `{"removed":true}`)
	if err := e.st.DeleteUpdateWindows(ctx, kind, owner, entry); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no update windows set through the API for %s %s: %w", kind, owner, ErrNotFound)
		}
		return err
	}
	e.mu.Lock()
	delete(e.apiWin, windowKey{kind, owner})
	e.windows = mergeWindows(e.fileWindows, e.apiWin)
	e.mu.Unlock()
	e.windowsChanged(kind, owner)
	return nil
}

// windowsChanged re-decides the deployments an owner's windows concern and
// tells OnDesired about them, so their offers go out or are held at once;
// the caller holds change.
func (e *Engine) windowsChanged(kind, owner string) {
	members := e.fleet.Members("")
	now := e.clk.Now()
	var ids []string
	e.mu.Lock()
	for i := range members {
		m := &members[i]
		if (kind == store.WindowsOfCustomer && m.Customer != owner) || (kind == store.WindowsOfDeployment && m.ID != owner) {
			continue
		}
		ids = append(ids, m.ID)
		if d := e.decideLocked(m, now); d.Behind == BehindOutsideWindow {
			e.held[m.ID] = true
		} else {
			delete(e.held, m.ID)
		}
	}
	e.mu.Unlock()
	if len(ids) > 0 && e.onDes != nil {
		sort.Strings(ids)
		e.onDes(ids)
	}
}
