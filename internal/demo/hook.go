package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
)

// The demo's update hook: every demo agent is configured with a webhook
// (update.webhook, as a vendor would point it at its CI or deploy service),
// and the demo answers it by switching the deployment's service to the
// offered release. The agent then reports the release applied, so rollouts
// and pins move deployments for real.

// hookBodyMax bounds what the hook reads of a request: the agent's JSON is a
// few hundred bytes.
const hookBodyMax = 4 << 10

// hookPath is where deployment id's agent posts its offers.
func hookPath(id string) string { return "/deploy/" + id }

// releaseName is what an offered release must look like: the agent checks
// the same before running a hook.
var releaseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

// hookRequest is the part of the agent's webhook body the demo uses.
type hookRequest struct {
	Release         string `json:"release"`
	PreviousRelease string `json:"previous_release"`
}

// parseHook reads an update hook's body: bounded, and refused unless it
// names a well-formed release.
func parseHook(r io.Reader) (hookRequest, error) {
	var req hookRequest
	data, err := io.ReadAll(io.LimitReader(r, hookBodyMax+1))
	if err != nil {
		return req, fmt.Errorf("read the offer: %w", err)
	}
	if len(data) > hookBodyMax {
		return req, fmt.Errorf("the offer is larger than %d bytes", hookBodyMax)
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return req, fmt.Errorf("decode the offer: %w", err)
	}
	if !releaseName.MatchString(req.Release) {
		return req, errors.New("the offer names no well-formed release")
	}
	return req, nil
}

// newHookHandler answers deployments' update hooks by switching their
// service to the offered release; 404 for a deployment the demo does not
// run, 503 once the demo stops, 500 when the switch fails (the agent then
// reports the update failed either way).
func newHookHandler(svcs *services, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /deploy/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		req, err := parseHook(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := svcs.Switch(r.Context(), id, req.Release); err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, errStopping):
				// Part of an orderly stop, not a failure to report.
				log.Debug("a demo deployment did not switch release: the demo is stopping", "deployment", id, "release", req.Release, "error", err)
				code = http.StatusServiceUnavailable
			case errors.Is(err, errNoDeployment):
				log.Warn("a demo deployment could not switch release", "deployment", id, "release", req.Release, "error", err)
				code = http.StatusNotFound
			default:
				log.Warn("a demo deployment could not switch release", "deployment", id, "release", req.Release, "error", err)
			}
			http.Error(w, err.Error(), code)
			return
		}
		log.Debug("a demo deployment switched release", "deployment", id, "from", req.PreviousRelease, "to", req.Release)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// errNoDeployment is a switch asked for a deployment the demo does not run.
var errNoDeployment = errors.New("no such deployment in the demo")
