package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// Bounds of the live log tail.
const (
	// maxTails bounds the tails streaming at once; each holds a store query
	// loop, so past it a new one is refused (503) rather than queued.
	maxTails = 32
	// tailHeartbeat is how often an idle tail sends a comment, so proxies keep
	// the connection and a revoked session ends within one beat.
	tailHeartbeat = 15 * time.Second
	// bodyPreview is how much of a log body a row shows before "full text".
	bodyPreview = 200
)

// links builds the URLs of a filtered page: its current query with one filter
// added or removed, so every value on the page is a filter one click away and
// the browser's back button undoes it. Paging restarts on every change.
type links struct {
	path string
	q    url.Values
}

func newLinks(path string, q url.Values) links {
	c := url.Values{}
	for k, v := range q {
		if k != "cursor" && len(v) > 0 && v[0] != "" {
			c[k] = append([]string(nil), v...)
		}
	}
	return links{path: path, q: c}
}

func (l links) url(c url.Values) string {
	if len(c) == 0 {
		return l.path
	}
	return l.path + "?" + c.Encode()
}

func (l links) clone() url.Values {
	c := make(url.Values, len(l.q)+1)
	for k, v := range l.q {
		c[k] = append([]string(nil), v...)
	}
	return c
}

// With is the page filtered by key = value as well (replacing key's value).
func (l links) With(key, value string) string {
	c := l.clone()
	c.Set(key, value)
	return l.url(c)
}

// WithAttr is the page filtered by the attribute key = value as well.
func (l links) WithAttr(key, value string) string {
	c := l.clone()
	c.Add("attr", key+"="+value)
	return l.url(c)
}

