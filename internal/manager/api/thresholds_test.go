package api_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

func TestThresholdsAreSetByOperatorsWithAReasonAndAudited(t *testing.T) {
	ctx := context.Background()
	m := start(t)
	adm := apiclient.New(m.URL(), admin)
	if _, err := adm.CreateDeployment(ctx, apitypes.NewDeployment{ID: "acme", Customer: "acme", Stack: "app"}); err != nil {
		t.Fatal(err)
	}
	viewer := apiclient.New(m.URL(), newToken(t, adm, "dash", "viewer").Secret)
	op := apiclient.New(m.URL(), newToken(t, adm, "oncall", "operator").Secret)
	set := thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}},
		Filesystems: []thresholds.FilesystemRule{{Source: "filesystem/data", MinFreePercent: 10}}}

	for _, tc := range []struct {
		name   string
		c      *apiclient.Client
		id     string
		body   apitypes.NewThresholds
		status int
		msg    string
	}{
		{"a viewer may not", viewer, "acme", apitypes.NewThresholds{Thresholds: set, Reason: "x"}, 403, "operator"},
		{"a reason is required", op, "acme", apitypes.NewThresholds{Thresholds: set}, 400, "reason"},
		{"a rule out of bounds", op, "acme", apitypes.NewThresholds{Thresholds: thresholds.Set{Filesystems: []thresholds.FilesystemRule{{Source: "*", MinFreePercent: 120}}}, Reason: "x"},
			400, "filesystems[0].min_free_percent"},
		{"an unknown deployment", op, "ghost", apitypes.NewThresholds{Thresholds: set, Reason: "x"}, 404, "ghost"},
	} {
		err := tc.c.Do(ctx, "PUT", "/api/v1/deployments/"+tc.id+"/thresholds", tc.body, nil)
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message, tc.msg) {
			t.Errorf("%s: %v; want %d mentioning %q", tc.name, err, tc.status, tc.msg)
		}
	}

	got, err := op.SetThresholds(ctx, "acme", set, "orders backlog paged us twice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Thresholds, set) || got.Hash != thresholds.Hash(set) || got.InSync || got.AgentHash != nil {
		t.Errorf("PUT answered %+v", got)
	}
	if read, err := viewer.Thresholds(ctx, "acme"); err != nil || !reflect.DeepEqual(read, got) {
		t.Errorf("GET answered %+v, %v; want %+v", read, err, got)
	}
	var page apitypes.AuditPage
	if err := op.Do(ctx, "GET", "/api/v1/audit?action=thresholds.set", nil, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 {
		t.Fatalf("audit has %d thresholds entries, want 1", len(page.Items))
	}
	if e := page.Items[0]; e.Actor != "oncall" || e.ActorRole != "operator" || e.Reason != "orders backlog paged us twice" || e.DeploymentID != "acme" ||
		!strings.Contains(e.Target, "queue lag * 1000") {
		t.Errorf("audit entry %+v", e)
	}
}

// FuzzThresholdsBody sends the thresholds endpoint hostile bodies: none may
// get a server error, and what is accepted reads back as a valid set.
func FuzzThresholdsBody(f *testing.F) {
	for _, seed := range []string{``, `{}`, `{"reason":"x","thresholds":{"queues":[{"source":"*","max_lag":1000}]}}`,
		`{"reason":"x","thresholds":{"filesystems":[{"source":"fs/data","min_free_percent":1e400}]}}`,
		`{"reason":"x","thresholds":{"queues":[{"source":"\u0000","max_lag":1}]}}`, `{"reason":"x","thresholds":null}`, `[`} {
		f.Add(seed)
	}
	m := start(f)
	adm := apiclient.New(m.URL(), admin)
	if _, err := adm.CreateDeployment(context.Background(), apitypes.NewDeployment{ID: "acme", Stack: "app"}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := http.NewRequest("PUT", m.URL()+"/api/v1/deployments/acme/thresholds", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("PUT with %q: %d", body, resp.StatusCode)
		}
		if resp.StatusCode == 200 {
			got, err := adm.Thresholds(context.Background(), "acme")
			if err != nil || got.Thresholds.Validate() != nil {
				t.Fatalf("after accepting %q the set reads back %+v, %v", body, got.Thresholds, err)
			}
		}
	})
}
