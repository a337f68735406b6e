package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/bench/internal/procstat"
)

// server is a running manager or agent.
type server struct {
	p   *proc
	url string // base URL: the manager's listen address, the agent's OTLP/HTTP one
}

// startManager runs a manager on dir with the YAML config cfg (may be empty) and
// waits for it to be ready.
func (r *runner) startManager(ctx context.Context, name, dir, cfg string) (*server, error) {
	addr := freePort()
	args := []string{"manager", "--listen", addr, "--data-dir", dir, "--log-level", "warn", "--heartbeat-interval", "2s"}
	if cfg != "" {
		path := filepath.Join(r.tmp, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config", path)
	}
	p, err := r.start(name, []string{"PERISCOPE_ADMIN_TOKEN=" + adminToken}, args...)
	if err != nil {
		return nil, err
	}
	s := &server{p: p, url: "http://" + addr}
	return s, waitHTTP(ctx, p, s.url+"/readyz", 60*time.Second)
}

// startAgent runs an agent for manager url with token; extra are more flags. It
// waits for the agent's OTLP/HTTP endpoint when wait is set.
func (r *runner) startAgent(ctx context.Context, name, managerURL, token, cfg string, wait bool, extra ...string) (*server, error) {
	addr := freePort()
	args := append([]string{"agent", "--manager", managerURL, "--token", token, "--release", "1.0.0",
		"--data-dir", filepath.Join(r.tmp, name), "--otlp-http", addr, "--otlp-grpc", "off",
		"--transport", "http", "--heartbeat-interval", "2s", "--log-level", "info"}, extra...)
	if cfg != "" {
		path := filepath.Join(r.tmp, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		args = append(args, "--config", path)
	}
	p, err := r.start(name, nil, args...)
	if err != nil {
		return nil, err
	}
	s := &server{p: p, url: "http://" + addr}
	if !wait {
		return s, nil
	}
	return s, waitHTTP(ctx, p, s.url+"/metrics", 60*time.Second)
}

// fleet is what the probes share: a manager with a file exporter, a deployment and
// its agent.
type fleet struct {
	m, a       *server
	dataDir    string
	exportFile string
	depID      string
	depToken   string
}

func (r *runner) probes(ctx context.Context) error {
	// The first probe brings up managers of its own, so it runs before the shared one.
	r.check(ctx, "kill -9 during first start", "manager restarts on the same data dir and serves, 3 times out of 3",
		r.probeKillDuringFirstStart)

	f := &fleet{dataDir: filepath.Join(r.tmp, "manager"), exportFile: filepath.Join(r.tmp, "export", "telemetry.jsonl")}
	cfg := fmt.Sprintf("exporters:\n  - name: probefile\n    type: file\n    path: %s\n", f.exportFile)
	var err error
	if f.m, err = r.startManager(ctx, "manager", f.dataDir, cfg); err != nil {
		return err
	}
	api := f.m.url + "/api/v1"
	if a, err := callJSON(ctx, "POST", api+"/releases", adminToken, map[string]string{"stack": "probe", "version": "1.0.0"}); err != nil || a.code != 201 && a.code != 200 {
		return fmt.Errorf("create release: %v %v", a, err)
	}
	a, err := callJSON(ctx, "POST", api+"/deployments", adminToken, map[string]string{"id": "probe-1", "customer": "probe", "stack": "probe"})
	if err != nil || a.code/100 != 2 {
		return fmt.Errorf("create deployment: %v %v", a, err)
	}
	var dep struct{ ID, Token string }
	if err := json.Unmarshal(a.body, &dep); err != nil || dep.Token == "" {
		return fmt.Errorf("create deployment: no token in %s", a.body)
	}
	f.depID, f.depToken = dep.ID, dep.Token
	if f.a, err = r.startAgent(ctx, "agent", f.m.url, f.depToken, "", true); err != nil {
		return err
	}

	r.check(ctx, "REST trailing JSON", "400",
		func(ctx context.Context) (string, string) {
			a, err := call(ctx, "POST", api+"/releases", adminToken, []byte(`{"stack":"probe","version":"9.9.9"} {"x":1}`), "Content-Type", "application/json")
			return statusOutcome(a, err, 400)
		})
	r.check(ctx, "REST ';' in query", "400",
		func(ctx context.Context) (string, string) {
			a, err := call(ctx, "GET", api+"/deployments?customer=probe;stack=x", adminToken, nil)
			return statusOutcome(a, err, 400)
		})
	r.check(ctx, "REST wrong method", "405 with Allow: GET",
		func(ctx context.Context) (string, string) {
			a, err := call(ctx, "PATCH", api+"/summary", adminToken, nil)
			if err != nil {
				return err.Error(), "FAIL"
			}
			return fmt.Sprintf("%s; Allow %q", a, a.header.Get("Allow")), pass(a.code == 405 && strings.Contains(a.header.Get("Allow"), "GET"))
		})
	r.check(ctx, "REST 5 MB customer name", "400 (or 413)",
		func(ctx context.Context) (string, string) { return r.probeRESTLarge(ctx, f) })
	r.check(ctx, "auth matrix", "no/wrong token 401, deployment token 401/403, viewer write 403, admin 200",
		func(ctx context.Context) (string, string) { return r.probeAuth(ctx, f) })
	r.check(ctx, "SQL-ish query parameters", "no 5xx from any query endpoint; the fleet still lists",
		func(ctx context.Context) (string, string) { return r.probeSQLish(ctx, f) })
	r.check(ctx, "OTLP 415 body", "415 with a google.rpc.Status, code != 0",
		func(ctx context.Context) (string, string) {
			a, err := call(ctx, "POST", f.m.url+"/v1/logs", f.depToken, []byte("hello"), "Content-Type", "text/plain")
			return statusBodyOutcome(a, err, 415)
		})
	r.check(ctx, "OTLP 413 body", "413 with a google.rpc.Status, code != 0",
		func(ctx context.Context) (string, string) {
			a, err := call(ctx, "POST", f.m.url+"/v1/logs", f.depToken, make([]byte, 17<<20), "Content-Type", "application/x-protobuf")
			return statusBodyOutcome(a, err, 413)
		})
	r.check(ctx, "revoked deployment token", "telemetry with the revoked token gets 401",
		func(ctx context.Context) (string, string) { return r.probeRevoked(ctx, f) })
	r.check(ctx, "operator token given to the agent", "agent stops with a message naming the deployment token",
		func(ctx context.Context) (string, string) { return r.probeOperatorTokenToAgent(ctx, f) })
	r.check(ctx, "drop_oldest loss accounting", "dropped_records_total = queue_dropped_entries = accepted - queued - the record held in flight",
		func(ctx context.Context) (string, string) { return r.probeDropOldest(ctx) })
	r.check(ctx, "invalid UTF-8 log, then good ones", "the good records reach the manager's store (query API), 3 of 3",
		func(ctx context.Context) (string, string) { return r.probeInvalidUTF8(ctx, f) })
	r.check(ctx, "exporter gets no duplicates", "each good record of the previous probe is in the file exporter once",
		func(ctx context.Context) (string, string) { return r.probeExportOnce(ctx, f) })
	// After the probes that write data, before those that may leave the manager
	// or the agent too busy to answer: bombs and huge bodies come last.
	r.check(ctx, "data file modes", "files 0600, directories 0700 under the manager's and agent's data dirs",
		func(ctx context.Context) (string, string) {
			return modesOutcome(f.dataDir, filepath.Join(r.tmp, "agent"))
		})

	r.check(ctx, "OTLP/JSON nested 500k deep to agent", "400; agent peak RSS grows < 128 MiB",
		func(ctx context.Context) (string, string) { return r.probeNested(ctx, f.a, "", f.a.p) })
	r.check(ctx, "OTLP/JSON nested 500k deep to manager", "400; manager peak RSS grows < 128 MiB",
		func(ctx context.Context) (string, string) { return r.probeNested(ctx, f.m, f.depToken, f.m.p) })
	r.check(ctx, "OpAMP 17 MB plain body", "413",
		func(ctx context.Context) (string, string) { return r.probeOpAMPLarge(ctx, f) })
	r.check(ctx, "OpAMP gzip bomb (2 MB)", "413 within 5s; manager peak RSS grows < 64 MiB",
		func(ctx context.Context) (string, string) { return r.probeOpAMPBomb(ctx, f) })
	return nil
}

func statusOutcome(a answer, err error, want int) (string, string) {
	if err != nil {
		return err.Error(), "FAIL"
	}
	return a.String(), pass(a.code == want)
}

func statusBodyOutcome(a answer, err error, want int) (string, string) {
	if err != nil {
		return err.Error(), "FAIL"
	}
	code, ok := statusCode(a)
	return fmt.Sprintf("%d, %s body, google.rpc.Status code %d (parsed %v)", a.code, a.header.Get("Content-Type"), code, ok),
		pass(a.code == want && ok && code != 0)
}

func (r *runner) probeKillDuringFirstStart(ctx context.Context) (string, string) {
	var notes []string
	ok := 0
	for i, delay := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond, 900 * time.Millisecond} {
		dir := filepath.Join(r.tmp, fmt.Sprintf("kill9-%d", i))
		p, err := r.start(fmt.Sprintf("kill9-%d", i), []string{"PERISCOPE_ADMIN_TOKEN=" + adminToken},
			"manager", "--listen", freePort(), "--data-dir", dir, "--log-level", "warn")
		if err != nil {
			return err.Error(), "FAIL"
		}
		// The kill lands somewhere in the first start: creating the database,
		// migrating it, writing the admin token.
		select {
		case <-time.After(delay):
		case <-p.done:
		}
		p.kill()
		start := time.Now()
		m, err := r.startManager(ctx, fmt.Sprintf("kill9-%d-restart", i), dir, "")
		if err != nil {
			notes = append(notes, fmt.Sprintf("#%d killed at %s: restart failed: %v", i+1, delay, err))
			if m != nil {
				m.p.kill()
			}
			continue
		}
		a, err := call(ctx, "GET", m.url+"/api/v1/summary", adminToken, nil)
		m.p.stop()
		if err != nil || a.code != 200 {
			notes = append(notes, fmt.Sprintf("#%d: restarted but the API answered %v %v", i+1, a, err))
			continue
		}
		ok++
		notes = append(notes, fmt.Sprintf("#%d killed at %s, ready %.1fs after restart", i+1, delay, time.Since(start).Seconds()))
	}
	return fmt.Sprintf("%d/3: %s", ok, strings.Join(notes, "; ")), pass(ok == 3)
}

// runID tells this run's records from any other's.
var runID = func() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}()

