package web_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	xhtml "golang.org/x/net/html"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/web"
)

// spanRows lists table#spans's rows as "name -> trace link".
func spanRows(t *testing.T, doc *xhtml.Node) []string {
	t.Helper()
	var out []string
	for _, row := range telAll(doc, telHas("tr", "data-span-row")) {
		links := telAll(row, telHas("a", "href"))
		if len(links) == 0 {
			t.Fatal("a span row links nowhere")
		}
		h, _ := telAttr(links[0], "href")
		out = append(out, telText(links[0])+" -> "+h)
	}
	return out
}

const (
	traceA = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceB = "0af7651916cd43dd8448eb211c80319c"
)

func TestSpanSearchFiltersAndPages(t *testing.T) {
	f := newFixture(t, web.Settings{})
	at := f.clk.Now().Add(-30 * time.Minute)
	f.storeSpans(acme2,
		spanRec{trace: traceA, id: "a1", name: "POST /pay", kind: ptrace.SpanKindServer, at: at, dur: 900 * time.Millisecond, err: "card service down"},
		spanRec{trace: traceA, id: "a2", parent: "a1", name: "charge", kind: ptrace.SpanKindInternal, at: at.Add(time.Millisecond), dur: 800 * time.Millisecond})
	f.storeSpans(umb1,
		spanRec{trace: traceB, id: "b1", name: "GET /search", kind: ptrace.SpanKindServer, at: at.Add(time.Minute), dur: 20 * time.Millisecond})
	b := f.signIn(auth.RoleViewer)

	cases := []struct {
		query string
		want  []string
	}{
		{"", []string{"GET /search -> /traces/" + traceB, "charge -> /traces/" + traceA, "POST /pay -> /traces/" + traceA}},
		{"errors=true", []string{"POST /pay -> /traces/" + traceA}},
		{"roots=true&deployment=acme-prod", []string{"POST /pay -> /traces/" + traceA}},
		{"min_duration=850ms", []string{"POST /pay -> /traces/" + traceA}},
		{"name=charge&release=2.0.0&service=checkout&function=charge&customer=acme&since=1h", []string{"charge -> /traces/" + traceA}},
		{"cloud=aws&region=eu-west-1&stack=shop&until=" + url.QueryEscape(at.Add(time.Second).Format(time.RFC3339)), []string{"charge -> /traces/" + traceA, "POST /pay -> /traces/" + traceA}},
		{"customer=nobody", nil},
	}
	for _, c := range cases {
		doc, _ := telPage(t, b.get("/traces?"+c.query), http.StatusOK)
		if got := spanRows(t, doc); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("/traces?%s shows %q, want %q", c.query, got, c.want)
		}
	}

	// Paging: one span a page, newest first, each page keeping the filters.
	target := "/traces?service=checkout&limit=1"
	var seen []string
	for target != "" && len(seen) < 5 {
		doc, page := telPage(t, b.get(target), http.StatusOK)
		seen = append(seen, spanRows(t, doc)...)
		target = ""
		for _, a := range telAll(doc, telHas("a", "rel")) {
			target, _ = telAttr(a, "href")
		}
		if len(seen) == 1 && !strings.Contains(page, `class="num">800.0 ms</td>`) {
			t.Errorf("the duration is not a right-aligned figure with its unit")
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint([]string{"charge -> /traces/" + traceA, "POST /pay -> /traces/" + traceA}) {
		t.Errorf("pages show %q", seen)
	}

	// Values filter; bad filters are refused in words.
	doc, _ := telPage(t, b.get("/traces?errors=true"), http.StatusOK)
	hrefs := map[string]bool{}
	for _, a := range telAll(doc, telHas("a", "href")) {
		h, _ := telAttr(a, "href")
		hrefs[h] = true
	}
	for _, want := range []string{"/traces?errors=true&release=2.0.0", "/traces?deployment=acme-prod&errors=true", "/traces?errors=true&service=checkout", "/traces?errors=true&function=charge"} {
		if !hrefs[want] {
			t.Errorf("no link to %s", want)
		}
	}
	for _, q := range []string{"errors=maybe", "min_duration=slow", "since=tomorrow"} {
		v, _ := url.ParseQuery(q)
		_, perr := telquery.ParseSpanQuery(v, f.clk.Now())
		_, page := telPage(t, b.get("/traces?"+q), http.StatusBadRequest)
		if perr == nil || !strings.Contains(page, html.EscapeString(perr.Error())) {
			t.Errorf("%s: the page does not say %v", q, perr)
		}
	}
}

// waterfallRows lists #waterfall's spans as "depth name function/service error".
func waterfallRows(t *testing.T, doc *xhtml.Node) []string {
	t.Helper()
	wf := telAll(doc, func(n *xhtml.Node) bool { v, _ := telAttr(n, "id"); return v == "waterfall" })
	if len(wf) != 1 {
		t.Fatalf("%d #waterfall", len(wf))
	}
	var out []string
	for _, sp := range telAll(wf[0], telHas("", "data-span")) {
		fn, _ := telAttr(sp, "data-function")
		svc, _ := telAttr(sp, "data-service")
		depth, _ := telAttr(sp, "data-depth")
		errv, _ := telAttr(sp, "data-error")
		name := telAll(sp, func(n *xhtml.Node) bool { c, _ := telAttr(n, "class"); return c == "wf-name" })
		if len(name) != 1 {
			t.Fatal("a span row has no name")
		}
		out = append(out, fmt.Sprintf("%s %s %s/%s %s", depth, telText(name[0]), fn, svc, errv))
	}
	return out
}

func TestTraceWaterfallNestsSpansAndMarksErrors(t *testing.T) {
	f := newFixture(t, web.Settings{})
	at := f.clk.Now().Add(-5 * time.Minute)
	api := telDep{"acme-prod", "acme", "2.0.0", "api", ""}
	pay := telDep{"acme-prod", "acme", "2.0.0", "payments", "charge"}
	// Stored out of order, in two batches, as two services would send them.
	f.storeSpans(pay,
		spanRec{trace: traceA, id: "c2", parent: "c1", name: "INSERT ledger", kind: ptrace.SpanKindClient, at: at.Add(30 * time.Millisecond), dur: 10 * time.Millisecond},
		spanRec{trace: traceA, id: "c1", parent: "f1", name: "charge card", kind: ptrace.SpanKindServer, at: at.Add(20 * time.Millisecond), dur: 200 * time.Millisecond,
			err: "card declined", attrs: map[string]string{"card.kind": "visa"}, events: [][2]string{{"exception", "issuer said no"}}})
	f.storeSpans(api,
		spanRec{trace: traceA, id: "f1", name: "POST /checkout", kind: ptrace.SpanKindServer, at: at, dur: 400 * time.Millisecond},
		spanRec{trace: traceA, id: "e1", parent: "f1", name: "render receipt", kind: ptrace.SpanKindInternal, at: at.Add(300 * time.Millisecond), dur: 50 * time.Millisecond})
	b := f.signIn(auth.RoleViewer)

	doc, page := telPage(t, b.get("/traces/"+strings.ToUpper(traceA)), http.StatusOK)
	want := []string{
		// Without faas.name, the store names a span's function after the span.
		"0 POST /checkout POST /checkout/api ",
		"1 charge card charge/payments true",
		"2 INSERT ledger charge/payments ",
		"1 render receipt render receipt/api ",
	}
	if got := waterfallRows(t, doc); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("waterfall\n%q\nwant\n%q", got, want)
	}
	// The failure is visible without expanding: in the row's summary and at the top.
	for _, sp := range telAll(doc, telHas("", "data-error")) {
		sum := telAll(sp, func(n *xhtml.Node) bool { return n.Data == "summary" })
		if len(sum) != 1 || !strings.Contains(telText(sum[0]), "card declined") {
			t.Error("the error span's row does not say its status message")
		}
		if c, _ := telAttr(sp, "class"); !strings.Contains(c, "wf-error") {
			t.Error("the error span is not in the status colour")
		}
	}
	for _, want := range []string{"1 failing span", `<a href="#span-00000000000000c1">charge card</a>`, "function <strong>charge</strong>",
		`href="/logs?trace_id=` + traceA + `"`, "<dt>card.kind</dt><dd>visa</dd>",
		// Its events, at their offset into the trace (20 ms + 1 ms).
		">+21.0 ms</time> <strong>exception</strong>", "<dt>exception.message</dt><dd>issuer said no</dd>",
		// Bars share the trace's axis: the charge starts 5% in and lasts half of it.
		`<rect x="50" y="2" width="500"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the trace page lacks %s", want)
		}
	}
}

func TestTracePageRefusesBadIDsAndSaysWhenMissing(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.signIn(auth.RoleViewer)
	_, page := telPage(t, b.get("/traces/not-a-trace"), http.StatusBadRequest)
	if !strings.Contains(page, "want 32 hex digits") {
		t.Error("a malformed id is not explained")
	}
	_, page = telPage(t, b.get("/traces/"+traceB), http.StatusNotFound)
	for _, want := range []string{"No trace <code>" + traceB + "</code> is stored", "/logs?trace_id=" + traceB} {
		if !strings.Contains(page, want) {
			t.Errorf("the 404 page lacks %s", want)
		}
	}
}

func TestTracesEscapeEverySpanString(t *testing.T) {
	f := newFixture(t, web.Settings{})
	d := telDep{id: evil("deployment"), customer: evil("customer"), release: evil("release"), service: evil("service"), function: evil("function")}
	at := f.clk.Now().Add(-time.Minute)
	f.storeSpans(d,
		spanRec{trace: traceA, id: "1", name: evil("span name"), kind: ptrace.SpanKindServer, at: at, dur: time.Second,
			err: evil("status message"), attrs: map[string]string{evil("attribute key"): evil("attribute value")},
			events: [][2]string{{evil("event name"), evil("event attribute")}}})
	b := f.signIn(auth.RoleViewer)

	_, page := telPage(t, b.get("/traces"), http.StatusOK)
	checkEscaped(t, page, "deployment", "release", "service", "function", "span name", "status message")
	_, page = telPage(t, b.get("/traces/"+traceA), http.StatusOK)
	checkEscaped(t, page, "deployment", "release", "service", "function", "span name", "status message", "attribute key", "attribute value",
		"event name", "event attribute")
	_, page = telPage(t, b.get("/traces?name="+url.QueryEscape(evil("search"))+"&min_duration="+url.QueryEscape(evil("duration"))), http.StatusBadRequest)
	checkEscaped(t, page, "search", "duration")
}

func TestTelemetryPagesOfferAViewerNoActions(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.storeLogs(acme2, logRec{at: f.clk.Now().Add(-time.Minute), sev: plog.SeverityNumberError, body: "charge failed", trace: traceA})
	f.storeSpans(acme2, spanRec{trace: traceA, id: "1", name: "POST /pay", kind: ptrace.SpanKindServer, at: f.clk.Now().Add(-time.Minute), dur: time.Second})
	b := f.signIn(auth.RoleViewer)
	for _, p := range []string{"/logs", "/traces", "/traces/" + traceA} {
		doc, _ := telPage(t, b.get(p), http.StatusOK)
		for _, form := range telAll(doc, func(n *xhtml.Node) bool { return n.Data == "form" }) {
			method, _ := telAttr(form, "method")
			action, _ := telAttr(form, "action")
			if strings.EqualFold(method, "post") && action != "/logout" {
				t.Errorf("%s offers a viewer the action %s", p, action)
			}
		}
	}
	// Signed out, every telemetry page sends the browser to sign in and back.
	for _, p := range []string{"/logs?service=checkout", "/traces", "/traces/" + traceA, "/logs/tail"} {
		rec := f.browser().get(p)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/login?next="+url.QueryEscape(p) {
			t.Errorf("signed out %s: %d %s", p, rec.Code, rec.Header().Get("Location"))
		}
	}
}
