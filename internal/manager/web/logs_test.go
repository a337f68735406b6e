package web_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	xhtml "golang.org/x/net/html"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/web"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// telDep is the deployment context of test telemetry.
type telDep struct{ id, customer, release, service, function string }

func (d telDep) tag(r pcommon.Resource) {
	a := r.Attributes()
	a.PutStr(otlp.AttrDeploymentID, d.id)
	a.PutStr(otlp.AttrCustomer, d.customer)
	a.PutStr(otlp.AttrCloudProvider, "aws")
	a.PutStr(otlp.AttrCloudRegion, "eu-west-1")
	a.PutStr(otlp.AttrRelease, d.release)
	a.PutStr(otlp.AttrStack, "shop")
	a.PutStr("service.name", d.service)
	if d.function != "" {
		a.PutStr("faas.name", d.function)
	}
}

type logRec struct {
	at    time.Time
	sev   plog.SeverityNumber
	body  string
	attrs map[string]string
	trace string // hex
}

// storeLogs puts records in the fixture's telemetry store as an agent's OTLP
// batch would, and waits until they are stored.
func (f *fixture) storeLogs(d telDep, recs ...logRec) {
	f.t.Helper()
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	d.tag(rl.Resource())
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for _, r := range recs {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(r.at))
		lr.SetSeverityNumber(r.sev)
		lr.SetSeverityText(r.sev.String())
		lr.Body().SetStr(r.body)
		for k, v := range r.attrs {
			lr.Attributes().PutStr(k, v)
		}
		if r.trace != "" {
			lr.SetTraceID(pcommon.TraceID([16]byte(f.hexID(r.trace, 16))))
		}
	}
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		f.t.Fatal(err)
	}
	f.consume(consumer.Batch{Signal: otlp.Logs, DeploymentID: d.id, Received: f.clk.Now(), Records: ld.LogRecordCount(), Data: b})
}

type spanRec struct {
	trace, id, parent string // hex
	name              string
	kind              ptrace.SpanKind
	at                time.Time
	dur               time.Duration
	err               string // the status message of an error span
	attrs             map[string]string
	events            [][2]string // name and exception.message, a millisecond apart
}

// storeSpans puts spans in the fixture's telemetry store as one OTLP batch.
func (f *fixture) storeSpans(d telDep, recs ...spanRec) {
	f.t.Helper()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	d.tag(rs.Resource())
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	for _, r := range recs {
		sp := ss.AppendEmpty()
		sp.SetTraceID(pcommon.TraceID([16]byte(f.hexID(r.trace, 16))))
		sp.SetSpanID(pcommon.SpanID([8]byte(f.hexID(r.id, 8))))
		if r.parent != "" {
			sp.SetParentSpanID(pcommon.SpanID([8]byte(f.hexID(r.parent, 8))))
		}
		sp.SetName(r.name)
		sp.SetKind(r.kind)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(r.at))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(r.at.Add(r.dur)))
		if r.err != "" {
			sp.Status().SetCode(ptrace.StatusCodeError)
			sp.Status().SetMessage(r.err)
		}
		for k, v := range r.attrs {
			sp.Attributes().PutStr(k, v)
		}
		for i, ev := range r.events {
			e := sp.Events().AppendEmpty()
			e.SetName(ev[0])
			e.SetTimestamp(pcommon.NewTimestampFromTime(r.at.Add(time.Duration(i+1) * time.Millisecond)))
			e.Attributes().PutStr("exception.message", ev[1])
		}
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		f.t.Fatal(err)
	}
	f.consume(consumer.Batch{Signal: otlp.Traces, DeploymentID: d.id, Received: f.clk.Now(), Records: td.SpanCount(), Data: b})
}

