// Package browser drives Debian's Chromium from tests, through chromedp, the way
// a person uses the dashboard: it visits pages, clicks links and submits forms.
//
// A Browser fails its test on any error the page reports (console.error, an
// uncaught exception or promise rejection, a resource that failed to load, a
// Content-Security-Policy violation), saves a full-page screenshot of every page
// it lands on, and is bounded in time: the whole browser lives at most
// Options.Limit, and each step at most Options.Step.
//
// Where the screenshots go: $PERISCOPE_SCREENSHOTS/<test name> when that is
// set, else the test's artifact directory (kept with go test -artifacts). With
// PERISCOPE_SCREENSHOTS_README=dir, the shots taken with ReadmeShot are also
// copied there under their README file names.
//
// Without Chromium the test skips, and fails under
// PERISCOPE_REQUIRE_INTEGRATION=1 (see testenv.SkipOrFail).
package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/periscope-dev/periscope/internal/testenv"
)

// Environment variables the package reads.
const (
	// EnvChromium names the browser binary; default: chromium on PATH.
	EnvChromium = "PERISCOPE_CHROMIUM"
	// EnvScreenshots is a directory that keeps every test's screenshots.
	EnvScreenshots = "PERISCOPE_SCREENSHOTS"
	// EnvReadme is a directory that receives the README screenshots.
	EnvReadme = "PERISCOPE_SCREENSHOTS_README"
)

// Chromium returns the browser binary: $PERISCOPE_CHROMIUM, or chromium (then
// chromium-browser) on PATH. Without one the test skips, or fails when
// integration tests are required.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		full, err := exec.LookPath(p)
		if err != nil {
			testenv.SkipOrFail(t, "%s=%s is not an executable: %v", EnvChromium, p, err)
		}
		return full
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.SkipOrFail(t, "no Chromium for the browser tests: install Debian's chromium (apt-get install chromium, as .ci/run does) or set %s", EnvChromium)
	return ""
}

// Options bound a Browser; zero values take the defaults.
type Options struct {
	// Limit is how long the browser may live (default 3 min, never past the
	// test's deadline).
	Limit time.Duration
	// Step bounds one navigation, click or wait (default 15 s).
	Step time.Duration
	// Width and Height are the viewport (default 1280 × 900).
	Width, Height int64
}

// Browser is one headless Chromium with one tab, signed to one test.
type Browser struct {
	t    testing.TB
	base *url.URL
	opts Options
	tab  context.Context
	dir  string

	mu      sync.Mutex
	shots   int
	errs    []string // page errors not yet reported
	allowed []*regexp.Regexp
	marks   int
	seen    chan string // sync markers the console reader has read
}

// markPrefix starts the console.debug markers of sync.
const markPrefix = "periscope-browser-sync-"

// Start launches Chromium for t against the site at base (such as
// "http://127.0.0.1:7070"); paths given to the methods are relative to it. The
// browser ends when the test does, after a last check of the console.
func Start(t testing.TB, base string, opts Options) *Browser {
	t.Helper()
	exe := Chromium(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("browser base URL %q: %v", base, err)
	}
	if opts.Limit <= 0 {
		opts.Limit = 3 * time.Minute
	}
	if opts.Step <= 0 {
		opts.Step = 15 * time.Second
	}
	if opts.Width <= 0 || opts.Height <= 0 {
		opts.Width, opts.Height = 1280, 900
	}
	if dl, ok := deadline(t); ok && time.Until(dl) < opts.Limit {
		opts.Limit = time.Until(dl)
	}
	b := &Browser{t: t, base: u, opts: opts, dir: shotDir(t), seen: make(chan string, 16)}

	var out syncBuffer
	flags := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.DisableGPU,
		chromedp.WindowSize(int(opts.Width), int(opts.Height)),
		// This machine has no network but loopback: keep Chromium from
		// calling home, which only fills its log with refused connections.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.CombinedOutput(&out),
	)
	if os.Geteuid() == 0 {
		flags = append(flags, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	life, stopLife := context.WithTimeout(context.Background(), opts.Limit)
	alloc, stopAlloc := chromedp.NewExecAllocator(life, flags...)
	tab, closeTab := chromedp.NewContext(alloc)
	b.tab = tab

	// Subscribing starts the browser and opens the tab. The console is read from
	// then on, so nothing the first page says is missed.
	console := chromedp.Console(tab)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range console {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleDebug && strings.HasPrefix(m.Text, markPrefix) {
				select {
				case b.seen <- m.Text:
				default: // a stale marker nobody waits for any more
				}
				continue
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				where := m.URL
				if where != "" && m.Line > 0 {
					where = fmt.Sprintf("%s:%d", where, m.Line+1)
				}
				b.mu.Lock()
				b.errs = append(b.errs, strings.TrimSpace(fmt.Sprintf("%s %s", m.String(), where)))
				b.mu.Unlock()
			}
		}
	}()
	stop := func() {
		closeTab()
		stopAlloc()
		stopLife()
		<-done
	}
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(opts.Width, opts.Height)); err != nil {
		stop()
		t.Fatalf("start Chromium %s: %v\n%s", exe, err, tail(out.String(), 2000))
	}
	t.Cleanup(func() {
		b.Check()
		stop()
	})
	if os.Getenv(EnvScreenshots) != "" || testing.Verbose() {
		t.Logf("browser screenshots in %s", b.dir)
	}
	return b
}

