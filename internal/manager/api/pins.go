package api

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// Pins, rollbacks, release adoption and the deployments behind the latest
// release. Every change goes through registry.Pin, which applies it to all the
// selected deployments or to none and refuses one that overlaps a change in
// progress (409); the caller's token name is recorded as who made it.

// Values of the behind filter beside the reasons themselves.
const (
	// behindAny: behind its desired release, for any reason.
	behindAny = "any"
	// behindLatest: not on its stack's latest release, for any reason (pinned
	// included).
	behindLatest = "latest"
)

// checkBehind refuses a behind filter value no deployment could match.
func checkBehind(s string) error {
	switch s {
	case "", behindAny, behindLatest, string(fleet.BehindPinned):
		return nil
	}
	names := []string{behindAny, behindLatest}
	for _, r := range fleet.BehindReasons {
		if string(r) == s {
			return nil
		}
		names = append(names, string(r))
	}
	names = append(names, string(fleet.BehindPinned))
	return fmt.Errorf("behind: unknown value %q (want one of %s)", s, strings.Join(names, ", "))
}

func pinResultJSON(res registry.PinResult) apitypes.PinResult {
	out := apitypes.PinResult{ChangeID: res.ChangeID, Changed: res.Changes, Unchanged: res.Unchanged}
	if out.Changed == nil {
		out.Changed = []apitypes.PinChange{}
	}
	return out
}

// applyPin runs one pin change and answers what it did.
func (a *API) applyPin(w http.ResponseWriter, r *http.Request, req registry.PinRequest) {
	res, err := a.fleet.Pin(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pinResultJSON(res))
}

// pathDeployment selects the deployment named in the path.
func pathDeployment(r *http.Request) registry.Selector {
	return registry.Selector{IDs: []string{r.PathValue("id")}}
}

func (a *API) pinDeployment(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.NewPin
	if !decode(w, r, &body) {
		return
	}
	a.applyPin(w, r, registry.PinRequest{Select: pathDeployment(r), Action: fleet.ActionPin, Release: body.Release, By: tok.Name, ByRole: string(tok.Role), Reason: body.Reason})
}

func (a *API) unpinDeployment(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.PinReason
	if !decodeOptional(w, r, &body) {
		return
	}
	a.applyPin(w, r, registry.PinRequest{Select: pathDeployment(r), Action: fleet.ActionUnpin, By: tok.Name, ByRole: string(tok.Role), Reason: body.Reason})
}

func (a *API) rollbackDeployment(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.PinReason
	if !decode(w, r, &body) {
		return
	}
	a.applyPin(w, r, registry.PinRequest{Select: pathDeployment(r), Action: fleet.ActionRollback, By: tok.Name, ByRole: string(tok.Role), Reason: body.Reason})
}

// pinFilter turns a bulk change's filter into the fleet's.
func pinFilter(pf apitypes.PinFilter) (fleet.Filter, error) {
	f := fleet.Filter{Customer: pf.Customer, Cloud: pf.Cloud, Region: pf.Region, Stack: pf.Stack, Release: pf.Release,
		Labels: pf.Labels, Behind: pf.Behind}
	if pf.Status != "" {
		st, err := fleet.ParseStatus(string(pf.Status))
		if err != nil {
			return f, fmt.Errorf("filter.status: %w", err)
		}
		f.Status = st
	}
	if err := checkBehind(pf.Behind); err != nil {
		return f, fmt.Errorf("filter.%w", err)
	}
	if pf.Pinned != nil {
		f.Pinned = strconv.FormatBool(*pf.Pinned)
	}
	return f, nil
}

