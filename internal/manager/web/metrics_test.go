package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// sendQueueDepth stores a gauge named name for acme-prod over the last 20
// minutes, one point a minute per queue.
func (f *fixture) sendQueueDepth(name string, queues ...string) {
	f.t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	depTel{"acme-prod", "acme", "1.1.0", "worker"}.tag(rm.Resource())
	g := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	g.SetName(name)
	g.SetUnit("{messages}")
	pts := g.SetEmptyGauge().DataPoints()
	now := f.clk.Now()
	for m := range 20 {
		for i, q := range queues {
			p := pts.AppendEmpty()
			p.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(m-20) * time.Minute)))
			p.SetIntValue(int64((i + 1) * (m + 1)))
			p.Attributes().PutStr("queue", q)
		}
	}
	data, err := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.tel.Consume(ctx, consumer.Batch{Signal: otlp.Metrics, DeploymentID: "acme-prod", Received: now, Records: md.DataPointCount(), Data: data}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.tel.Flush(ctx); err != nil {
		f.t.Fatal(err)
	}
}

func TestMetricsListAndSeries(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.signIn(auth.RoleViewer)
	if page := body(t, b.get("/metrics/")); !strings.Contains(page, "No metrics") || !strings.Contains(page, "OTEL_EXPORTER_OTLP_ENDPOINT") {
		t.Errorf("empty list does not teach:\n%s", page)
	}
	f.sendQueueDepth("queue.depth", "orders", "emails")
	page := body(t, b.get("/metrics/?deployment=acme-prod"))
	if !regexp.MustCompile(`<a class="mono" href="/metrics/queue.depth\?deployment=acme-prod">queue.depth</a></td><td>gauge</td><td class="mono">{messages}</td><td class="num">40</td>`).MatchString(page) {
		t.Errorf("list lacks queue.depth with its figures:\n%s", page)
	}
	if page := body(t, b.get("/metrics/?deployment=other")); strings.Contains(page, "queue.depth") {
		t.Error("the list ignores the deployment filter")
	}

	res := b.get("/metrics/queue.depth?deployment=acme-prod&group_by=queue&agg=max&step=5m&since=1h")
	page = body(t, res)
	if res.Code != http.StatusOK {
		t.Fatalf("series: %d\n%s", res.Code, page)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`<svg class="chart" data-chart="metric"`),
		regexp.MustCompile(`data-series="emails" data-label="emails" data-points="[^"]+"`),
		regexp.MustCompile(`data-series="orders" data-label="orders"`),
		regexp.MustCompile(`max of each 300 s step, by queue`),
		// emails is the second queue: twice the minute's number, 40 at the end.
		regexp.MustCompile(`<td class="mono">emails</td><td class="num">40</td>`),
		regexp.MustCompile(`href="\?agg=max&amp;deployment=acme-prod&amp;group_by=queue&amp;since=6h&amp;step=5m"`),
	} {
		if !want.MatchString(page) {
			t.Errorf("series page lacks %s", want)
		}
	}
	if res := b.get("/metrics/queue.depth?agg=median"); res.Code != http.StatusBadRequest || !strings.Contains(body(t, res), "want avg, sum, min, max or last") {
		t.Errorf("bad agg: %d", res.Code)
	}
}

func TestMetricsPagesEscapeNamesAndGroups(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.sendQueueDepth(depEvilValue, depEvilValue)
	b := f.signIn(auth.RoleViewer)
	list := body(t, b.get("/metrics/"))
	series := body(t, b.get("/metrics/"+url.PathEscape(depEvilValue)+"?group_by=queue"))
	for name, page := range map[string]string{"list": list, "series": series} {
		if strings.Contains(page, "<script>alert") {
			t.Errorf("%s: raw script on the page", name)
		}
		if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: escaped name missing", name)
		}
	}
	if !strings.Contains(series, `data-series="&lt;script&gt;alert(1)&lt;/script&gt;"`) {
		t.Error("the group is not escaped in the chart")
	}
}

func TestPagesWithoutATelemetryStoreSaySo(t *testing.T) {
	f := newFixture(t, web.Settings{Telemetry: (*telstore.Store)(nil)})
	if _, err := f.reg.CreateDeployments(context.Background(), []registry.NewDeployment{{ID: "acme-prod", Customer: "acme", Stack: "shop"}}); err != nil {
		t.Fatal(err)
	}
	b := f.signIn(auth.RoleViewer)
	for _, path := range []string{"/deployments/acme-prod", "/metrics/", "/metrics/queue.depth"} {
		res := b.get(path)
		if page := body(t, res); res.Code != http.StatusOK || !strings.Contains(page, "runs without a telemetry store") {
			t.Errorf("%s: %d, and does not say there is no store", path, res.Code)
		}
	}
}