func goodMarker(i int) string { return fmt.Sprintf("probe-good-%s-%d", runID, i) }

func (r *runner) probeInvalidUTF8(ctx context.Context, f *fleet) (string, string) {
	post := func(body string) (answer, error) {
		return call(ctx, "POST", f.a.url+"/v1/logs", "", logsRequest(body), "Content-Type", "application/x-protobuf")
	}
	// A control record first: it shows the way to the store and back works, so a
	// FAIL below is about the bad record.
	control := "probe-control-" + runID
	if a, err := post(control); err != nil || a.code != 200 {
		return fmt.Sprintf("control record: %v %v", a, err), "FAIL"
	}
	if n, took := waitLogs(ctx, f, "probe-control-"+runID, []string{control}, 20*time.Second); n != 1 {
		return fmt.Sprintf("the control record did not reach the store within %.0fs: nothing to judge", took.Seconds()), "FAIL"
	}
	bad, err := post("probe-bad-" + runID + " \xff\xfe\xfd")
	if err != nil {
		return "bad record: " + err.Error(), "FAIL"
	}
	var markers []string
	for i := range 3 {
		markers = append(markers, goodMarker(i))
		if a, err := post(goodMarker(i)); err != nil || a.code != 200 {
			return fmt.Sprintf("bad record %d; good record %d: %v %v", bad.code, i, a, err), "FAIL"
		}
	}
	found, took := waitLogs(ctx, f, "probe-good-"+runID, markers, 20*time.Second)
	return fmt.Sprintf("control record stored; bad record answered %d; good records in the store: %d/3 after %.1fs", bad.code, found, took.Seconds()),
		pass(found == 3)
}

