package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// "all:" keeps the partials: embed leaves out files whose names start with "_".
//
//go:embed all:templates
var templateFS embed.FS

// pages holds one parsed template per page, each the layout plus the page's
// own file plus every partial (files whose names start with "_").
type pages struct {
	byName map[string]*template.Template
}

// view is what every page template receives: the page's own content as .Data,
// and what the layout needs (the signed-in session, the navigation entry).
type view struct {
	Title   string
	Nav     string
	Session *Session
	// Now is the time the page was rendered; relative times count from it.
	Now  time.Time
	Data any
}

func parsePages(as *assets) (*pages, error) {
	funcs := template.FuncMap{
		"asset":       as.URL,
		"ago":         ago,
		"rfc3339":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"statusClass": statusClass,
		"stateClass":  stateClass,
		"percent":     percent,
		"duration":    humanDuration,
		"span":        spanText,
		"bytes":       humanBytes,
		"size":        humanSize,
		"figure":      figure,
		"age":         age,
		"deref":       func(v *float64) float64 { return *v },
		"health":      componentStatus,
		"query":       query,
		"severity":    telquery.SeverityName,
	}
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	partials, err := fs.Glob(templateFS, "templates/_*.html")
	if err != nil {
		return nil, err
	}
	if len(partials) > 0 {
		if base, err = base.ParseFS(templateFS, partials...); err != nil {
			return nil, err
		}
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	ps := &pages{byName: map[string]*template.Template{}}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" || strings.HasPrefix(name, "_") {
			continue
		}
		t, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if t, err = t.ParseFS(templateFS, f); err != nil {
			return nil, err
		}
		ps.byName[name] = t
	}
	return ps, nil
}

// render executes page into a buffer and sends it only when it rendered whole;
// a template error answers the error page instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, sess *Session, status int, page, title string, data any) {
	nav, _, _ := strings.Cut(page, "-")
	var buf bytes.Buffer
	err := s.execute(&buf, page, view{Title: title, Nav: nav, Session: sess, Now: s.clock.Now(), Data: data})
	if err != nil {
		s.log.Error("render dashboard page", "page", page, "path", r.URL.Path, "err", err)
		buf.Reset()
		status = http.StatusInternalServerError
		if err := s.execute(&buf, "error", view{Title: "Error", Session: sess, Now: s.clock.Now(),
			Data: errorData{Status: status, Title: "This page could not be drawn", Message: "The manager failed to draw this page; its log has the details."}}); err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *Server) execute(buf *bytes.Buffer, page string, v view) error {
	t, ok := s.pages.byName[page]
	if !ok {
		return fmt.Errorf("no template %q", page)
	}
	return t.ExecuteTemplate(buf, "layout", v)
}

// errorData is the error page's content: a status, a heading and what to do.
type errorData struct {
	Status         int
	Title, Message string
}

// fail answers the designed error page: the message says what happened and
// what to do, never a stack trace.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *Session, status int, title, msg string) {
	s.render(w, r, sess, status, "error", title, errorData{Status: status, Title: title, Message: msg})
}

// ago says how long before now t was, the way a person would: "12 s ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, " from now"
	}
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + " s" + suffix
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min" + suffix
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h" + suffix
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + " d" + suffix
	}
}

// statusClass is the CSS class of a status badge; every status has its own
// colour, and the badge always carries the word as well.
func statusClass(s fleet.Status) string { return "st-" + string(s) }

// percent formats a ratio in [0,1] as a percentage with sensible precision.
func percent(v float64) string {
	p := v * 100
	switch {
	case p == 0:
		return "0%"
	case p < 0.1:
		return strconv.FormatFloat(p, 'f', 2, 64) + "%"
	case p < 10:
		return strconv.FormatFloat(p, 'f', 1, 64) + "%"
	default:
		return strconv.FormatFloat(p, 'f', 0, 64) + "%"
	}
}

// humanDuration formats a latency with a unit a person reads at a glance.
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + " µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
	default:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + " s"
	}
}

// query builds a link's query string from key/value pairs, leaving out empty
// values: {{query "status" "unhealthy" "q" .Q}}.
func query(kv ...string) template.URL {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if b.Len() == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(template.URLQueryEscaper(kv[i]))
		b.WriteByte('=')
		b.WriteString(template.URLQueryEscaper(kv[i+1]))
	}
	return template.URL(b.String())
}

// humanBytes formats a size in bytes with a binary unit: "16 KiB".
func humanBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.Itoa(n) + " bytes"
}

// humanSize formats a byte count measured by a runtime source (binary units,
// one decimal: "1.5 GiB").
func humanSize(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(n, 'f', -1, 64) + " B"
	}
	return strconv.FormatFloat(n, 'f', 1, 64) + " " + units[i]
}

// figure prints a figure a source may leave out: "—" when absent.
// age says how old something is from its age in seconds, rounded to the
// unit a reader compares at a glance: "15 s", "4 min", "2.5 h".
func age(v *float64) string {
	switch s := *v; {
	case s < 60:
		return strconv.FormatFloat(s, 'f', 0, 64) + " s"
	case s < 3600:
		return strconv.FormatFloat(s/60, 'f', 0, 64) + " min"
	default:
		return strconv.FormatFloat(s/3600, 'f', 1, 64) + " h"
	}
}

func figure(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v, 'f', -1, 64)
}

// componentStatus is a component's health in the page's status vocabulary.
func componentStatus(healthy bool) fleet.Status {
	if healthy {
		return fleet.StatusHealthy
	}
	return fleet.StatusUnhealthy
}
