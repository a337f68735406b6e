package telstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

func TestErrorRatesOfSeveralDeploymentsInOneQuery(t *testing.T) {
	s := open(t, t.TempDir(), Settings{})
	sendReleases(t, s)
	// The clock stands at t0+1h: the default window is the hour from t0.
	got, err := s.ErrorRates(context.Background(), telquery.ErrorRateQuery{Deployments: []string{"acme-prod", "nobody", "umbrella-dr"}})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Since.Equal(t0) || !got.Until.Equal(t0.Add(time.Hour)) || got.StepSec != 60 || len(got.Series) != 3 {
		t.Fatalf("window %s–%s step %v, %d series; want the hour from t0 by minute, 3 series", got.Since, got.Until, got.StepSec, len(got.Series))
	}
	acme, nobody, umb := got.Series[0], got.Series[1], got.Series[2]
	if acme.Deployment != "acme-prod" || nobody.Deployment != "nobody" || umb.Deployment != "umbrella-dr" {
		t.Fatalf("series not in the order asked: %s, %s, %s", acme.Deployment, nobody.Deployment, umb.Deployment)
	}
	for _, sr := range got.Series {
		if len(sr.Points) != 60 {
			t.Fatalf("%s: %d points; want one per minute of the hour", sr.Deployment, len(sr.Points))
		}
	}
	if acme.Requests != 1000 || acme.Errors != 60 || nobody.Requests != 0 || umb.Requests != 500 || umb.Errors != 0 {
		t.Fatalf("totals acme %d/%d nobody %d umbrella %d/%d; want 1000/60, 0, 500/0", acme.Requests, acme.Errors, nobody.Requests, umb.Requests, umb.Errors)
	}
	if p := acme.Points[0]; !p.Time.Equal(t0) || p.Requests != 100 || p.Errors != 2 || p.ErrorRate != 0.02 {
		t.Fatalf("acme minute 0 = %+v; want 100 requests, 2 errors, 2%%", p)
	}
	if p := acme.Points[7]; p.ErrorRate != 0.1 {
		t.Fatalf("acme minute 7 = %+v; want 10%% on 1.1.0", p)
	}
	if p := acme.Points[30]; p.Requests != 0 || p.ErrorRate != 0 {
		t.Fatalf("acme minute 30 = %+v; want a quiet minute", p)
	}

	// A narrower window, and the limits.
	got, err = s.ErrorRates(context.Background(), telquery.ErrorRateQuery{Deployments: []string{"acme-prod"}, Since: t0.Add(5 * time.Minute), Until: t0.Add(7 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if sr := got.Series[0]; len(sr.Points) != 2 || sr.Requests != 200 || sr.Errors != 20 {
		t.Fatalf("minutes 5-6: %+v; want 2 points, 200 requests, 20 errors", sr)
	}
	for _, q := range []telquery.ErrorRateQuery{{}, {Deployments: make([]string, telquery.MaxErrorRateDeployments+1)},
		{Deployments: []string{"acme-prod"}, Since: t0.Add(-48 * time.Hour)}} {
		if _, err := s.ErrorRates(context.Background(), q); !errors.Is(err, telquery.ErrInvalid) {
			t.Errorf("%d deployments since %s: err = %v; want ErrInvalid", len(q.Deployments), q.Since, err)
		}
	}
}