// waitLogs polls the manager's log query for records containing contains until
// every marker is in the answer or within passes; it returns how many were.
func waitLogs(ctx context.Context, f *fleet, contains string, markers []string, within time.Duration) (int, time.Duration) {
	start := time.Now()
	q := url.Values{"deployment": {f.depID}, "contains": {contains}, "since": {time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}}
	found := 0
	for time.Since(start) < within && ctx.Err() == nil {
		a, err := call(ctx, "GET", f.m.url+"/api/v1/logs?"+q.Encode(), adminToken, nil)
		if err == nil && a.code == 200 {
			found = 0
			for _, m := range markers {
				if bytes.Contains(a.body, []byte(m)) {
					found++
				}
			}
			if found == len(markers) {
				break
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return found, time.Since(start)
}

func (r *runner) probeExportOnce(ctx context.Context, f *fleet) (string, string) {
	var counts [3]int
	start := time.Now()
	for time.Since(start) < 10*time.Second && ctx.Err() == nil {
		b, _ := os.ReadFile(f.exportFile)
		for i := range counts {
			counts[i] = bytes.Count(b, []byte(goodMarker(i)))
		}
		if counts[0] > 0 && counts[1] > 0 && counts[2] > 0 {
			// Give a duplicate time to arrive: exporters retry within seconds.
			time.Sleep(3 * time.Second)
			b, _ = os.ReadFile(f.exportFile)
			for i := range counts {
				counts[i] = bytes.Count(b, []byte(goodMarker(i)))
			}
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Sprintf("copies of each good record in %s: %v", filepath.Base(f.exportFile), counts),
		pass(counts == [3]int{1, 1, 1})
}

// metric sums the samples of a Prometheus metric whose labels contain every one of
// labels.
func metric(text, name string, labels ...string) float64 {
	sum := 0.0
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line, l)
		}
		if !match {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

func (r *runner) probeDropOldest(ctx context.Context) (string, string) {
	// The manager's address has nothing listening: every record stays queued until
	// the queue's bound drops it.
	cfg := "queue:\n  max_bytes: 64KiB\n  on_full: drop_oldest\n"
	a, err := r.startAgent(ctx, "agent-drop", "http://"+freePort(), "pdt_nobody-listens", cfg, true)
	if err != nil {
		return err.Error(), "FAIL"
	}
	defer a.p.stop()
	accepted := 0
	const sent = 100
	for i := range sent {
		pad := make([]byte, 1024)
		rand.Read(pad) // incompressible, so each entry takes its room in the queue
		resp, err := call(ctx, "POST", a.url+"/v1/logs", "", logsRequest(fmt.Sprintf("drop-%d-%x", i, pad)), "Content-Type", "application/x-protobuf")
		if err != nil {
			return err.Error(), "FAIL"
		}
		if resp.code == 200 {
			accepted++
		}
	}
	m, err := call(ctx, "GET", a.url+"/metrics", "", nil)
	if err != nil {
		return err.Error(), "FAIL"
	}
	text := string(m.body)
	queued := metric(text, "periscope_agent_queue_entries", `signal="logs"`)
	qDropped := metric(text, "periscope_agent_queue_dropped_entries_total", `signal="logs"`)
	dropped := metric(text, "periscope_agent_dropped_records_total", `signal="logs"`)
	acceptedMetric := metric(text, "periscope_agent_accepted_records_total", `signal="logs"`)
	lost := float64(accepted) - queued
	// A record dropped from under the forwarder's in-flight batch is counted only
	// once that batch is resolved (delivered or given up), so it can be neither
	// queued nor counted yet: with nothing listening, the forwarder holds the one
	// record it read first.
	unresolved := lost - dropped
	return fmt.Sprintf("%d sent, %d answered 200 (accepted metric %g), %g queued, so %g gone; queue_dropped_entries %g, dropped_records_total %g, %g held in flight",
			sent, accepted, acceptedMetric, queued, lost, qDropped, dropped, unresolved),
		pass(lost > 0 && dropped == qDropped && unresolved >= 0 && unresolved <= 1 && acceptedMetric == float64(accepted))
}

// rssGrowth runs do and returns how much p's peak resident set grew meanwhile, in MiB.
func rssGrowth(p *proc, do func()) int {
	before := procstat.PeakRSS(p.pid())
	do()
	return (procstat.PeakRSS(p.pid()) - before) >> 10
}

func (r *runner) probeOpAMPBomb(ctx context.Context, f *fleet) (string, string) {
	bomb, inflated := gzipBomb(2 << 20)
	var a answer
	var err error
	// A manager that inflates the whole bomb takes far longer than this.
	bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	grew := rssGrowth(f.m.p, func() {
		a, err = call(bctx, "POST", f.m.url+"/v1/opamp", f.depToken, bomb,
			"Content-Type", "application/x-protobuf", "Content-Encoding", "gzip")
	})
	if err != nil {
		return err.Error(), "FAIL"
	}
	return fmt.Sprintf("%d KiB inflating to %d MiB: %s; manager peak RSS +%d MiB", len(bomb)>>10, inflated>>20, a, grew),
		pass(a.code == 413 && a.took < 5*time.Second && grew < 64)
}

func (r *runner) probeOpAMPLarge(ctx context.Context, f *fleet) (string, string) {
	a, err := call(ctx, "POST", f.m.url+"/v1/opamp", f.depToken, make([]byte, 17<<20), "Content-Type", "application/x-protobuf")
	return statusOutcome(a, err, 413)
}

func (r *runner) probeNested(ctx context.Context, s *server, token string, p *proc) (string, string) {
	body := nestedJSONLogs(500_000)
	var a answer
	var err error
	grew := rssGrowth(p, func() {
		a, err = call(ctx, "POST", s.url+"/v1/logs", token, body, "Content-Type", "application/json")
	})
	if err != nil {
		return err.Error(), "FAIL"
	}
	return fmt.Sprintf("%d MiB body: %s; peak RSS +%d MiB", len(body)>>20, a, grew), pass(a.code == 400 && grew < 128)
}

func (r *runner) probeRESTLarge(ctx context.Context, f *fleet) (string, string) {
	a, err := callJSON(ctx, "POST", f.m.url+"/api/v1/deployments", adminToken,
		map[string]string{"id": "probe-large", "customer": strings.Repeat("c", 5<<20), "stack": "probe"})
	if err != nil {
		return err.Error(), "FAIL"
	}
	return a.String(), pass(a.code == 400 || a.code == 413)
}

// revokePath finds an endpoint that revokes a deployment's token in the manager's
// OpenAPI document.
func revokePath(doc []byte) (method, path string) {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if json.Unmarshal(doc, &d) != nil {
		return "", ""
	}
	for p, ops := range d.Paths {
		if !strings.HasPrefix(p, "/api/v1/deployments/{") || !strings.Contains(p, "token") {
			continue
		}
		if _, ok := ops["delete"]; ok {
			return "DELETE", p
		}
		if _, ok := ops["post"]; ok && strings.Contains(p, "revoke") {
			return "POST", p
		}
	}
	return "", ""
}

func (r *runner) probeRevoked(ctx context.Context, f *fleet) (string, string) {
	doc, err := call(ctx, "GET", f.m.url+"/api/v1/openapi.json", "", nil)
	if err != nil {
		return err.Error(), "FAIL"
	}
	method, path := revokePath(doc.body)
	if path == "" {
		return "no endpoint revoking a deployment token in /api/v1/openapi.json", "SKIP"
	}
	// A deployment of its own, so the shared agent keeps its token.
	a, err := callJSON(ctx, "POST", f.m.url+"/api/v1/deployments", adminToken, map[string]string{"id": "probe-revoked", "customer": "probe", "stack": "probe"})
	var dep struct{ Token string }
	if err != nil || a.code/100 != 2 || json.Unmarshal(a.body, &dep) != nil || dep.Token == "" {
		return fmt.Sprintf("create deployment: %v %v", a, err), "FAIL"
	}
	send := func() (answer, error) {
		return call(ctx, "POST", f.m.url+"/v1/logs", dep.Token, logsRequest("probe-revoked-"+runID), "Content-Type", "application/x-protobuf")
	}
	before, err := send()
	if err != nil {
		return err.Error(), "FAIL"
	}
	p := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(path, "probe-revoked")
	rv, err := callJSON(ctx, method, f.m.url+p, adminToken, map[string]string{"reason": "probe: revoke a token"})
	if err != nil || rv.code/100 != 2 {
		return fmt.Sprintf("%s %s: %v %v", method, p, rv, err), "FAIL"
	}
	after, err := send()
	if err != nil {
		return err.Error(), "FAIL"
	}
	return fmt.Sprintf("before %s %s: %d; after: %s", method, p, before.code, after), pass(before.code == 200 && after.code == 401)
}

func (r *runner) probeOperatorTokenToAgent(ctx context.Context, f *fleet) (string, string) {
	a, err := r.startAgent(ctx, "agent-operator-token", f.m.url, adminToken, "", false)
	if err != nil {
		return err.Error(), "FAIL"
	}
	defer a.p.stop()
	select {
	case <-a.p.done:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	out := a.p.out.String()
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(strings.ToLower(l), "token") {
			line = l
			break
		}
	}
	clear := strings.Contains(strings.ToLower(out), "deployment token") || strings.Contains(out, "pdt_")
	state := "still running after 10s"
	if a.p.exited() {
		state = fmt.Sprintf("exited (%v)", a.p.err)
	}
	if line == "" {
		line = "no line mentions a token"
	}
	return fmt.Sprintf("%s; %s", state, line), pass(a.p.exited() && a.p.err != nil && clear)
}

func (r *runner) probeAuth(ctx context.Context, f *fleet) (string, string) {
	api := f.m.url + "/api/v1"
	tok, err := callJSON(ctx, "POST", api+"/tokens", adminToken, map[string]string{"name": "probe-viewer", "role": "viewer"})
	var viewer struct {
		Token string `json:"token"`
	}
	if err != nil || tok.code/100 != 2 || json.Unmarshal(tok.body, &viewer) != nil || viewer.Token == "" {
		return fmt.Sprintf("create viewer token: %v %v", tok, err), "FAIL"
	}
	cases := []struct {
		name, method, path, token string
		want                      []int
	}{
		{"no token", "GET", "/deployments", "", []int{401}},
		{"wrong token", "GET", "/deployments", "psk_wrong-0123456789", []int{401}},
		{"deployment token", "GET", "/deployments", f.depToken, []int{401, 403}},
		{"viewer writes", "POST", "/releases", viewer.Token, []int{403}},
		{"viewer reads", "GET", "/deployments", viewer.Token, []int{200}},
		{"admin", "GET", "/tokens", adminToken, []int{200}},
	}
	var notes []string
	ok := true
	for _, c := range cases {
		a, err := call(ctx, c.method, api+c.path, c.token, []byte(`{"stack":"probe","version":"7.7.7"}`), "Content-Type", "application/json")
		if err != nil {
			return err.Error(), "FAIL"
		}
		good := false
		for _, w := range c.want {
			good = good || a.code == w
		}
		ok = ok && good
		notes = append(notes, fmt.Sprintf("%s %d", c.name, a.code))
	}
	return strings.Join(notes, ", "), pass(ok)
}

func (r *runner) probeSQLish(ctx context.Context, f *fleet) (string, string) {
	values := []string{`' OR '1'='1`, `"; DROP TABLE deployments; --`, `%' UNION SELECT 1 --`, `x\'; SELECT 1; --`,
		"\x00", `)`, `' || (SELECT version()) || '`, `service.name); DELETE FROM logs; --`}
	var paths []string
	for _, v := range values {
		e := url.QueryEscape(v)
		paths = append(paths,
			"/deployments?customer="+e, "/deployments?text="+e, "/deployments?cursor="+e,
			"/logs?contains="+e+"&service="+e, "/logs?attr="+url.QueryEscape("k="+v),
			"/spans?name="+e, "/red?group_by="+e, "/metrics/series?name="+e+"&group_by="+e,
			"/releases/compare?deployment="+e+"&against="+e, "/events?deployment="+e)
	}
	var bad []string
	codes := map[int]int{}
	for _, p := range paths {
		a, err := call(ctx, "GET", f.m.url+"/api/v1"+p, adminToken, nil)
		if err != nil {
			bad = append(bad, p+": "+err.Error())
			continue
		}
		codes[a.code]++
		if a.code >= 500 {
			bad = append(bad, fmt.Sprintf("%s: %d", p, a.code))
		}
	}
	list, err := call(ctx, "GET", f.m.url+"/api/v1/deployments", adminToken, nil)
	still := err == nil && list.code == 200 && bytes.Contains(list.body, []byte(`"probe-1"`))
	obs := fmt.Sprintf("%d requests, answers %v; fleet still lists: %v", len(paths), codes, still)
	if len(bad) > 0 {
		obs += "; 5xx or errors: " + strings.Join(bad[:min(3, len(bad))], "; ")
	}
	return obs, pass(len(bad) == 0 && still)
}

// modesOutcome lists files not 0600 and directories not 0700 under the roots.
func modesOutcome(roots ...string) (string, string) {
	var bad []string
	n := 0
	for _, root := range roots {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			n++
			rel, _ := filepath.Rel(filepath.Dir(root), path)
			mode := info.Mode().Perm()
			if d.IsDir() && mode != 0o700 || !d.IsDir() && info.Mode().IsRegular() && mode&0o077 != 0 {
				bad = append(bad, fmt.Sprintf("%s %#o", rel, mode))
			}
			return nil
		})
	}
	if len(bad) == 0 {
		return fmt.Sprintf("%d files and directories checked, all private", n), "PASS"
	}
	return fmt.Sprintf("%d of %d too open: %s", len(bad), n, strings.Join(bad[:min(5, len(bad))], ", ")), "FAIL"
}