func (f *fixture) consume(b consumer.Batch) {
	f.t.Helper()
	if err := f.tel.Consume(context.Background(), b); err != nil {
		f.t.Fatal(err)
	}
	if err := f.tel.Flush(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

// hexID reads an id of n bytes from hex, padding short test ids with zeros.
func (f *fixture) hexID(s string, n int) []byte {
	f.t.Helper()
	b, err := hex.DecodeString(strings.Repeat("0", max(2*n-len(s), 0)) + s)
	if err != nil || len(b) != n {
		f.t.Fatalf("test id %q: %v", s, err)
	}
	return b
}

// telPage parses a page, failing the test on a status other than want.
func telPage(t *testing.T, rec *httptest.ResponseRecorder, want int) (*xhtml.Node, string) {
	t.Helper()
	s := body(t, rec)
	if rec.Code != want {
		t.Fatalf("status %d, want %d:\n%s", rec.Code, want, s)
	}
	doc, err := xhtml.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return doc, s
}

// telAll returns the elements under n for which match holds, in document order.
func telAll(n *xhtml.Node, match func(*xhtml.Node) bool) []*xhtml.Node {
	var out []*xhtml.Node
	for c := range n.Descendants() {
		if c.Type == xhtml.ElementNode && match(c) {
			out = append(out, c)
		}
	}
	return out
}

// telHas matches elements named tag (any tag when "") carrying attribute key.
func telHas(tag, key string) func(*xhtml.Node) bool {
	return func(n *xhtml.Node) bool {
		if tag != "" && n.Data != tag {
			return false
		}
		_, ok := telAttr(n, key)
		return ok
	}
}

func telAttr(n *xhtml.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func telText(n *xhtml.Node) string {
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == xhtml.TextNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

// logBodies lists the message previews of table#logs, top to bottom.
func logBodies(t *testing.T, doc *xhtml.Node) []string {
	t.Helper()
	tables := telAll(doc, func(n *xhtml.Node) bool { v, _ := telAttr(n, "id"); return n.Data == "table" && v == "logs" })
	if len(tables) != 1 {
		t.Fatalf("%d table#logs on the page", len(tables))
	}
	var out []string
	for _, row := range telAll(tables[0], telHas("tr", "data-log")) {
		code := telAll(row, func(n *xhtml.Node) bool { return n.Data == "code" })
		if len(code) == 0 {
			t.Fatal("a log row has no body")
		}
		out = append(out, telText(code[0]))
	}
	return out
}

var (
	acme1 = telDep{"acme-prod", "acme", "1.0.0", "checkout", "charge"}
	acme2 = telDep{"acme-prod", "acme", "2.0.0", "checkout", "charge"}
	umb1  = telDep{"umbrella-dr", "umbrella", "1.0.0", "search", ""}
)

func TestLogsFiltersReachTheStore(t *testing.T) {
	f := newFixture(t, web.Settings{})
	at := f.clk.Now().Add(-10 * time.Minute)
	f.storeLogs(acme1, logRec{at: at, sev: plog.SeverityNumberError, body: "old release timeout"})
	f.storeLogs(acme2,
		logRec{at: at.Add(time.Second), sev: plog.SeverityNumberError, body: "payment timeout", attrs: map[string]string{"http.route": "/pay"}},
		logRec{at: at.Add(2 * time.Second), sev: plog.SeverityNumberInfo, body: "payment timeout retried"},
		logRec{at: at.Add(3 * time.Second), sev: plog.SeverityNumberError, body: "card declined"},
		logRec{at: at.Add(-2 * time.Hour), sev: plog.SeverityNumberError, body: "an older timeout"})
	f.storeLogs(umb1, logRec{at: at, sev: plog.SeverityNumberError, body: "search timeout"})
	b := f.signIn(auth.RoleViewer)

	cases := []struct {
		query string
		want  []string
	}{
		{"", []string{"card declined", "payment timeout retried", "payment timeout", "search timeout", "old release timeout", "an older timeout"}},
		{"deployment=acme-prod&release=2.0.0&min_severity=error&contains=TIMEOUT&since=1h", []string{"payment timeout"}},
		{"customer=umbrella", []string{"search timeout"}},
		{"service=checkout&function=charge&min_severity=17&until=" + url.QueryEscape(at.Add(2*time.Second).Format(time.RFC3339Nano)), []string{"payment timeout", "old release timeout", "an older timeout"}},
		{"cloud=aws&region=eu-west-1&stack=shop&attr=http.route%3D%2Fpay", []string{"payment timeout"}},
		{"cloud=gcp", nil},
	}
	for _, c := range cases {
		doc, _ := telPage(t, b.get("/logs?"+c.query), http.StatusOK)
		if got := logBodies(t, doc); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("/logs?%s shows %q, want %q", c.query, got, c.want)
		}
	}

	// The form shows the filters as typed, so the view can be refined.
	_, page := telPage(t, b.get("/logs?deployment=acme-prod&since=1h&min_severity=error"), http.StatusOK)
	for _, want := range []string{`id="log-filters"`, `name="deployment" value="acme-prod"`, `name="since" value="1h"`, `<option value="error" selected>`, `<label for="f-deployment">`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

func TestLogsPageOlderRecordsByCursor(t *testing.T) {
	f := newFixture(t, web.Settings{})
	at := f.clk.Now().Add(-time.Hour)
	var recs []logRec
	for i := range 5 {
		recs = append(recs, logRec{at: at.Add(time.Duration(i) * time.Second), sev: plog.SeverityNumberWarn, body: fmt.Sprintf("record %d", i)})
	}
	f.storeLogs(acme2, recs...)
	b := f.signIn(auth.RoleViewer)

	target := "/logs?service=checkout&limit=2"
	var pages [][]string
	for target != "" {
		doc, _ := telPage(t, b.get(target), http.StatusOK)
		pages = append(pages, logBodies(t, doc))
		target = ""
		for _, a := range telAll(doc, telHas("a", "rel")) {
			if v, _ := telAttr(a, "rel"); v == "next" {
				target, _ = telAttr(a, "href")
				u, _ := url.Parse(target)
				if u.Query().Get("service") != "checkout" || u.Query().Get("cursor") == "" {
					t.Fatalf("Older link %q drops the filters or the cursor", target)
				}
			}
		}
		if len(pages) > 5 {
			t.Fatal("paging does not end")
		}
	}
	want := "[[record 4 record 3] [record 2 record 1] [record 0]]"
	if fmt.Sprint(pages) != want {
		t.Fatalf("pages %q, want %s", pages, want)
	}
}

func TestLogValuesAreLinksThatFilter(t *testing.T) {
	f := newFixture(t, web.Settings{})
	trace := "4bf92f3577b34da6a3ce929d0e0e4736"
	f.storeLogs(acme2, logRec{at: f.clk.Now().Add(-time.Minute), sev: plog.SeverityNumberError, body: "charge failed", trace: trace,
		attrs: map[string]string{"http.route": "/pay"}})
	f.storeLogs(umb1, logRec{at: f.clk.Now().Add(-time.Minute), sev: plog.SeverityNumberError, body: "no trace here"})
	b := f.signIn(auth.RoleViewer)

	doc, _ := telPage(t, b.get("/logs?min_severity=error"), http.StatusOK)
	hrefs := map[string]bool{}
	for _, a := range telAll(doc, telHas("a", "href")) {
		h, _ := telAttr(a, "href")
		hrefs[h] = true
	}
	for _, want := range []string{
		"/logs?min_severity=error&release=2.0.0",
		"/logs?deployment=acme-prod&min_severity=error",
		"/logs?min_severity=error&service=checkout",
		"/logs?function=charge&min_severity=error",
		"/logs?attr=http.route%3D%2Fpay&min_severity=error",
	} {
		if !hrefs[want] {
			t.Errorf("no link to %s", want)
		}
	}
	// Following a link filters by that value.
	doc, _ = telPage(t, b.get("/logs?min_severity=error&release=2.0.0"), http.StatusOK)
	if got := logBodies(t, doc); fmt.Sprint(got) != "[charge failed]" {
		t.Errorf("filtered by release: %q", got)
	}

	// Only the record with a trace links to it, from its own row.
	doc, _ = telPage(t, b.get("/logs"), http.StatusOK)
	links := telAll(doc, telHas("a", "data-trace-link"))
	if len(links) != 1 {
		t.Fatalf("%d trace links, want 1", len(links))
	}
	if h, _ := telAttr(links[0], "href"); h != "/traces/"+trace {
		t.Errorf("trace link %q", h)
	}
	if p := links[0].Parent; p == nil || p.Parent == nil || !strings.Contains(telText(p.Parent), "charge failed") {
		t.Error("the trace link is not in its record's row")
	}
	if got := telAll(doc, func(n *xhtml.Node) bool { v, _ := telAttr(n, "id"); return n.Data == "button" && v == "tail" }); len(got) != 1 {
		t.Error("no live tail button")
	}
}

func TestLogsRefuseInvalidFiltersInWords(t *testing.T) {
	f := newFixture(t, web.Settings{})
	b := f.signIn(auth.RoleViewer)
	for _, q := range []string{"since=yesterday", "min_severity=loud", "trace_id=xyz", "limit=-1", "cursor=nonsense", "since=1h&until=2h"} {
		v, _ := url.ParseQuery(q)
		_, perr := telquery.ParseLogQuery(v, f.clk.Now())
		_, page := telPage(t, b.get("/logs?"+q), http.StatusBadRequest)
		if perr != nil && !strings.Contains(page, html.EscapeString(perr.Error())) {
			t.Errorf("%s: the page does not say %q", q, perr)
		}
		if !strings.Contains(page, `role="alert"`) || !strings.Contains(page, `id="log-filters"`) {
			t.Errorf("%s: no alert beside the form", q)
		}
	}
}

func TestLogsSayWhenThereIsNoStore(t *testing.T) {
	f := newFixture(t, web.Settings{Telemetry: (*telstore.Store)(nil)})
	b := f.signIn(auth.RoleViewer)
	for _, p := range []string{"/logs", "/traces", "/traces/4bf92f3577b34da6a3ce929d0e0e4736"} {
		_, page := telPage(t, b.get(p), http.StatusServiceUnavailable)
		if !strings.Contains(page, "keeps no telemetry store") {
			t.Errorf("%s does not say there is no store", p)
		}
	}
	if rec := b.get("/logs/tail"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("tail without a store: %d", rec.Code)
	}
}

// evil is a user-controlled string that would run as script if not escaped.
func evil(where string) string { return `<script>alert("` + where + `")</script>` }

// checkEscaped fails unless every evil string of wheres comes back escaped.
func checkEscaped(t *testing.T, page string, wheres ...string) {
	t.Helper()
	for _, w := range wheres {
		if strings.Contains(page, evil(w)) {
			t.Errorf("%s is in the page unescaped", w)
		}
		if !strings.Contains(page, html.EscapeString(evil(w))) {
			t.Errorf("%s is not on the page (escaped)", w)
		}
	}
	if strings.Contains(strings.ToLower(page), "<script>alert") {
		t.Error("the page holds a raw script")
	}
}

func TestLogsEscapeEveryRecordString(t *testing.T) {
	f := newFixture(t, web.Settings{})
	d := telDep{id: evil("deployment"), customer: evil("customer"), release: evil("release"), service: evil("service"), function: evil("function")}
	long := evil("long body") + strings.Repeat(" and more", 40) + "\n" + evil("second line")
	f.storeLogs(d,
		logRec{at: f.clk.Now().Add(-time.Minute), sev: plog.SeverityNumberError, body: evil("body"),
			attrs: map[string]string{evil("attribute key"): evil("attribute value")}},
		logRec{at: f.clk.Now().Add(-2 * time.Minute), sev: plog.SeverityNumberError, body: long})
	b := f.signIn(auth.RoleViewer)
	_, page := telPage(t, b.get("/logs"), http.StatusOK)
	checkEscaped(t, page, "deployment", "release", "service", "function", "body", "attribute key", "attribute value", "long body", "second line")

	// What the filters echo back is escaped too.
	_, page = telPage(t, b.get("/logs?contains="+url.QueryEscape(evil("search"))+"&since="+url.QueryEscape(evil("since"))), http.StatusBadRequest)
	checkEscaped(t, page, "search", "since")
}

// tailStream is a live tail read as a browser's EventSource would.
type tailStream struct {
	res    *http.Response
	cancel context.CancelFunc
	lines  chan string
}

func openTail(t *testing.T, srv *httptest.Server, b *browser, query string) *tailStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/logs/tail?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for _, c := range b.cookies {
		req.AddCookie(c)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &tailStream{res: res, cancel: cancel, lines: make(chan string)}
	t.Cleanup(s.close)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		close(s.lines)
		return s
	}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			select {
			case s.lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

func (s *tailStream) close() {
	s.cancel()
	s.res.Body.Close()
	for range s.lines {
	}
}

// event reads the next event (its name and data), skipping comments; ok is
// false when the stream ended.
func (s *tailStream) event(t *testing.T, wait <-chan time.Time) (name, data string, ok bool) {
	t.Helper()
	var lines []string
	for {
		select {
		case line, open := <-s.lines:
			if !open {
				return "", "", false
			}
			switch {
			case line == "" && name != "":
				return name, strings.Join(lines, "\n"), true
			case line == "":
				lines = nil
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				lines = append(lines, strings.TrimPrefix(line, "data: "))
			}
		case <-wait:
			return "", "", true
		}
	}
}

// comment reads the stream's first line, the comment the tail opens with.
func (s *tailStream) comment(t *testing.T) {
	t.Helper()
	if line := <-s.lines; !strings.HasPrefix(line, ":") {
		t.Fatalf("the tail opens with %q, not a comment", line)
	}
}

func TestLiveTailStreamsNewMatchingRowsEscaped(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.storeLogs(acme2, logRec{at: f.clk.Now(), sev: plog.SeverityNumberError, body: "before the tail"})
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close) // after the streams close
	b := f.signIn(auth.RoleViewer)
	s := openTail(t, srv, b, "service=checkout&min_severity=error&cursor=ignored")
	if s.res.StatusCode != http.StatusOK {
		t.Fatalf("tail status %d", s.res.StatusCode)
	}
	s.comment(t)

	// The tail starts from the newest record when its query begins, which the
	// stream cannot tell; keep storing until one comes through, and check that
	// nothing else ever does.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		f.storeLogs(acme2,
			logRec{at: f.clk.Now(), sev: plog.SeverityNumberInfo, body: "too quiet"},
			logRec{at: f.clk.Now(), sev: plog.SeverityNumberError, body: fmt.Sprintf("%s %d\r\nline two", evil("tail"), i), trace: "4bf92f3577b34da6a3ce929d0e0e4736"})
		f.storeLogs(umb1, logRec{at: f.clk.Now(), sev: plog.SeverityNumberError, body: "another service"})
		name, data, ok := s.event(t, time.After(100*time.Millisecond))
		if !ok {
			t.Fatal("the tail ended")
		}
		if name == "" {
			select {
			case <-deadline:
				t.Fatal("the tail sent nothing in 10 s")
			default:
				continue
			}
		}
		if name != "log" {
			t.Fatalf("event %q: %s", name, data)
		}
		doc, err := xhtml.Parse(strings.NewReader("<table><tbody>" + data + "</tbody></table>"))
		if err != nil {
			t.Fatal(err)
		}
		rows := telAll(doc, telHas("tr", "data-log"))
		if len(rows) != 1 || !strings.Contains(telText(rows[0]), fmt.Sprintf("%s %d", evil("tail"), i)) {
			t.Fatalf("event is not the matching row: %s", data)
		}
		checkEscaped(t, data, "tail")
		if got := telAll(rows[0], telHas("a", "data-trace-link")); len(got) != 1 {
			t.Error("the tailed row has no trace link")
		}
		for _, a := range telAll(rows[0], telHas("a", "href")) {
			if h, _ := telAttr(a, "href"); strings.HasPrefix(h, "/logs/tail") || strings.Contains(h, "cursor") {
				t.Errorf("a tailed row links to %s", h)
			}
		}
		break
	}

	// The dashboard closing ends the tail with a last word.
	f.web.Close()
	name, data, ok := s.event(t, nil)
	if !ok || name != "end" || !strings.Contains(data, "shutting down") {
		t.Fatalf("after Close: %q %q %v", name, data, ok)
	}
	if _, _, ok := s.event(t, nil); ok {
		t.Fatal("the stream goes on after its end")
	}
}

func TestLiveTailsAreBounded(t *testing.T) {
	f := newFixture(t, web.Settings{})
	f.web.SetMaxTails(1)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close) // after the streams close
	b := f.signIn(auth.RoleViewer)

	first := openTail(t, srv, b, "")
	first.comment(t) // the first tail holds its slot once it streams
	second := openTail(t, srv, b, "")
	if second.res.StatusCode != http.StatusServiceUnavailable || second.res.Header.Get("Retry-After") == "" {
		t.Fatalf("a tail past the bound: %d", second.res.StatusCode)
	}
	msg, _ := io.ReadAll(second.res.Body)
	if !strings.Contains(string(msg), "too many live tails") {
		t.Errorf("refusal says %q", msg)
	}

	// A malformed filter is refused before anything streams.
	bad := openTail(t, srv, b, "trace_id=xyz")
	if bad.res.StatusCode != http.StatusBadRequest {
		t.Errorf("a tail with a bad trace id: %d", bad.res.StatusCode)
	}
	// Signed out, the tail sends the browser to sign in.
	anon := openTail(t, srv, f.browser(), "")
	if anon.res.Request.URL.Path != "/login" {
		t.Errorf("a signed-out tail ends at %s", anon.res.Request.URL)
	}
}