// deadline is the test's deadline, when t is a *testing.T running with one.
func deadline(t testing.TB) (time.Time, bool) {
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := dt.Deadline(); ok {
			return dl.Add(-5 * time.Second), true
		}
	}
	return time.Time{}, false
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// shotDir is where t's screenshots go.
func shotDir(t testing.TB) string {
	root := os.Getenv(EnvScreenshots)
	if root == "" {
		return t.ArtifactDir()
	}
	dir := filepath.Join(root, unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshot directory: %v", err)
	}
	return dir
}

// Dir is the directory that holds this browser's screenshots.
func (b *Browser) Dir() string { return b.dir }

// step is a context for one step of the test, bounded by Options.Step.
func (b *Browser) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.tab, b.opts.Step)
}

// url resolves path against the base.
func (b *Browser) url(path string) string {
	ref, err := url.Parse(path)
	if err != nil {
		b.t.Fatalf("browser path %q: %v", path, err)
	}
	return b.base.ResolveReference(ref).String()
}

// fail ends the test with what went wrong and where the browser was, after a
// screenshot of that moment.
func (b *Browser) fail(format string, args ...any) {
	b.t.Helper()
	msg := fmt.Sprintf(format, args...)
	ctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
	defer cancel()
	where, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("main") || document.body || {innerText: ""}).innerText.slice(0, 800)`))
	shot := b.save(ctx, "failure")
	b.t.Fatalf("%s\n  at %s (screenshot %s)\n  page text: %s", msg, where, shot, strings.Join(strings.Fields(text), " "))
}

// AllowConsoleError lets console errors matching the regular expression pass,
// for a step that is meant to fail (a refused sign-in answers 401, which the
// browser reports as a failed load).
func (b *Browser) AllowConsoleError(pattern string) {
	b.mu.Lock()
	b.allowed = append(b.allowed, regexp.MustCompile(pattern))
	b.mu.Unlock()
}

// ConsoleErrors returns the page errors seen since the last Check, without
// reporting them.
func (b *Browser) ConsoleErrors() []string {
	b.sync()
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// sync makes sure every console message of what came before has been read:
// the browser sends them in order, so once the reader has seen a marker
// written now, it has seen everything before it.
func (b *Browser) sync() {
	b.mu.Lock()
	b.marks++
	mark := fmt.Sprintf("%s%d", markPrefix, b.marks)
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`console.debug(`+js(mark)+`)`)); err != nil {
		return // the page is gone (the browser ended): nothing more will come
	}
	for {
		select {
		case m := <-b.seen:
			if m == mark {
				return
			}
		case <-ctx.Done():
			b.t.Errorf("the browser's console did not answer within 5s")
			return
		}
	}
}

// Check reports (with t.Errorf) every page error seen since the last Check that
// no AllowConsoleError covers. Every navigation checks; so does the end of the
// test.
func (b *Browser) Check() {
	b.t.Helper()
	b.sync()
	b.mu.Lock()
	errs, allowed := b.errs, b.allowed
	b.errs = nil
	b.mu.Unlock()
	for _, e := range errs {
		ok := false
		for _, re := range allowed {
			ok = ok || re.MatchString(e)
		}
		if !ok {
			b.t.Errorf("browser console error: %s", e)
		}
	}
}

// Visit opens path, waits for it to load, checks the console, saves a
// screenshot, and returns the HTTP status of the document.
func (b *Browser) Visit(path string) int {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(b.url(path)))
	if err != nil {
		b.fail("visit %s: %v", path, err)
	}
	b.landed()
	return int(resp.Status)
}

// Click clicks the first element matching the CSS selector and waits for the
// page it leads to (a link, or a form's submit button); it returns the status
// of the new document, after a console check and a screenshot.
func (b *Browser) Click(sel string) int {
	b.t.Helper()
	b.WaitFor(sel)
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.fail("click %s: %v", sel, err)
	}
	b.landed()
	return int(resp.Status)
}

// Press clicks the first element matching sel that does not leave the page
// (a summary that opens its details, a tab).
func (b *Browser) Press(sel string) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		b.fail("click %s: %v", sel, err)
	}
}

// Key sends one key (a character, or a kb constant such as kb.ArrowDown) to the
// element that has the focus, as a keyboard would; for a key that stays on the page.
func (b *Browser) Key(key string) {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(key)); err != nil {
		b.fail("key %q: %v", key, err)
	}
}

// KeyTo sends a key that leads to another page (Enter on a focused link) and
// waits for it; it returns the new document's status, after a console check and
// a screenshot.
func (b *Browser) KeyTo(key string) int {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.KeyEvent(key))
	if err != nil {
		b.fail("key %q: %v", key, err)
	}
	b.landed()
	return int(resp.Status)
}

// Type types text into the field matching sel, key by key, after emptying it.
func (b *Browser) Type(sel, text string) {
	b.t.Helper()
	b.WaitFor(sel)
	if !Eval[bool](b, `(() => { const e = document.querySelector(`+js(sel)+`); if (!e || !("value" in e)) return false; e.value = ""; return true; })()`) {
		b.fail("type into %s: not a field", sel)
	}
	ctx, cancel := b.step()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible)); err != nil {
		b.fail("type into %s: %v", sel, err)
	}
}

// Select chooses the option with value v in the select matching sel, the way a
// person picking it does (the change event fires).
func (b *Browser) Select(sel, v string) {
	b.t.Helper()
	ok := Eval[bool](b, `(() => {
		const s = document.querySelector(`+js(sel)+`);
		if (!s || ![...s.options].some(o => o.value === `+js(v)+`)) return false;
		s.value = `+js(v)+`;
		s.dispatchEvent(new Event("input", {bubbles: true}));
		s.dispatchEvent(new Event("change", {bubbles: true}));
		return true;
	})()`)
	if !ok {
		b.fail("select %q in %s: no such select or option", v, sel)
	}
}

// landed is what follows every arrival on a page: the console check and the
// screenshot.
func (b *Browser) landed() {
	b.t.Helper()
	b.Check()
	ctx, cancel := b.step()
	defer cancel()
	b.save(ctx, b.Path())
}

// Shot saves a full-page screenshot named name and returns its path.
func (b *Browser) Shot(name string) string {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	return b.save(ctx, name)
}

// ReadmeShot saves a screenshot and, with PERISCOPE_SCREENSHOTS_README=dir,
// copies it to dir/file (such as "fleet.png").
func (b *Browser) ReadmeShot(file string) {
	b.t.Helper()
	b.toReadme(b.Shot(strings.TrimSuffix(file, filepath.Ext(file))), file)
}

// ReadmeShotOf is ReadmeShot of the first element matching sel alone, for a
// README picture of one part of a page (a section).
func (b *Browser) ReadmeShotOf(sel, file string) {
	b.t.Helper()
	b.WaitFor(sel)
	ctx, cancel := b.step()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		b.fail("screenshot of %s: %v", sel, err)
	}
	b.toReadme(b.write(strings.TrimSuffix(file, filepath.Ext(file)), png), file)
}

// toReadme copies the screenshot at p to dir/file, with
// PERISCOPE_SCREENSHOTS_README=dir.
func (b *Browser) toReadme(p, file string) {
	b.t.Helper()
	dir := os.Getenv(EnvReadme)
	if dir == "" || p == "" {
		return
	}
	data, err := os.ReadFile(p)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, file), data, 0o644)
	}
	if err != nil {
		b.t.Errorf("copy the README screenshot %s: %v", file, err)
		return
	}
	b.t.Logf("README screenshot %s", filepath.Join(dir, file))
}

func (b *Browser) save(ctx context.Context, name string) string {
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	return b.write(name, png)
}

// write keeps a screenshot under the next number and name, and returns its
// path ("" when it could not).
func (b *Browser) write(name string, png []byte) string {
	b.mu.Lock()
	b.shots++
	n := b.shots
	b.mu.Unlock()
	name = strings.Trim(unsafeName.ReplaceAllString(name, "_"), "_")
	if name == "" {
		name = "root"
	}
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("save screenshot: %v", err)
		return ""
	}
	return p
}

// WaitFor waits, within one step, until an element matches the CSS selector.
func (b *Browser) WaitFor(sel string) {
	b.t.Helper()
	b.WaitUntil(`document.querySelector(`+js(sel)+`) !== null`, "an element matching "+sel)
}

// WaitUntil waits, within one step, until the JavaScript expression is truthy
// on the current page; what says what it waits for.
func (b *Browser) WaitUntil(expr, what string) {
	b.t.Helper()
	_, err := chromedp.Run(b.tab, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(b.opts.Step)))
	if err != nil {
		b.fail("waited %v for %s: %v", b.opts.Step, what, err)
	}
}

// VisitUntil reloads path until the expression is truthy on it, at most within
// (for state that changes on the server: an agent applying a release); the last
// load is screenshot. It polls, every 250 ms, because nothing else can be
// waited on from the outside.
func (b *Browser) VisitUntil(path, expr, what string, within time.Duration) {
	b.t.Helper()
	end := time.Now().Add(within)
	for {
		ctx, cancel := b.step()
		_, err := chromedp.Run(ctx, chromedp.NavigateResponse(b.url(path)))
		cancel()
		if err != nil {
			b.fail("visit %s: %v", path, err)
		}
		if Eval[bool](b, `!!(`+expr+`)`) {
			b.landed()
			return
		}
		if time.Now().After(end) {
			b.landed()
			b.fail("%s: still not true after %v of reloading %s", what, within, path)
		}
		b.Check()
		time.Sleep(250 * time.Millisecond)
	}
}

// Count returns how many elements match the CSS selector.
func (b *Browser) Count(sel string) int {
	b.t.Helper()
	return Eval[int](b, `document.querySelectorAll(`+js(sel)+`).length`)
}

// Text returns the visible text of the first element matching sel, failing the
// test when there is none.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	s := Eval[*string](b, `(() => { const e = document.querySelector(`+js(sel)+`); return e ? e.innerText : null; })()`)
	if s == nil {
		b.fail("no element matches %s", sel)
	}
	return *s
}

// Attr returns attribute name of the first element matching sel, failing the
// test when there is no such element or attribute.
func (b *Browser) Attr(sel, name string) string {
	b.t.Helper()
	s := Eval[*string](b, `(() => { const e = document.querySelector(`+js(sel)+`); return e ? e.getAttribute(`+js(name)+`) : null; })()`)
	if s == nil {
		b.fail("no element matches %s with attribute %s", sel, name)
	}
	return *s
}

// Path returns the current page's path and query.
func (b *Browser) Path() string {
	b.t.Helper()
	return Eval[string](b, `location.pathname + location.search`)
}

// Eval evaluates a JavaScript expression on the current page (awaiting it when
// it is a promise) and decodes its value into T, failing the test on an error.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := b.step()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

// syncBuffer collects Chromium's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
