// Command pins pins every deployment of a fleet of push agents to an older
// release in one call, and times how long until every connected agent has
// received the new offer; then it unpins them all and times that too.
//
//	go run ./bench/pins                     # 10,000 deployments
//	go run ./bench/pins -deployments 1000
//
// The manager runs in this process (embedded store in a temporary directory,
// port 0). The agents run in a child process (this binary again, with a hidden
// -role agents): one opamp-go WebSocket client per deployment, each with its own
// token, running release 2.0 and accepting release offers. A process may hold only
// so many open files, and 10,000 client sockets next to 10,000 server sockets
// would not fit in one.
//
// The pin is registry.Pin on the whole fleet: one store transaction for the pins
// and their audit entries, then the manager pushes each connected agent its new
// offer over its open WebSocket. An agent notes when the offer arrives and reports
// it applied at once (no hook runs). Both processes run on the same machine, so
// the wall clocks compare directly.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/periscope-dev/periscope/bench/internal/nofile"
	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/registry"
)

// hidden are the flags the benchmark passes to its agents process.
var hidden = map[string]bool{"role": true, "manager": true, "tokens": true}

func main() {
	n := flag.Int("deployments", 10000, "fleet size: deployments, each with one connected push agent")
	timeout := flag.Duration("timeout", 60*time.Second, "how long every agent has to receive an offer after the pin (or unpin) call starts")
	conc := flag.Int("connect", 200, "agents connecting at once")
	hb := flag.Duration("heartbeat", 30*time.Second, "manager heartbeat interval, which the agents adopt (stale after three)")
	prof := flag.String("cpuprofile", "", "write a CPU profile of the manager process during the pin and the unpin to this file")
	role := flag.String("role", "", "internal: \"agents\" runs the agents process")
	mgrURL := flag.String("manager", "", "internal: manager URL for the agents process")
	tokens := flag.String("tokens", "", "internal: file of deployment tokens, one a line, for the agents process")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: go run ./bench/pins [flags]\n")
		flag.VisitAll(func(f *flag.Flag) {
			if !hidden[f.Name] {
				fmt.Fprintf(flag.CommandLine.Output(), "  -%s\n    \t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
			}
		})
	}
	flag.Parse()
	var err error
	if *role == "agents" {
		err = runAgents(*mgrURL, *tokens, *conc, *hb)
	} else {
		err = run(*n, *timeout, *conc, *hb, *prof)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const stack = "shop"

// bench is one run: the manager in this process and the agents in the child.
type bench struct {
	n       int
	timeout time.Duration
	m       *manager.Manager
	reg     *registry.Registry
	ids     []string
	agents  *agentsProc
	// pinLogged is when the registry logged "pin change applied" (unix ns): its
	// store transaction has committed and the in-memory fleet has the new pins,
	// and the push to agents is about to start.
	pinLogged atomic.Int64
	quiet     atomic.Bool
	audit     int // pin audit entries so far
}

func run(n int, timeout time.Duration, conc int, hb time.Duration, prof string) error {
	if _, err := nofile.Raise(); err != nil {
		return err
	}
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "periscope-bench-pins-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	b := &bench{n: n, timeout: timeout}
	cfg := config.DefaultManager()
	cfg.Listen, cfg.DataDir, cfg.AdminToken = "127.0.0.1:0", filepath.Join(tmp, "data"), "psk_bench-admin"
	cfg.HeartbeatInterval = config.Duration(hb)
	log := slog.New(&markHandler{next: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), mark: &b.pinLogged, quiet: &b.quiet})
	b.m, err = manager.New(cfg, manager.Settings{Logger: log})
	if err != nil {
		return err
	}
	if err := b.m.Start(ctx); err != nil {
		return err
	}
	defer b.m.Shutdown(context.WithoutCancel(ctx))
	b.reg = b.m.Registry()
	fmt.Printf("manager at %s, heartbeat %v, %d CPUs, load average %s\n", b.m.URL(), hb, runtime.NumCPU(), loadavg())

	for _, v := range []string{"1.0", "2.0"} {
		if _, err := b.reg.CreateRelease(ctx, fleet.Release{Stack: stack, Version: v}); err != nil {
			return err
		}
	}
	nds := make([]registry.NewDeployment, n)
	clouds := []string{"aws", "gcp", "azure"}
	for i := range nds {
		nds[i] = registry.NewDeployment{ID: fmt.Sprintf("d-%05d", i), Customer: fmt.Sprintf("customer-%d", i%500), Stack: stack,
			Cloud: clouds[i%3], Region: fmt.Sprintf("region-%d", i%12)}
	}
	t := time.Now()
	created, err := b.reg.CreateDeployments(ctx, nds)
	if err != nil {
		return err
	}
	fmt.Printf("created %d deployments in one batch in %v\n", n, time.Since(t).Round(time.Millisecond))
	tokFile := filepath.Join(tmp, "tokens")
	var sb strings.Builder
	for _, c := range created {
		b.ids = append(b.ids, c.View.Deployment.ID)
		sb.WriteString(c.Token + "\n")
	}
	if err := os.WriteFile(tokFile, []byte(sb.String()), 0o600); err != nil {
		return err
	}

	t = time.Now()
	b.agents, err = startAgentsProc(n, b.m.URL(), tokFile, conc, hb)
	if err != nil {
		return err
	}
	defer func() {
		b.quiet.Store(true) // the agents' connections drop now
		b.agents.stop()
	}()
	connectTime, err := b.waitConnected(10 * time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("%d push agents connected in %v (%d at a time)\n", n, connectTime.Round(time.Millisecond), conc)
	settle, err := b.waitSettled(t, 2*time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("every agent reported its first offer (2.0) applied %v after the agents process started\n", settle.Round(time.Millisecond))

	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	pin, err := b.phase(ctx, "pin all to 1.0", "1.0", registry.PinRequest{Select: registry.Selector{All: true}, Action: fleet.ActionPin,
		Release: "1.0", By: "bench", Reason: "benchmark: pin the whole fleet"})
	if err != nil {
		return err
	}
	var unpin phaseResult
	if pin.complete() {
		unpin, err = b.phase(ctx, "unpin all", "2.0", registry.PinRequest{Select: registry.Selector{All: true}, Action: fleet.ActionUnpin,
			By: "bench", Reason: "benchmark: unpin the whole fleet"})
		if err != nil {
			return err
		}
	}

	if prof != "" {
		pprof.StopCPUProfile()
	}
	agentRSS, agentCPU := b.agents.stats()
	fmt.Printf("\n%d deployments, each with a connected push agent; %d CPUs; heartbeat %v; connecting took %v\n\n",
		n, runtime.NumCPU(), hb, connectTime.Round(time.Millisecond))
	fmt.Printf("%-44s %-26s %s\n", "", "pin all to 1.0", "unpin all")
	row := func(name string, f func(p phaseResult) string) {
		u := "-"
		if unpin.name != "" {
			u = f(unpin)
		}
		fmt.Printf("%-44s %-26s %s\n", name, f(pin), u)
	}
	row("deployments changed (one change id)", func(p phaseResult) string { return strconv.Itoa(p.changed) })
	row("Pin call (store tx + push fan-out)", func(p phaseResult) string { return ms(p.call) })
	row("… until store tx committed (log mark)", func(p phaseResult) string { return ms(p.store) })
	row("delivered", func(p phaseResult) string { return fmt.Sprintf("%d / %d", len(p.lat), n) })
	row("received by the time Pin returned", func(p phaseResult) string {
		k := sort.Search(len(p.lat), func(i int) bool { return p.lat[i] > p.call })
		return fmt.Sprintf("%d", k)
	})
	row("delivery first", func(p phaseResult) string { return ms(pct(p.lat, 0)) })
	row("delivery p50", func(p phaseResult) string { return ms(pct(p.lat, 0.5)) })
	row("delivery p99", func(p phaseResult) string { return ms(pct(p.lat, 0.99)) })
	row("delivery max (all received)", func(p phaseResult) string {
		if !p.complete() {
			return ms(pct(p.lat, 1)) + " (NOT all)"
		}
		return ms(pct(p.lat, 1))
	})
	row("all reported applied (polled)", func(p phaseResult) string { return ms(p.acked) })
	row("offers sent (periscope_release_offers_total)", func(p phaseResult) string { return fmt.Sprint(p.offers) })
	row("registry flushes until all reported", func(p phaseResult) string {
		return fmt.Sprintf("%.0f (%.0f rows, %.0f ms)", p.flush[0], p.flush[1], p.flush[2]*1000)
	})
	row("… and until the aftermath was written", func(p phaseResult) string {
		return fmt.Sprintf("%.0f (%.0f rows, %.0f ms)", p.after[0], p.after[1], p.after[2]*1000)
	})
	row("CPU until all received: manager / agents", func(p phaseResult) string {
		return fmt.Sprintf("%.2f s / %.2f s", p.cpuManager, p.cpuAgents)
	})
	row("other processes' CPU meanwhile", func(p phaseResult) string { return fmt.Sprintf("%.2f s", max(p.cpuOthers, 0)) })
	fmt.Printf("\npeak RSS: manager process %d MiB, agents process %d MiB\n", procstat.PeakRSS(os.Getpid())/1024, agentRSS/1024)
	fmt.Printf("CPU over the whole run: manager process %.1f s, agents process %.1f s\n", cpuSelf(), agentCPU)
	fmt.Printf("load average now (1, 5, 15 min): %s\n", loadavg())

	var errs []error
	for _, p := range []phaseResult{pin, unpin} {
		if p.name != "" && !p.complete() {
			errs = append(errs, fmt.Errorf("%s: %d of %d agents did not receive the offer within %v (e.g. %s)", p.name, n-len(p.lat), n, timeout, listIDs(p.missing)))
		}
		errs = append(errs, p.problems...)
	}
	return errors.Join(errs...)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[int(float64(len(s)-1)*p)]
}

func listIDs(ids []string) string {
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + fmt.Sprintf(" and %d more", len(ids)-5)
	}
	return strings.Join(ids, ", ")
}

// loadavg is the machine's load average, which shows whether something else
// shared the cores.
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// machineBusy is the user and system CPU seconds all processes have used since
// boot. Interrupt and softirq time (much of the loopback traffic's cost) is
// left out, as it is from a process's own figures.
func machineBusy() float64 {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for _, v := range f[1:4] { // user, nice, system
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy / 100 // USER_HZ
}

func cpuSelf() float64 {
	c, _ := procstat.CPU(os.Getpid())
	return c
}

// waitConnected waits until the manager has every deployment as a connected
// push deployment, on its registry and in its push-connection gauge.
func (b *bench) waitConnected(within time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(within)
	last := time.Now()
	for {
		views, _ := b.reg.List(fleet.Filter{}, registry.Page{})
		conn := 0
		for _, v := range views {
			if v.Deployment.Connected && v.Deployment.Mode == fleet.ModePush {
				conn++
			}
		}
		gauge, _ := b.metric("periscope_opamp_push_connections")
		if conn == b.n && int(gauge) == b.n {
			return time.Since(start), nil
		}
		if err := b.agents.exited(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("after %v only %d of %d deployments are connected push deployments (gauge %v)", within, conn, b.n, gauge)
		}
		if time.Since(last) > 5*time.Second {
			fmt.Printf("  connected: %d of %d\n", conn, b.n)
			last = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pending counts deployments the manager still has an offer to send to: their
// agent has not reported the current offer applied.
func (b *bench) pending() int {
	n := 0
	for _, id := range b.ids {
		if _, need := b.reg.Offer(id); need {
			n++
		}
	}
	return n
}

// waitSettled waits until no deployment needs an offer and no agent has
// received one for a second.
func (b *bench) waitSettled(since time.Time, within time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(within)
	var done time.Duration
	for {
		p := b.pending()
		if p == 0 && done == 0 {
			done = time.Since(since)
		}
		if p == 0 && time.Since(time.Unix(0, b.agents.lastReceipt.Load())) > time.Second {
			return done, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("after %v, %d deployments still have an offer to send", within, p)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// phaseResult is what one pin change measured.
type phaseResult struct {
	name        string
	changed     int
	call, store time.Duration
	lat         []time.Duration // receive time after the call started, sorted
	missing     []string
	acked       time.Duration
	offers      float64
	flush       [3]float64 // registry flushes, rows and seconds from the call until all reported
	after       [3]float64 // the same until the registry has written the change's aftermath
	cpuManager  float64
	cpuAgents   float64
	cpuOthers   float64 // every other process on the machine
	problems    []error
	allReceived bool
}

func (p phaseResult) complete() bool { return p.allReceived }

// phase makes one pin change of the whole fleet and times the delivery of the
// resulting offer of release to every agent.
func (b *bench) phase(ctx context.Context, name, release string, req registry.PinRequest) (phaseResult, error) {
	res := phaseResult{name: name}
	// Write what the setup left pending (every agent's last report), so the change
	// does not start behind a flush of the whole fleet's check-in state.
	if err := b.reg.Flush(ctx); err != nil {
		return res, err
	}
	offers0, _ := b.metric("periscope_release_offers_total")
	fl0 := b.flushes()
	cpuM0, cpuA0, busy0 := cpuSelf(), b.agents.cpu(), machineBusy()
	b.pinLogged.Store(0)
	done := b.agents.expect(release)
	t0 := time.Now()
	b.agents.setStart(t0)
	out, err := b.reg.Pin(ctx, req)
	res.call = time.Since(t0)
	if err != nil {
		return res, fmt.Errorf("%s: %w", name, err)
	}
	if at := b.pinLogged.Load(); at != 0 {
		res.store = time.Unix(0, at).Sub(t0)
	}
	res.changed = len(out.Changes)
	fmt.Printf("%s: Pin returned after %v (change %s, %d changed, %d unchanged)\n", name, res.call.Round(time.Microsecond), out.ChangeID, len(out.Changes), out.Unchanged)
	select {
	case <-done:
		res.allReceived = true
	case <-time.After(time.Until(t0.Add(b.timeout))):
	}
	res.cpuManager, res.cpuAgents = cpuSelf()-cpuM0, b.agents.cpu()-cpuA0
	res.cpuOthers = machineBusy() - busy0 - res.cpuManager - res.cpuAgents
	got := b.agents.received()
	for i, at := range got {
		if at == 0 {
			res.missing = append(res.missing, b.ids[i])
			continue
		}
		res.lat = append(res.lat, time.Unix(0, at).Sub(t0))
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	fmt.Printf("%s: %d of %d agents received the offer of %s; last after %v\n", name, len(res.lat), b.n, release, pct(res.lat, 1).Round(time.Microsecond))

	// Until the manager has every agent's report on the offer; polling costs CPU,
	// so only after delivery is timed.
	for time.Since(t0) < b.timeout+30*time.Second {
		if b.pending() == 0 {
			res.acked = time.Since(t0)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.acked == 0 {
		res.problems = append(res.problems, fmt.Errorf("%s: %d deployments never reported the offer applied", name, b.pending()))
	}
	offers1, _ := b.metric("periscope_release_offers_total")
	res.offers = offers1 - offers0
	fl1 := b.flushes()
	for i := range res.flush {
		res.flush[i] = fl1[i] - fl0[i]
	}
	// The registry writes what the change and the agents' reports left pending
	// within a flush interval; wait for that so it is counted here and does not
	// run into the next change.
	for quiet := time.Now(); time.Since(quiet) < 1500*time.Millisecond && time.Since(t0) < b.timeout+60*time.Second; {
		time.Sleep(100 * time.Millisecond)
		if fl := b.flushes(); fl[0] != fl1[0] {
			fl1, quiet = fl, time.Now()
		}
	}
	for i := range res.after {
		res.after[i] = fl1[i] - fl0[i]
	}
	res.problems = append(res.problems, b.verify(ctx, name, req, out)...)
	return res, nil
}

// verify checks that the change was one change of every deployment, recorded in
// the audit trail under one id, and that the fleet now has the pins asked for.
func (b *bench) verify(ctx context.Context, name string, req registry.PinRequest, out registry.PinResult) []error {
	var errs []error
	if len(out.Changes) != b.n || out.Unchanged != 0 {
		errs = append(errs, fmt.Errorf("%s: changed %d, unchanged %d; want %d changed", name, len(out.Changes), out.Unchanged, b.n))
	}
	b.audit += len(out.Changes)
	trail, err := b.reg.PinChanges(ctx, "", b.audit+1)
	if err != nil {
		return append(errs, fmt.Errorf("%s: read the audit trail: %w", name, err))
	}
	byID := map[string]int{}
	seen := map[string]bool{}
	for i, c := range trail {
		if i >= b.n {
			break // older changes
		}
		byID[c.ChangeID]++
		if c.Action != req.Action {
			errs = append(errs, fmt.Errorf("%s: audit entry %s for %s is a %s", name, c.ChangeID, c.DeploymentID, c.Action))
			break
		}
		seen[c.DeploymentID] = true
	}
	if len(trail) != b.audit || byID[out.ChangeID] != b.n || len(byID) != 1 || len(seen) != b.n {
		errs = append(errs, fmt.Errorf("%s: audit trail has %d entries (want %d); its newest %d name %d change ids %v and %d deployments; want all %d under %s",
			name, len(trail), b.audit, b.n, len(byID), byID, len(seen), b.n, out.ChangeID))
	}
	views, _ := b.reg.List(fleet.Filter{}, registry.Page{})
	wrong := 0
	for _, v := range views {
		p := v.Deployment.Pin
		ok := (req.Action == fleet.ActionPin && p != nil && p.Release == req.Release && v.Evaluation.Desired == req.Release) ||
			(req.Action == fleet.ActionUnpin && p == nil && v.Evaluation.Desired == v.Evaluation.Latest)
		if !ok {
			wrong++
		}
	}
	if wrong > 0 || len(views) != b.n {
		errs = append(errs, fmt.Errorf("%s: %d of %d deployments do not have the pin asked for", name, wrong, len(views)))
	}
	if len(errs) == 0 {
		fmt.Printf("%s: verified: %d audit entries under change %s, every deployment's pin as asked\n", name, b.n, out.ChangeID)
	}
	return errs
}

// flushes reads the registry's flush count, rows and seconds so far.
func (b *bench) flushes() [3]float64 {
	var out [3]float64
	for i, name := range []string{"periscope_registry_flushes_total", "periscope_registry_flush_rows_sum", "periscope_registry_flush_duration_seconds_sum"} {
		out[i], _ = b.metric(name)
	}
	return out
}

// metric reads one unlabelled sample from the manager's /metrics.
func (b *bench) metric(name string) (float64, error) {
	resp, err := http.Get(b.m.URL() + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// markHandler notes when the registry logs that a pin change is applied and
// passes warnings and errors on.
type markHandler struct {
	next  slog.Handler
	mark  *atomic.Int64
	quiet *atomic.Bool // set for the teardown, when dropped connections are expected
}

func (h *markHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *markHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "pin change applied" {
		h.mark.Store(r.Time.UnixNano())
	}
	if r.Level >= slog.LevelWarn && !h.quiet.Load() {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *markHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &markHandler{next: h.next.WithAttrs(as), mark: h.mark, quiet: h.quiet}
}

func (h *markHandler) WithGroup(g string) slog.Handler {
	return &markHandler{next: h.next.WithGroup(g), mark: h.mark, quiet: h.quiet}
}

// agentsProc is the agents process as the benchmark sees it.
type agentsProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	n     int
	done  chan struct{} // closed when the process has exited
	err   error
	statC chan [2]float64

	lastReceipt atomic.Int64 // unix ns of the last offer any agent received

	mu      sync.Mutex
	release string  // the offer being timed
	start   int64   // unix ns the timed change started
	got     []int64 // per agent: when it received the timed offer, 0 if not yet
	gotN    int
	all     chan struct{}
}

func startAgentsProc(n int, managerURL, tokens string, conc int, hb time.Duration) (*agentsProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-role", "agents", "-manager", managerURL, "-tokens", tokens, "-connect", strconv.Itoa(conc), "-heartbeat", hb.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &agentsProc{cmd: cmd, in: in, n: n, done: make(chan struct{}), statC: make(chan [2]float64, 1), got: make([]int64, n)}
	go a.read(outp)
	return a, nil
}

func (a *agentsProc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "R":
			i, _ := strconv.Atoi(f[1])
			at, _ := strconv.ParseInt(f[3], 10, 64)
			a.lastReceipt.Store(time.Now().UnixNano())
			a.mu.Lock()
			if f[2] == a.release && at >= a.start && i >= 0 && i < a.n && a.got[i] == 0 {
				a.got[i] = at
				a.gotN++
				if a.gotN == a.n {
					close(a.all)
				}
			}
			a.mu.Unlock()
		case "X":
			fmt.Fprintln(os.Stderr, "agents:", strings.Join(f[1:], " "))
		case "P":
			fmt.Printf("  agents process: %s connected, %s failed connection attempts\n", f[1], f[2])
		case "C":
			fmt.Printf("  agents process: started all agents, %s connected, in %s ms\n", f[1], f[2])
		case "M":
			rss, _ := strconv.ParseFloat(f[1], 64)
			cpu, _ := strconv.ParseFloat(f[2], 64)
			a.statC <- [2]float64{rss, cpu}
		}
	}
	a.err = a.cmd.Wait()
	if a.err == nil {
		a.err = errors.New("agents process exited")
	}
	close(a.done)
}

// exited returns the agents process's exit error once it has exited.
func (a *agentsProc) exited() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

// expect starts timing deliveries of release; the channel closes when every
// agent has received it.
func (a *agentsProc) expect(release string) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.release, a.start, a.gotN = release, math.MaxInt64, 0
	a.got = make([]int64, a.n)
	a.all = make(chan struct{})
	return a.all
}

// setStart sets the moment deliveries count from; earlier receipts do not count.
func (a *agentsProc) setStart(t time.Time) {
	a.mu.Lock()
	a.start = t.UnixNano()
	a.mu.Unlock()
}

func (a *agentsProc) received() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int64(nil), a.got...)
}

func (a *agentsProc) cpu() float64 {
	c, _ := procstat.CPU(a.cmd.Process.Pid)
	return c
}

// stats asks the agents process for its peak RSS (KiB) and CPU seconds.
func (a *agentsProc) stats() (int, float64) {
	if _, err := io.WriteString(a.in, "stats\n"); err != nil {
		return 0, 0
	}
	select {
	case s := <-a.statC:
		return int(s[0]), s[1]
	case <-time.After(10 * time.Second):
		return 0, 0
	}
}

func (a *agentsProc) stop() {
	io.WriteString(a.in, "stop\n")
	a.in.Close()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}
