// Command wsfleet holds a fleet of WebSocket-connected push agents on one
// manager process and times a pin of all of them: connect time, the manager's
// memory per connection, and the time from the pin API call to each agent
// receiving its new desired release.
//
//	go run ./bench/wsfleet -agents 100000
//	go run ./bench/wsfleet -agents 10000 -storage postgres://postgres@127.0.0.1:5432/
//
// The manager is a `periscope manager` process (embedded store, or a
// throwaway PostgreSQL database with -storage); the agents are minimal OpAMP
// clients (the protobuf over a WebSocket, as opamp-go's client speaks it, with
// none of its per-connection goroutines and buffers) in child processes of
// this binary, each connecting from several loopback source addresses
// (127.0.0.2, 127.0.0.3, …) so no address runs out of ephemeral ports. Every
// process raises its soft open-file limit to the hard one. A fleet larger
// than the manager process may hold sockets for (its hard open-file limit,
// which only a process with CAP_SYS_RESOURCE can raise) is cut to the largest
// that fits, and the benchmark says so.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/bench/internal/pgscratch"
	"github.com/periscope-dev/periscope/bench/internal/procstat"
)

func main() {
	n := flag.Int("agents", 100000, "push agents, one deployment each")
	fleetN := flag.Int("fleet", 0, "deployments registered, at least -agents (default: -agents); those beyond the agents have none connected")
	perProc := flag.Int("per-process", 15000, "agents per agents process (each process is bound by its own open-file limit)")
	nsrc := flag.Int("sources", 4, "loopback source addresses the agents connect from (127.0.0.2 onwards)")
	conc := flag.Int("connect", 200, "agents connecting at once, per agents process")
	timeout := flag.Duration("timeout", 60*time.Second, "how long every agent has to receive the pin after the API call")
	hb := flag.Duration("heartbeat", 30*time.Second, "manager heartbeat interval; each agent sends one heartbeat per interval")
	reserve := flag.Int("reserve", 400, "open files the manager keeps for itself (store, listeners, API clients) when the fleet is cut to its limit")
	bin := flag.String("periscope", "", "periscope binary (built from ./cmd/periscope when empty)")
	storage := flag.String("storage", "", "a postgres:// server URL: the manager's fleet store is a throwaway database created there (embedded store when empty)")
	role := flag.String("role", "", "internal: \"agents\" runs an agents process")
	mgrURL := flag.String("manager", "", "internal: manager URL for an agents process")
	tokens := flag.String("tokens", "", "internal: file of deployment tokens, one a line, for an agents process")
	first := flag.Int("first", 0, "internal: index of the agents process's first agent")
	srcs := flag.String("source-addrs", "", "internal: comma-separated source addresses for an agents process")
	flag.Parse()
	var err error
	if *role == "agents" {
		var ips []net.IP
		for _, s := range strings.Split(*srcs, ",") {
			if ip := net.ParseIP(s); ip != nil {
				ips = append(ips, ip)
			}
		}
		err = runAgents(*mgrURL, *tokens, *first, ips, *conc, *hb)
	} else {
		err = run(config{n: *n, fleet: max(*n, *fleetN), perProc: *perProc, sources: *nsrc, conc: *conc, timeout: *timeout, hb: *hb, reserve: *reserve, bin: *bin, storage: *storage})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wsfleet:", err)
		os.Exit(1)
	}
}

type config struct {
	n, fleet, perProc, sources, conc, reserve int
	timeout, hb                               time.Duration
	bin, storage                              string
}

const (
	admin = "psk_bench-admin"
	stack = "shop"
	addr  = "127.0.0.1:17071"
)

