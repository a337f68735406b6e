// Command ingress measures what Periscope's ingress proxy adds to an HTTP service:
// the same load against (a) the service directly, (b) the service behind
// Periscope's proxy (internal/agent/runtime/ingress, recording its metrics) and
// (c) the service behind a plain httputil.ReverseProxy that records nothing. It
// prints, round by round and as medians, each one's p50 / p99 latency, the
// latency (b) and (c) add to (a), and the CPU seconds (b) and (c) spend per
// 10,000 requests, with the ratios of (b) to (c).
//
//	go run ./bench/ingress -rate 2000 -round 3s -rounds 2
//
// The service, both proxies and the load generator each run as their own
// process (this binary, re-executed in a role), so CPU is read per proxy from
// /proc and the load generator's own work never counts against a proxy. Rounds
// interleave the three targets, starting with a different one each round, so a
// slow spell of the shared machine falls on all of them alike. The load is paced
// (a fixed offered rate, well below saturation), since added latency means
// nothing on a saturated machine.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/agent/runtime/ingress"
)

// roleEnv names the role a re-executed copy of this binary plays.
const roleEnv = "PERISCOPE_BENCH_INGRESS_ROLE"

// bodySize is the service's response body: a small JSON-sized answer.
const bodySize = 1024

func main() {
	if role := os.Getenv(roleEnv); role != "" {
		if err := serveRole(role, os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "ingress %s: %v\n", role, err)
			os.Exit(1)
		}
		return
	}
	rate := flag.Float64("rate", 2000, "requests per second offered to each target")
	conns := flag.Int("conns", 8, "load generator connections (each paced to rate/conns)")
	round := flag.Duration("round", 3*time.Second, "load per target per round")
	rounds := flag.Int("rounds", 2, "rounds; each starts with a different target")
	flag.Parse()
	if *rounds < 1 || *conns < 1 || *rate <= 0 || *round <= 0 {
		fmt.Fprintln(os.Stderr, "ingress: -rate, -conns, -round and -rounds must be positive")
		os.Exit(2)
	}
	if err := run(*rate, *conns, *round, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}

// result is one target's figures in one round.
type result struct {
	n, errs  int
	p50, p99 time.Duration
	cpu      float64 // the proxy's CPU seconds; 0 for the direct target
}

func (r result) cpuPer10k() float64 { return r.cpu / float64(r.n) * 10000 }

func run(rate float64, conns int, round time.Duration, rounds int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	start := func(role string, args ...string) (*exec.Cmd, string, error) {
		cmd, addr, err := startRole(self, role, args...)
		if err == nil {
			procs = append(procs, cmd)
		}
		return cmd, addr, err
	}
	_, svc, err := start("service")
	if err != nil {
		return err
	}
	up := "http://" + svc
	peri, periAddr, err := start("periscope", up)
	if err != nil {
		return err
	}
	plain, plainAddr, err := start("plain", up)
	if err != nil {
		return err
	}
	targets := []struct {
		name, addr string
		pid        int
	}{
		{"direct", svc, 0},
		{"periscope", periAddr, peri.Process.Pid},
		{"plain", plainAddr, plain.Process.Pid},
	}
	fmt.Printf("load: %.0f requests/s over %d connections for %s per target per round, %d rounds; GET /orders/<id>, %d-byte answers; %d CPUs\n\n",
		rate, conns, round, rounds, bodySize, numCPU())
	// Warm every path once (connections, pools, the proxies' series).
	for _, t := range targets {
		if _, err := load(self, t.addr, rate, conns, round/4); err != nil {
			return fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}
	res := make([][]result, len(targets))
	fmt.Printf("%-9s %5s %8s %6s %9s %9s %10s %10s %14s\n", "target", "round", "requests", "errors", "p50", "p99", "+p50", "+p99", "CPU s/10k req")
	for r := range rounds {
		for k := range targets {
			i := (r + k) % len(targets)
			t := targets[i]
			var cpu0 float64
			if t.pid != 0 {
				if cpu0, err = procstat.CPU(t.pid); err != nil {
					return err
				}
			}
			got, err := load(self, t.addr, rate, conns, round)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if t.pid != 0 {
				cpu1, err := procstat.CPU(t.pid)
				if err != nil {
					return err
				}
				got.cpu = cpu1 - cpu0
			}
			res[i] = append(res[i], got)
		}
		for i, t := range targets {
			g, d := res[i][r], res[0][r]
			added, cpu := "", ""
			if i > 0 {
				added = fmt.Sprintf("%10s %10s", g.p50-d.p50, g.p99-d.p99)
				cpu = fmt.Sprintf("%14.3f", g.cpuPer10k())
			} else {
				added = fmt.Sprintf("%10s %10s", "", "")
			}
			fmt.Printf("%-9s %5d %8d %6d %9s %9s %s %s\n", t.name, r+1, g.n, g.errs, g.p50, g.p99, added, cpu)
		}
	}
	med := func(i int, f func(j int) float64) float64 {
		var v []float64
		for j := range res[i] {
			v = append(v, f(j))
		}
		slices.Sort(v)
		if len(v)%2 == 0 {
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return v[len(v)/2]
	}
	added := func(i int, q func(result) time.Duration) time.Duration {
		return time.Duration(med(i, func(j int) float64 { return float64(q(res[i][j]) - q(res[0][j])) }))
	}
	p50 := func(r result) time.Duration { return r.p50 }
	p99 := func(r result) time.Duration { return r.p99 }
	cpu := func(i int) float64 { return med(i, func(j int) float64 { return res[i][j].cpuPer10k() }) }
	direct50, direct99 := time.Duration(med(0, func(j int) float64 { return float64(res[0][j].p50) })), time.Duration(med(0, func(j int) float64 { return float64(res[0][j].p99) }))
	fmt.Printf("\nmedians of %d rounds (added latency is per round against the direct target of the same round):\n", rounds)
	fmt.Printf("  direct     p50 %v, p99 %v\n", direct50, direct99)
	for _, i := range []int{1, 2} {
		fmt.Printf("  %-10s adds p50 %v, p99 %v; %.3f CPU s per 10,000 requests\n", targets[i].name, added(i, p50), added(i, p99), cpu(i))
	}
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	fmt.Printf("  periscope/plain: added p50 %s, added p99 %s, CPU per request %s\n",
		ratio(float64(added(1, p50)), float64(added(2, p50))), ratio(float64(added(1, p99)), float64(added(2, p99))), ratio(cpu(1), cpu(2)))
	for i, r := range res {
		for _, g := range r {
			if g.errs > 0 {
				return fmt.Errorf("%s: %d requests failed", targets[i].name, g.errs)
			}
		}
	}
	return nil
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// startRole runs this binary in role and returns it with the address it printed.
func startRole(self, role string, args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", role, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, "", fmt.Errorf("%s printed no address: %w", role, err)
	}
	return cmd, strings.TrimSpace(line), nil
}

// load runs the load generator against addr for d and reads its figures.
func load(self, addr string, rate float64, conns int, d time.Duration) (result, error) {
	cmd := exec.Command(self, addr, strconv.FormatFloat(rate, 'f', -1, 64), strconv.Itoa(conns), d.String())
	cmd.Env = append(os.Environ(), roleEnv+"=load")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("load generator: %w", err)
	}
	var r result
	var p50, p99 int64
	if _, err := fmt.Sscan(string(out), &r.n, &r.errs, &p50, &p99); err != nil {
		return result{}, fmt.Errorf("load generator printed %q: %w", out, err)
	}
	r.p50, r.p99 = time.Duration(p50), time.Duration(p99)
	return r, nil
}

// serveRole plays one role of the benchmark in this process.
func serveRole(role string, args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch role {
	case "service":
		body := make([]byte, bodySize)
		for i := range body {
			body[i] = 'a' + byte(i%26)
		}
		return serveUntil(ctx, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}))
	case "plain":
		up, err := url.Parse(args[0])
		if err != nil {
			return err
		}
		return serveUntil(ctx, &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(up)
				pr.SetXForwarded()
			},
			// The same pool sizes as Periscope's proxy: with the default two idle
			// connections per host, the plain proxy would measure connection churn.
			Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		})
	case "periscope":
		return servePeriscope(ctx, args[0])
	case "load":
		return generate(args)
	}
	return fmt.Errorf("unknown role %q", role)
}