// Without is the page with one value of key dropped.
func (l links) Without(key, value string) string {
	c := l.clone()
	kept := c[key][:0]
	for _, v := range c[key] {
		if v != value {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		delete(c, key)
	} else {
		c[key] = kept
	}
	return l.url(c)
}

// Page is the page continuing at cursor.
func (l links) Page(cursor string) string {
	c := l.clone()
	if cursor != "" {
		c.Set("cursor", cursor)
	}
	return l.url(c)
}

// Self is the page's first page.
func (l links) Self() string { return l.url(l.q) }

// Query is the current filters as a query string (without "?").
func (l links) Query() string { return l.q.Encode() }

// telChip is one active filter, shown with a link that removes it.
type telChip struct {
	Key, Value, Remove string
}

// chips lists the active filters in the order of keys.
func (l links) chips(keys ...string) []telChip {
	var out []telChip
	for _, k := range keys {
		for _, v := range l.q[k] {
			out = append(out, telChip{Key: k, Value: v, Remove: l.Without(k, v)})
		}
	}
	return out
}

// attr is one attribute shown as key = value, with a link filtering by it.
type attr struct {
	Key, Value, Filter string
}

// attrsOf lists m sorted by key, values as text (JSON for non-strings).
func attrsOf(m map[string]any, filter func(k, v string) string) []attr {
	out := make([]attr, 0, len(m))
	for k, v := range m {
		a := attr{Key: k}
		switch x := v.(type) {
		case string:
			a.Value = x
		default:
			b, _ := json.Marshal(x)
			a.Value = string(b)
		}
		if filter != nil {
			if _, nested := v.(map[string]any); !nested {
				a.Filter = filter(k, a.Value)
			}
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// option is one choice of a select.
type option struct {
	Value, Label string
	Selected     bool
}

// logRow is one log record as a table row, with the links of its values.
type logRow struct {
	telquery.Log
	Now   time.Time
	Links links
}

// Exact is the record's time to the millisecond, for the title.
func (r logRow) Exact() string { return r.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// Level is the severity's word (ERROR, WARN, …).
func (r logRow) Level() string { return telquery.SeverityName(r.Severity) }

// LevelClass is the severity's CSS class.
func (r logRow) LevelClass() string { return "sev-" + strings.ToLower(r.Level()) }

// Preview is the body's first line, cut to bodyPreview characters.
func (r logRow) Preview() string {
	s, _, _ := strings.Cut(r.Body, "\n")
	if utf8.RuneCountInString(s) > bodyPreview {
		s = string([]rune(s)[:bodyPreview]) + "…"
	}
	return s
}

// Cut reports whether the preview leaves part of the body out.
func (r logRow) Cut() bool { return r.Preview() != r.Body }

// Attrs are the record's own attributes, each a filter.
func (r logRow) Attrs() []attr { return attrsOf(r.Attributes, r.Links.WithAttr) }

// ResourceAttrs are its resource's attributes, each a filter.
func (r logRow) ResourceAttrs() []attr { return attrsOf(r.Resource, r.Links.WithAttr) }

// logsData is the logs page's content.
type logsData struct {
	// NoStore is set when the manager keeps no telemetry.
	NoStore bool
	// Err is why the filters were refused, in words.
	Err   string
	F     url.Values
	Attrs []string
	Sev   []option
	Chips []telChip
	Links links
	Rows  []logRow
	// Older continues the search; Paged is set past the first page.
	Older string
	Paged bool
}

// logFilterKeys are the log filters, in the order the page shows them.
var logFilterKeys = []string{"deployment", "customer", "cloud", "region", "stack", "release", "service", "function",
	"min_severity", "contains", "trace_id", "attr", "since", "until", "limit"}

func severityOptions(raw string, n int) []option {
	opts := []option{{Value: "", Label: "any"}}
	found := raw == ""
	for _, name := range []string{"trace", "debug", "info", "warn", "error", "fatal"} {
		v, _ := telquery.ParseSeverity(name)
		sel := raw != "" && v == n
		found = found || sel
		opts = append(opts, option{Value: name, Label: name + " and above", Selected: sel})
	}
	if !found {
		opts = append(opts, option{Value: raw, Label: raw, Selected: true})
	}
	return opts
}

// logsPage searches log records, newest first, with every filter of the REST
// query in a GET form, so each view is a URL.
func (s *Server) logsPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	v := r.URL.Query()
	d := logsData{F: v, Attrs: v["attr"], Links: newLinks("/logs", v), Paged: v.Get("cursor") != ""}
	d.Chips = d.Links.chips(logFilterKeys...)
	if s.tel == nil {
		d.NoStore = true
		d.Sev = severityOptions("", 0)
		s.render(w, r, sess, http.StatusServiceUnavailable, "logs", "Logs", d)
		return
	}
	now := s.clock.Now()
	q, err := telquery.ParseLogQuery(v, now)
	d.Sev = severityOptions(v.Get("min_severity"), q.MinSeverity)
	if err == nil {
		var page telquery.LogPage
		page, err = s.tel.Logs(r.Context(), q)
		for _, l := range page.Logs {
			d.Rows = append(d.Rows, logRow{Log: l, Now: now, Links: d.Links})
		}
		if page.Next != "" {
			d.Older = d.Links.Page(page.Next)
		}
	}
	s.answerSearch(w, r, sess, "logs", "Logs", err, &d, func(msg string) { d.Err, d.Rows = msg, nil })
}

// answerSearch answers a search page: its results, the page with why its
// filters were refused (400, through refuse), or the error page when the store
// failed.
func (s *Server) answerSearch(w http.ResponseWriter, r *http.Request, sess *Session, page, title string, err error, data any, refuse func(msg string)) {
	switch {
	case err == nil:
		s.render(w, r, sess, http.StatusOK, page, title, data)
	case errors.Is(err, telquery.ErrInvalid):
		refuse(err.Error())
		s.render(w, r, sess, http.StatusBadRequest, page, title, data)
	default:
		s.log.Error("dashboard search", "page", page, "query", r.URL.RawQuery, "err", err)
		s.fail(w, r, sess, http.StatusInternalServerError, title+" could not be searched",
			"The telemetry store failed to answer; the manager log has the details. Try again, or narrow the time range.")
	}
}

// logsTail streams the log records matching the page's filters as server-sent
// events, each a table row rendered by the same template as the page: the
// script inserts markup the server escaped, never record text. It ends when
// the browser leaves, the session ends or the dashboard closes.
func (s *Server) logsTail(w http.ResponseWriter, r *http.Request, sess *Session) {
	if s.tel == nil {
		http.Error(w, "this manager has no telemetry store", http.StatusServiceUnavailable)
		return
	}
	q, err := telquery.ParseLogQuery(r.URL.Query(), s.clock.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.closing.Err() != nil {
		http.Error(w, "the manager is shutting down", http.StatusServiceUnavailable)
		return
	}
	select {
	case s.tails <- struct{}{}:
		defer func() { <-s.tails }()
	default:
		w.Header().Set("Retry-After", "30")
		http.Error(w, "too many live tails are open on this manager; try again shortly", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()

	rc := http.NewResponseController(w)
	// A tail lives as long as its browser: no write deadline applies.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	// The heartbeat and the records share the writer.
	var mu sync.Mutex
	send := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send([]byte(": tailing\nretry: 5000\n\n")); err != nil {
		return
	}
	beat := make(chan struct{})
	go func() {
		defer close(beat)
		t := time.NewTicker(tailHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			// A session ended on any replica, or a store that cannot say,
			// ends the tail; the browser reconnects and signs in again if need be.
			if _, ok, err := s.session(r); !ok || err != nil {
				cancel()
				return
			}
			if send([]byte(": heartbeat\n\n")) != nil {
				cancel()
				return
			}
		}
	}()
	defer func() { <-beat }()
	defer cancel()

	tpl := s.pages.byName["logs"]
	links := newLinks("/logs", r.URL.Query())
	var row, ev bytes.Buffer
	err = s.tel.TailLogs(ctx, q, func(l telquery.Log) error {
		row.Reset()
		if err := tpl.ExecuteTemplate(&row, "log-row", logRow{Log: l, Now: s.clock.Now(), Links: links}); err != nil {
			return err
		}
		ev.Reset()
		sseEvent(&ev, "log", row.Bytes())
		return send(ev.Bytes())
	})
	if r.Context().Err() != nil {
		return // the browser left; nobody reads a last word
	}
	ev.Reset()
	switch {
	case s.closing.Err() != nil:
		sseEvent(&ev, "end", []byte("The manager is shutting down; the live tail stopped."))
	case ctx.Err() != nil && err == nil:
		sseEvent(&ev, "end", []byte("Your session ended; sign in again to follow the logs."))
	case err == nil:
		return
	default:
		s.log.Error("dashboard log tail failed", "err", err)
		sseEvent(&ev, "end", []byte("The live tail failed; the manager log has the details."))
	}
	_ = send(ev.Bytes())
}

// sseEvent appends one server-sent event: a data line per line of data.
func sseEvent(b *bytes.Buffer, name string, data []byte) {
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteByte('\n')
	// A carriage return ends a line in the stream too.
	data = bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
}