func (a *API) changePins(w http.ResponseWriter, r *http.Request, tok auth.APIToken) {
	var body apitypes.PinRequest
	if !decode(w, r, &body) {
		return
	}
	invalid := func(msg string) { writeError(w, http.StatusBadRequest, "invalid", msg) }
	switch body.Action {
	case fleet.ActionPin, fleet.ActionUnpin, fleet.ActionRollback:
	default:
		invalid(fmt.Sprintf("action: %q: want pin, unpin or rollback", body.Action))
		return
	}
	if body.Release != "" && body.Action != fleet.ActionPin {
		target := "their stack's latest release"
		if body.Action == fleet.ActionRollback {
			target = "the release each ran before its current one"
		}
		invalid(fmt.Sprintf("release applies to pin only: %s moves the deployments to %s", body.Action, target))
		return
	}
	ways := 0
	for _, given := range []bool{len(body.Deployments) > 0, body.Filter != nil, body.All} {
		if given {
			ways++
		}
	}
	if ways != 1 {
		invalid("select the deployments one way: deployments (ids), filter, or all (the whole fleet)")
		return
	}
	sel := registry.Selector{IDs: body.Deployments, All: body.All}
	if body.Filter != nil {
		f, err := pinFilter(*body.Filter)
		if err != nil {
			invalid(err.Error())
			return
		}
		sel.Filter = f
	}
	a.applyPin(w, r, registry.PinRequest{Select: sel, Action: body.Action, Release: body.Release, By: tok.Name, ByRole: string(tok.Role), Reason: body.Reason})
}

func (a *API) pinHistory(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	limit, err := intParam(r, "limit", 100, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	chs, err := a.fleet.PinChanges(r.Context(), r.URL.Query().Get("deployment"), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if chs == nil {
		chs = []fleet.PinChange{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": chs})
}

func (a *API) releaseAdoption(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	ads := a.fleet.Adoption(r.URL.Query().Get("stack"))
	out := make([]apitypes.Adoption, len(ads))
	for i, ad := range ads {
		out[i] = apitypes.Adoption{Stack: ad.Stack, Latest: ad.Latest, Total: ad.Total, Releases: make([]apitypes.ReleaseAdoption, len(ad.Releases))}
		for j, ra := range ad.Releases {
			out[i].Releases[j] = apitypes.ReleaseAdoption{Version: ra.Version, Published: ra.Published, Running: ra.Running, Desired: ra.Desired, Pinned: ra.Pinned, Behind: ra.Behind}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

// behindJSON converts a deployment not on its stack's latest release to its
// API shape, counting days since it was superseded up to now.
func behindJSON(v registry.View, now time.Time) apitypes.BehindDeployment {
	d, e := v.Deployment, v.Evaluation
	out := apitypes.BehindDeployment{ID: d.ID, Name: d.Name, Customer: d.Customer, Cloud: d.Cloud, Region: d.Region, Stack: d.Stack,
		Status: e.Status, Release: d.RunningRelease, DesiredRelease: e.Desired, LatestRelease: e.Latest,
		Reason: e.BehindLatest(), VersionsBehind: e.VersionsBehind, SupersededAt: timePtr(e.SupersededAt),
		BehindSince: timePtr(d.BehindSince), NextPollExpected: timePtr(e.NextPollExpected), Pin: d.Pin, LastCheckin: timePtr(d.LastCheckin)}
	if !e.SupersededAt.IsZero() {
		out.DaysSinceSuperseded = max(0, math.Round(now.Sub(e.SupersededAt).Hours()/24*10)/10)
	}
	return out
}

func (a *API) behindDeployments(w http.ResponseWriter, r *http.Request, _ auth.APIToken) {
	f, err := filterFrom(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	now := a.clock.Now()
	type behind struct {
		out          apitypes.BehindDeployment
		supersededAt time.Time
	}
	var all []behind
	views, _ := a.fleet.List(f, registry.Page{})
	for _, v := range views {
		if v.Evaluation.BehindLatest() != "" {
			all = append(all, behind{behindJSON(v, now), v.Evaluation.SupersededAt})
		}
	}
	// Longest behind first: superseded earliest, then most releases behind.
	sort.SliceStable(all, func(i, j int) bool {
		x, y := all[i], all[j]
		if !x.supersededAt.Equal(y.supersededAt) {
			return x.supersededAt.Before(y.supersededAt)
		}
		return x.out.VersionsBehind > y.out.VersionsBehind
	})
	out := make([]apitypes.BehindDeployment, len(all))
	for i, b := range all {
		out[i] = b.out
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": out})
}