// serveUntil serves h on a free port, prints the address and serves until ctx ends.
func serveUntil(ctx context.Context, h http.Handler) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Println(ln.Addr())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// servePeriscope runs the ingress proxy and collects its metrics every 10 s, as
// the agent's runtime Collector would.
func servePeriscope(ctx context.Context, upstream string) error {
	p, err := ingress.New(ingress.Config{
		Name: "bench", Listen: "127.0.0.1:0", Upstream: upstream,
		Routes: []string{"/orders/{id}", "/orders/{id}/items", "/static/*", "/health"},
	}, ingress.Settings{})
	if err != nil {
		return err
	}
	if err := p.Start(ctx); err != nil {
		return err
	}
	fmt.Println(p.Addr())
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			if err := p.Collect(ctx, now, pmetric.NewMetricSlice()); err != nil {
				return err
			}
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return p.Shutdown(sctx)
		}
	}
}

// generate is the load generator: conns workers, each paced to rate/conns,
// each timing its requests from sending to the last byte of the answer. It
// prints "requests errors p50-ns p99-ns".
func generate(args []string) error {
	if len(args) != 4 {
		return errors.New("want addr rate conns duration")
	}
	rate, err1 := strconv.ParseFloat(args[1], 64)
	conns, err2 := strconv.Atoi(args[2])
	d, err3 := time.ParseDuration(args[3])
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	c := &http.Client{Transport: tr}
	base := "http://" + args[0] + "/orders/"
	interval := time.Duration(float64(conns) / rate * float64(time.Second))
	lat := make([][]time.Duration, conns)
	errs := make([]int, conns)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			next := start.Add(interval * time.Duration(w) / time.Duration(conns))
			for i := 0; ; i++ {
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait) // pacing the offered load, not synchronisation
				}
				if !time.Now().Before(end) {
					return
				}
				next = next.Add(interval)
				t0 := time.Now()
				resp, err := c.Get(base + strconv.Itoa(w*1_000_000+i))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs[w]++
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	tr.CloseIdleConnections()
	all := slices.Concat(lat...)
	slices.Sort(all)
	nerr := 0
	for _, e := range errs {
		nerr += e
	}
	if len(all) == 0 {
		return fmt.Errorf("no request succeeded (%d failed)", nerr)
	}
	q := func(f float64) time.Duration { return all[min(len(all)-1, int(f*float64(len(all))))] }
	fmt.Println(len(all), nerr, int64(q(0.50)), int64(q(0.99)))
	return nil
}