func run(c config) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "periscope-wsfleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if c.bin == "" {
		c.bin = filepath.Join(tmp, "periscope")
		if out, err := exec.Command("go", "build", "-o", c.bin, "./cmd/periscope").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	fleetStore := "embedded DuckDB"
	if c.storage != "" {
		db, drop, err := pgscratch.Create(ctx, c.storage, "wsfleet")
		if err != nil {
			return err
		}
		defer func() {
			if err := drop(); err != nil {
				fmt.Fprintln(os.Stderr, "wsfleet:", err)
			}
		}()
		c.storage, fleetStore = db, "PostgreSQL (a throwaway database)"
	}
	fmt.Printf("fleet store: %s; load average at start: %s\n", fleetStore, procstat.LoadAvg())

	// The manager stops before the agents (defers run last first), so it
	// does not log each agent closing its connection.
	var procs []*agentsProc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	cmd := exec.Command(c.bin, "manager", "--listen", addr, "--data-dir", filepath.Join(tmp, "data"), "--heartbeat-interval", c.hb.String(), "--log-level", "warn")
	cmd.Env = append(os.Environ(), "PERISCOPE_ADMIN_TOKEN="+admin)
	if c.storage != "" {
		cmd.Env = append(cmd.Env, "PERISCOPE_STORAGE="+c.storage)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	pid := cmd.Process.Pid
	base := "http://" + addr
	api := &apiClient{c: &http.Client{Timeout: 5 * time.Minute}, base: base}
	if err := api.waitHealthy(); err != nil {
		return err
	}
	// A fleet cut to the manager's open-file limit still registers every
	// deployment asked for, so the pin below writes and fans out over the
	// whole fleet: only the sockets are fewer.
	fleet := c.fleet
	if limit := openFileLimit(pid); limit > 0 && c.n > limit-c.reserve {
		fmt.Printf("does not fit: %d agents need %d sockets in the manager process, whose open-file limit is %d "+
			"(hard limit; raising it needs CAP_SYS_RESOURCE, which this machine does not give). "+
			"Registering all %d deployments and connecting the largest number of agents that fits: %d.\n",
			c.n, c.n, limit, fleet, limit-c.reserve)
		c.n = limit - c.reserve
	}
	rssStart := procstat.RSS(pid)

	for _, v := range []string{"1.0", "2.0"} {
		if err := api.do("POST", "/api/v1/releases", map[string]string{"stack": stack, "version": v}, nil); err != nil {
			return fmt.Errorf("publish %s: %w", v, err)
		}
	}
	t := time.Now()
	toks, err := api.createFleet(fleet)
	if err != nil {
		return err
	}
	fmt.Printf("registered %d deployments in %v\n", fleet, time.Since(t).Round(time.Millisecond))
	rssFleet := procstat.RSS(pid)

	var sources []string
	for i := range max(1, c.sources) {
		sources = append(sources, fmt.Sprintf("127.0.0.%d", 2+i))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rec := newReceipts(c.n)
	t = time.Now()
	rec.expect("2.0", t)
	for from := 0; from < c.n; from += c.perProc {
		to := min(c.n, from+c.perProc)
		file := filepath.Join(tmp, fmt.Sprintf("tokens-%d", from))
		if err := os.WriteFile(file, []byte(strings.Join(toks[from:to], "\n")), 0o600); err != nil {
			return err
		}
		p, err := startAgentsProc(self, base, file, from, to-from, strings.Join(sources, ","), c, rec)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	connected := 0
	for _, p := range procs {
		connected += <-p.connected
	}
	connectTook := time.Since(t)
	fmt.Printf("connected %d of %d agents in %v from %d source addresses, %d agents processes\n", connected, c.n, connectTook.Round(time.Millisecond), len(sources), len(procs))
	if connected < c.n {
		return fmt.Errorf("only %d of %d agents connected", connected, c.n)
	}
	// Every agent is offered its first desired release (2.0, what it runs) and
	// reports it applied; wait for all of them and for the manager to go quiet.
	if got := rec.wait(c.timeout); got < c.n {
		return fmt.Errorf("only %d of %d agents received their first offer within %v", got, c.n, c.timeout)
	}
	fmt.Printf("every agent had its first offer %v after connecting began\n", time.Since(t).Round(time.Millisecond))
	waitQuiet(pid, 5*time.Second, 60*time.Second)
	rssConnected := procstat.RSS(pid)
	fmt.Printf("\nmanager RSS: %.0f MiB started, %.0f MiB with %d deployments, %.0f MiB with %d agents connected: %.1f KiB per connection\n",
		mib(rssStart), mib(rssFleet), fleet, mib(rssConnected), c.n, float64(rssConnected-rssFleet)/float64(c.n))
	var agentRSS int
	for _, p := range procs {
		agentRSS += p.stats()
	}
	fmt.Printf("agents processes RSS: %.0f MiB in all (%.1f KiB per agent)\n", mib(agentRSS), float64(agentRSS)/float64(c.n))

	for _, ph := range []struct{ name, action, release, want string }{{"pin all to 1.0", "pin", "1.0", "1.0"}, {"unpin all", "unpin", "", "2.0"}} {
		if err := phase(api, pid, rec, c, ph.name, ph.action, ph.release, ph.want); err != nil {
			return err
		}
		waitQuiet(pid, 3*time.Second, 60*time.Second)
	}
	fmt.Printf("\nmanager peak RSS %.0f MiB; load average at end: %s\n", mib(procstat.PeakRSS(pid)), procstat.LoadAvg())
	return nil
}

// phase changes every deployment's pin through the API and times delivery
// to every agent from the moment the call started.
func phase(api *apiClient, pid int, rec *receipts, c config, name, action, release, want string) error {
	cpu0, _ := procstat.CPU(pid)
	start := time.Now()
	rec.expect(want, start)
	body := map[string]any{"action": action, "all": true, "reason": "bench: " + name}
	if release != "" {
		body["release"] = release
	}
	var out struct {
		Changed []json.RawMessage `json:"changed"`
	}
	if err := api.do("POST", "/api/v1/pins", body, &out); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	called := time.Since(start)
	got := rec.wait(c.timeout)
	cpu1, _ := procstat.CPU(pid)
	lat := rec.latencies()
	fmt.Printf("\n%s: %d deployments changed; the API call took %v\n", name, len(out.Changed), called.Round(time.Millisecond))
	fmt.Printf("  delivered %d of %d within %v; manager CPU %.2f s\n", got, c.n, c.timeout, cpu1-cpu0)
	if len(lat) > 0 {
		fmt.Printf("  from the API call to an agent receiving %s: p50 %v, p99 %v, max %v\n", want, pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1))
	}
	if got < c.n {
		return fmt.Errorf("%s: %d agents never received %s", name, c.n-got, want)
	}
	return nil
}

func mib(kib int) float64 { return float64(kib) / 1024 }

func pct(s []time.Duration, p float64) time.Duration {
	return s[int(float64(len(s)-1)*p)].Round(time.Millisecond)
}

// openFileLimit reads the process's open-file limit from /proc (0 when unknown).
func openFileLimit(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// waitQuiet waits until the process used under a tenth of a core over one
// second, or until within; the RSS and the next phase then measure the steady
// state, not the tail of the last one.
func waitQuiet(pid int, least, within time.Duration) {
	time.Sleep(least)
	deadline := time.Now().Add(within)
	prev, _ := procstat.CPU(pid)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		cur, _ := procstat.CPU(pid)
		if cur-prev < 0.1 {
			return
		}
		prev = cur
	}
}

// receipts collects when each agent received the release being timed.
type receipts struct {
	mu      sync.Mutex
	release string
	start   int64
	got     []int64
	n       int
	all     chan struct{}
}

func newReceipts(n int) *receipts { return &receipts{got: make([]int64, n), all: make(chan struct{})} }

func (r *receipts) expect(release string, start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.release, r.start, r.n = release, start.UnixNano(), 0
	r.got = make([]int64, len(r.got))
	r.all = make(chan struct{})
}

func (r *receipts) add(i int, release string, at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if release != r.release || at < r.start || i < 0 || i >= len(r.got) || r.got[i] != 0 {
		return
	}
	r.got[i] = at
	r.n++
	if r.n == len(r.got) {
		close(r.all)
	}
}

// wait returns how many agents have received the release, once all have or
// within has passed.
func (r *receipts) wait(within time.Duration) int {
	r.mu.Lock()
	all := r.all
	r.mu.Unlock()
	select {
	case <-all:
	case <-time.After(within):
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *receipts) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for _, at := range r.got {
		if at != 0 {
			out = append(out, time.Duration(at-r.start))
		}
	}
	slices.Sort(out)
	return out
}

// agentsProc is one child process holding a share of the agents.
type agentsProc struct {
	cmd       *exec.Cmd
	in        io.WriteCloser
	connected chan int
	stat      chan int
	done      chan struct{}
}

func startAgentsProc(self, base, tokens string, first, n int, sources string, c config, rec *receipts) (*agentsProc, error) {
	cmd := exec.Command(self, "-role", "agents", "-manager", base, "-tokens", tokens, "-first", strconv.Itoa(first),
		"-source-addrs", sources, "-connect", strconv.Itoa(c.conc), "-heartbeat", c.hb.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &agentsProc{cmd: cmd, in: in, connected: make(chan int, 1), stat: make(chan int, 1), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		errs := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "R":
				i, _ := strconv.Atoi(f[1])
				at, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
				rec.add(i, f[2], at)
			case "X":
				if errs++; errs <= 10 {
					fmt.Fprintln(os.Stderr, "agent:", strings.Join(f[1:], " "))
				}
			case "P":
				fmt.Printf("  agents %d–%d: %s connected, %s failed attempts\n", first, first+n-1, f[1], f[2])
			case "C":
				k, _ := strconv.Atoi(f[1])
				p.connected <- k
			case "M":
				k, _ := strconv.Atoi(f[1])
				p.stat <- k
			}
		}
		cmd.Wait()
	}()
	return p, nil
}

