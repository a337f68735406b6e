package demo

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recorded is a service that notes its start and stop in a shared log.
type recorded struct {
	spec serviceSpec
	log  *[]string
}

func (r *recorded) Start(context.Context) error {
	*r.log = append(*r.log, "start "+r.spec.Release+faultMark(r.spec))
	return nil
}

func (r *recorded) Shutdown(context.Context) error {
	*r.log = append(*r.log, "stop "+r.spec.Release)
	return nil
}

func faultMark(s serviceSpec) string {
	if s.Faulty {
		return " (faulty)"
	}
	return ""
}

// TestHookSwitchesTheService posts offers to the update hook as an agent's
// webhook does, and checks that the deployment's service is replaced by the
// offered release's, the faulty one only where the scenario says, that a
// repeated offer restarts nothing, and that bad offers change nothing.
func TestHookSwitchesTheService(t *testing.T) {
	var log []string
	svcs := newServices(func(s serviceSpec) (service, error) { return &recorded{spec: s, log: &log}, nil },
		func(id, release string) (serviceSpec, bool) {
			if id != regressedOn {
				return serviceSpec{}, false
			}
			return serviceSpec{Deployment: id, Release: release, Faulty: release == Next}, true
		})
	srv := httptest.NewServer(newHookHandler(svcs, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	post := func(id, body string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+hookPath(id), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, step := range []struct {
		id, body string
		code     int
	}{
		{regressedOn, `{"release":"1.7.2","previous_release":""}`, http.StatusNoContent},
		{regressedOn, `{"release":"1.8.0","previous_release":"1.7.2"}`, http.StatusNoContent},
		{regressedOn, `{"release":"1.8.0","previous_release":"1.8.0"}`, http.StatusNoContent},
		{regressedOn, `{"release":"1.7.2","previous_release":"1.8.0"}`, http.StatusNoContent},
		{"nosuch-prod", `{"release":"1.8.0"}`, http.StatusNotFound},
		{regressedOn, `{"release":"1.8.0; rm -rf /"}`, http.StatusBadRequest},
		{regressedOn, `not json`, http.StatusBadRequest},
		{regressedOn, `{"release":"` + strings.Repeat("9", hookBodyMax) + `"}`, http.StatusBadRequest},
	} {
		if code := post(step.id, step.body); code != step.code {
			t.Errorf("offer %.60s to %s answered %d, want %d", step.body, step.id, code, step.code)
		}
	}
	want := []string{"start 1.7.2", "stop 1.7.2", "start 1.8.0 (faulty)", "stop 1.8.0", "start 1.7.2"}
	if strings.Join(log, ", ") != strings.Join(want, ", ") {
		t.Errorf("the service went %q, want %q", log, want)
	}
	if got := svcs.Release(regressedOn); got != Current {
		t.Errorf("%s runs %q, want %s", regressedOn, got, Current)
	}
}

// FuzzParseHook feeds the update hook's parser arbitrary bodies: it never
// panics, and what it accepts names a release safe to pass on.
func FuzzParseHook(f *testing.F) {
	f.Add([]byte(`{"release":"1.8.0","previous_release":"1.7.2","stack":"lighthouse","config_hash":"","instance_uid":"x"}`))
	f.Add([]byte(`{"release":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseHook(strings.NewReader(string(body)))
		if err != nil {
			if errors.Is(err, errNoDeployment) {
				t.Fatalf("a parse error claims a missing deployment: %v", err)
			}
			return
		}
		if !releaseName.MatchString(req.Release) || len(body) > hookBodyMax {
			t.Fatalf("accepted %q from a body of %d bytes", req.Release, len(body))
		}
	})
}
