package browser_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/periscope-dev/periscope/internal/testenv"
	"github.com/periscope-dev/periscope/internal/testenv/browser"
)

// recorder is a test that keeps the errors reported to it instead of failing,
// so the harness's own verdicts can be checked; with expectEnd it also keeps
// the Skip or Fatal that ends it (and ends its goroutine), else those go to the
// real test.
type recorder struct {
	testing.TB
	expectEnd bool
	mu        sync.Mutex
	errors    []string
	ended     string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	if !r.expectEnd {
		r.TB.Helper()
		r.TB.Fatalf(format, args...)
	}
	r.mu.Lock()
	r.ended = "fatal: " + fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Skip(args ...any) {
	if !r.expectEnd {
		r.TB.Skip(args...)
	}
	r.mu.Lock()
	r.ended = "skip: " + fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// take returns and forgets the errors reported so far.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := r.errors
	r.errors = nil
	return errs
}

// site is a small site with one page per kind of error a page can make.
func site() *httptest.Server {
	page := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'")
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!doctype html><html><head><title>t</title></head><body><main>%s</main></body></html>", body)
		}
	}
	script := func(src string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, src)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ok", page(`<h1>Fine</h1><script src="/quiet.js"></script><a id="next" href="/next?x=1">next</a>`))
	mux.Handle("GET /next", page(`<h1 id="arrived">Next</h1><select name="release"><option value="1.0.0">1.0.0</option><option value="2.0.0">2.0.0</option></select><textarea name="reason"></textarea>`))
	mux.Handle("GET /console", page(`<script src="/console.js"></script>`))
	mux.Handle("GET /throw", page(`<script src="/throw.js"></script>`))
	mux.Handle("GET /missing", page(`<script src="/missing.js"></script>`))
	mux.Handle("GET /inline-style", page(`<p style="color: red">styled inline</p>`))
	// Chromium asks for /favicon.ico by itself, at a moment of its choosing; a
	// 404 there would make the quiet page's check depend on that timing.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.Handle("GET /quiet.js", script(`console.log("all good"); console.warn("a warning is not an error");`))
	mux.Handle("GET /console.js", script(`console.error("boom: the page logged an error");`))
	mux.Handle("GET /throw.js", script(`throw new Error("kaboom: an uncaught exception");`))
	return httptest.NewServer(mux)
}

// TestHarnessFailsOnPageErrors proves the harness's console check: a page that
// logs an error, throws, loads a missing script or breaks the CSP fails the
// test, a quiet page (with a log and a warning) does not, and an allowed error
// passes.
func TestHarnessFailsOnPageErrors(t *testing.T) {
	srv := site()
	defer srv.Close()
	shots := t.TempDir()
	t.Setenv(browser.EnvScreenshots, shots)
	readme := t.TempDir()
	t.Setenv(browser.EnvReadme, readme)
	rec := &recorder{TB: t}
	b := browser.Start(rec, srv.URL, browser.Options{})

	if st := b.Visit("/ok"); st != http.StatusOK {
		t.Fatalf("/ok answered %d", st)
	}
	if errs := rec.take(); len(errs) != 0 {
		t.Fatalf("a quiet page failed the test: %q", errs)
	}
	if st := b.Click("a#next"); st != http.StatusOK || b.Path() != "/next?x=1" || b.Text("#arrived") != "Next" {
		t.Fatalf("clicking the link: status %d, now at %s", st, b.Path())
	}
	b.Select(`select[name=release]`, "1.0.0")
	b.Type(`textarea[name=reason]`, "errors on 2.0.0")
	if v := browser.Eval[string](b, `document.querySelector("select").value + "|" + document.querySelector("textarea").value`); v != "1.0.0|errors on 2.0.0" {
		t.Fatalf("form fields read %q", v)
	}
	if v := browser.Eval[int](b, `(async () => 6 + 1)()`); v != 7 {
		t.Fatalf("an async expression evaluated to %d, want 7", v)
	}
	b.ReadmeShot("next.png")

	for path, want := range map[string]string{
		"/console":      "boom: the page logged an error",
		"/throw":        "kaboom: an uncaught exception",
		"/missing":      "404",
		"/inline-style": "Content Security Policy",
	} {
		b.Visit(path)
		errs := rec.take()
		if len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), want) {
			t.Errorf("%s: the harness reported %q, want an error saying %q", path, errs, want)
		}
	}

	b.AllowConsoleError(`kaboom`)
	b.Visit("/throw")
	if errs := rec.take(); len(errs) != 0 {
		t.Errorf("an allowed error still failed the test: %q", errs)
	}
	// The ordering is exact: an error written just now is reported by Check.
	b.Visit("/ok")
	browser.Eval[any](b, `console.error("late error"), 0`)
	b.Check()
	if errs := rec.take(); len(errs) != 1 || !strings.Contains(errs[0], "late error") {
		t.Errorf("Check right after console.error reported %q", errs)
	}

	// Every page landed on has its screenshot, a PNG, in the named directory.
	files, _ := filepath.Glob(filepath.Join(b.Dir(), "*.png"))
	if !strings.HasPrefix(b.Dir(), shots) || len(files) < 8 {
		t.Errorf("screenshots %v in %s, want one per page under %s", files, b.Dir(), shots)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s is not a PNG (%v)", f, err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(readme, "next.png")); err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Errorf("README copy: %v", err)
	}
}

// TestNoChromiumSkipsOrFails: without a browser the test skips, and under
// PERISCOPE_REQUIRE_INTEGRATION=1 it fails instead.
func TestNoChromiumSkipsOrFails(t *testing.T) {
	t.Setenv(browser.EnvChromium, filepath.Join(t.TempDir(), "no-chromium"))
	for _, required := range []string{"", "1"} {
		t.Setenv(testenv.RequireIntegration, required)
		rec := &recorder{TB: t, expectEnd: true}
		done := make(chan struct{})
		go func() { defer close(done); browser.Chromium(rec) }()
		<-done
		want := "skip: "
		if required == "1" {
			want = "fatal: "
		}
		if !strings.HasPrefix(rec.ended, want) || !strings.Contains(rec.ended, browser.EnvChromium) {
			t.Errorf("required=%q: the test ended with %q, want %s…%s", required, rec.ended, want, browser.EnvChromium)
		}
	}
}