// stats returns the process's current RSS in KiB.
func (p *agentsProc) stats() int {
	if _, err := io.WriteString(p.in, "stats\n"); err != nil {
		return 0
	}
	select {
	case k := <-p.stat:
		return k
	case <-time.After(10 * time.Second):
		return 0
	}
}

func (p *agentsProc) stop() {
	io.WriteString(p.in, "stop\n")
	p.in.Close()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// apiClient calls the manager's REST API as the admin.
type apiClient struct {
	c    *http.Client
	base string
}

func (a *apiClient) do(method, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func (a *apiClient) waitHealthy() error {
	for range 400 {
		if resp, err := a.c.Get(a.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("manager did not become healthy")
}

// createFleet registers n deployments of the stack, 10,000 per call, and
// returns their agent tokens.
func (a *apiClient) createFleet(n int) ([]string, error) {
	type nd struct {
		ID       string `json:"id"`
		Customer string `json:"customer"`
		Stack    string `json:"stack"`
	}
	toks := make([]string, 0, n)
	for off := 0; off < n; off += 10000 {
		var batch struct {
			Deployments []nd `json:"deployments"`
		}
		for i := off; i < min(n, off+10000); i++ {
			batch.Deployments = append(batch.Deployments, nd{ID: fmt.Sprintf("d-%06d", i), Customer: fmt.Sprintf("customer-%d", i%500), Stack: stack})
		}
		var out struct {
			Items []struct {
				Token string `json:"token"`
			} `json:"items"`
		}
		if err := a.do("POST", "/api/v1/deployments/batch", batch, &out); err != nil {
			return nil, err
		}
		for _, it := range out.Items {
			toks = append(toks, it.Token)
		}
	}
	if len(toks) != n {
		return nil, fmt.Errorf("created %d tokens for %d deployments", len(toks), n)
	}
	return toks, nil
}
