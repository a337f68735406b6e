// Command checkin drives simulated OpAMP agents against a real manager process and
// reports check-ins per second, latency percentiles, the manager's CPU and memory,
// and how fast the fleet list and summary answer at that fleet size.
//
//	go run ./bench/checkin -deployments 100000 -rate 3400 -duration 60s
//	go run ./bench/checkin -storage postgres://postgres@127.0.0.1:5432/ # fleet store on PostgreSQL
//	go run ./bench/checkin -storage postgres://postgres@127.0.0.1:5432/ -replicas 2 # two managers on one database
//
// Each simulated agent polls over OpAMP/HTTP with its own deployment token: its
// first check-in carries a full agent description, later ones are heartbeats, as
// with opamp-go's client. Load is open-loop at the target rate.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/bench/internal/pgscratch"
	"github.com/periscope-dev/periscope/bench/internal/procstat"
)

func main() {
	n := flag.Int("deployments", 100000, "fleet size")
	rate := flag.Float64("rate", 3400, "target check-ins per second (100,000 at a 30 s heartbeat is 3,334/s)")
	dur := flag.Duration("duration", 60*time.Second, "measured load duration")
	workers := flag.Int("workers", 256, "concurrent HTTP clients")
	bin := flag.String("periscope", "", "periscope binary (built from ./cmd/periscope when empty)")
	storage := flag.String("storage", "", "a postgres:// server URL: the manager's stores are a throwaway database created there (embedded stores when empty)")
	replicas := flag.Int("replicas", 1, "manager processes sharing the -storage database; agents are spread over them evenly")
	probes := flag.Int("probes", 20, "with -replicas 2 or more: check-ins timed until another replica's API shows them")
	flag.Parse()
	if *replicas < 1 || *replicas > 1 && *storage == "" {
		fmt.Fprintln(os.Stderr, "bench: -replicas above 1 needs -storage (replicas share a PostgreSQL database)")
		os.Exit(2)
	}
	if err := run(*n, *rate, *dur, *workers, *bin, *storage, *replicas, *probes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const admin = "psk_bench-admin"

// replica is one manager process and what was measured on it.
type replica struct {
	cmd    *exec.Cmd
	base   string
	cpu0   float64
	ok     atomic.Int64
	failed atomic.Int64
	lat    [][]time.Duration // per client worker
	api    map[string][]time.Duration
}

func run(n int, rate float64, dur time.Duration, workers int, bin, storage string, replicas, probes int) error {
	tmp, err := os.MkdirTemp("", "periscope-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fleetStore := "embedded DuckDB"
	if storage != "" {
		db, drop, err := pgscratch.Create(context.Background(), storage, "checkin")
		if err != nil {
			return err
		}
		defer func() {
			if err := drop(); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
			}
		}()
		storage, fleetStore = db, "PostgreSQL (a throwaway database)"
	}
	if replicas > 1 {
		fleetStore += fmt.Sprintf(", %d manager replicas", replicas)
	}
	load0 := procstat.LoadAvg()
	fmt.Printf("fleet store: %s; load average at start: %s\n", fleetStore, load0)
	if bin == "" {
		bin = filepath.Join(tmp, "periscope")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/periscope").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}, Timeout: 10 * time.Second}
	reps := make([]*replica, replicas)
	for r := range reps {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		cmd := exec.Command(bin, "manager", "--listen", addr, "--data-dir", filepath.Join(tmp, fmt.Sprintf("data-%d", r)), "--heartbeat-interval", "30s", "--log-level", "warn")
		cmd.Env = append(os.Environ(), "PERISCOPE_ADMIN_TOKEN="+admin)
		if storage != "" {
			cmd.Env = append(cmd.Env, "PERISCOPE_STORAGE="+storage)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
		reps[r] = &replica{cmd: cmd, base: "http://" + addr, lat: make([][]time.Duration, workers)}
		// One after another: replicas starting at once with the same configured
		// admin token both try to create it, and one fails to start.
		if err := waitHealthy(client, reps[r].base); err != nil {
			return err
		}
	}

	// Probe deployments take no part in the load, so a probe's check-in is the
	// only one that moves their last check-in.
	nProbe := 0
	if replicas > 1 {
		nProbe = probes
	}
	fmt.Printf("creating %d deployments (and %d probe deployments) through replica 1...\n", n, nProbe)
	start := time.Now()
	tokens, err := createFleet(client, reps[0].base, n+nProbe)
	if err != nil {
		return err
	}
	fmt.Printf("created in %v\n", time.Since(start).Round(time.Millisecond))
	for r, rp := range reps[1:] {
		t := time.Now()
		if err := waitTotal(client, rp.base, n+nProbe, 2*time.Minute); err != nil {
			return fmt.Errorf("replica %d: %w", r+2, err)
		}
		fmt.Printf("replica %d lists the whole fleet %v after the last batch was created\n", r+2, time.Since(t).Round(time.Millisecond))
	}

	uids := make([][]byte, n+nProbe)
	for i := range uids {
		u := uuid.New()
		uids[i] = u[:]
	}
	var seq = make([]uint64, n+nProbe)
	jobs := make(chan int, workers*4)
	var dropped atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := range jobs {
				rp := reps[i%replicas]
				d, err := checkin(client, rp.base, tokens[i], uids[i], seq[i], i)
				seq[i]++
				if err != nil {
					rp.failed.Add(1)
					continue
				}
				rp.lat[w] = append(rp.lat[w], d)
				rp.ok.Add(1)
			}
		}(w)
	}

	for _, rp := range reps {
		rp.cpu0, _ = procstat.CPU(rp.cmd.Process.Pid)
	}
	t0 := time.Now()
	sent := 0
	next := 0
	tick := time.NewTicker(time.Millisecond)
	apiDone := make(chan struct{})
	go func() {
		// Measure the API on every replica while the fleet checks in, from the
		// middle of the run.
		time.Sleep(dur / 2)
		for _, rp := range reps {
			rp.api = measureAPI(client, rp.base)
		}
		close(apiDone)
	}()
	var agree []time.Duration
	var agreeFailed int
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		if nProbe == 0 {
			return
		}
		// Spread the probes over the run's first three quarters, alternating
		// which replica takes the check-in and which one is asked.
		gap := 3 * dur / 4 / time.Duration(nProbe)
		for p := 0; p < nProbe; p++ {
			time.Sleep(gap)
			i := n + p
			from, to := reps[p%replicas], reps[(p+1)%replicas]
			d, err := agreement(client, from.base, to.base, tokens[i], uids[i], i)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench: probe:", err)
				agreeFailed++
				continue
			}
			agree = append(agree, d)
		}
	}()
	for now := range tick.C {
		el := now.Sub(t0)
		if el >= dur {
			break
		}
		due := int(el.Seconds() * rate)
		for ; sent < due; sent++ {
			select {
			case jobs <- next:
			default:
				dropped.Add(1) // the workers cannot keep up: counted, not hidden
			}
			next = (next + 1) % n
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(t0)
	cpus := make([]float64, replicas)
	for r, rp := range reps {
		cpu1, _ := procstat.CPU(rp.cmd.Process.Pid)
		cpus[r] = cpu1 - rp.cpu0
	}
	<-apiDone
	<-probeDone
	load1 := procstat.LoadAvg()

	fmt.Printf("\nfleet %d deployments on %s, target %.0f check-ins/s, %v, %d client workers\n", n, fleetStore, rate, dur, workers)
	fmt.Printf("load average at end     %s\n", load1)
	fmt.Printf("not sent (client full)  %d\n", dropped.Load())
	sum := &summary{n: n, rate: rate, dur: dur, store: fleetStore, load0: load0, load1: load1, dropped: dropped.Load()}
	var allLat []time.Duration
	allAPI := map[string][]time.Duration{}
	var totalOK, totalFailed int64
	var totalCPU float64
	for r, rp := range reps {
		var l []time.Duration
		for _, w := range rp.lat {
			l = append(l, w...)
		}
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		allLat = append(allLat, l...)
		rss := procstat.PeakRSS(rp.cmd.Process.Pid)
		col := column{name: fmt.Sprintf("replica %d", r+1), okRate: float64(rp.ok.Load()) / elapsed.Seconds(), failed: rp.failed.Load(),
			p50: pct(l, 0.5), p99: pct(l, 0.99), max: pct(l, 1), cpu: cpus[r] / elapsed.Seconds(), rssMiB: float64(rss) / 1024, api: map[string][2]time.Duration{}}
		if replicas == 1 {
			col.name = "manager"
		}
		fmt.Printf("\n%s (%s)\n", col.name, rp.base)
		fmt.Printf("check-ins ok            %d (%.0f/s)\n", rp.ok.Load(), col.okRate)
		fmt.Printf("check-ins failed        %d\n", rp.failed.Load())
		fmt.Printf("latency p50 / p99 / max %v / %v / %v\n", col.p50, col.p99, col.max)
		fmt.Printf("manager CPU             %.2f s over %.1f s = %.0f%% of one core\n", cpus[r], elapsed.Seconds(), 100*col.cpu)
		fmt.Printf("manager peak RSS        %.0f MiB\n", col.rssMiB)
		for _, k := range apiPaths {
			l := rp.api[k]
			allAPI[k] = append(allAPI[k], l...)
			sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
			col.api[k] = [2]time.Duration{pct(l, 0.5), pct(l, 0.99)}
			fmt.Printf("API %-52s p50 %v  p99 %v  (under load)\n", k, pct(l, 0.5), pct(l, 0.99))
		}
		sum.cols = append(sum.cols, col)
		totalOK += rp.ok.Load()
		totalFailed += rp.failed.Load()
		totalCPU += col.cpu
	}
	if replicas > 1 {
		sort.Slice(allLat, func(i, j int) bool { return allLat[i] < allLat[j] })
		col := column{name: "combined", okRate: float64(totalOK) / elapsed.Seconds(), failed: totalFailed,
			p50: pct(allLat, 0.5), p99: pct(allLat, 0.99), max: pct(allLat, 1), cpu: totalCPU, api: map[string][2]time.Duration{}}
		for _, k := range apiPaths {
			l := allAPI[k]
			sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
			col.api[k] = [2]time.Duration{pct(l, 0.5), pct(l, 0.99)}
		}
		sum.cols = append(sum.cols, col)
		sort.Slice(agree, func(i, j int) bool { return agree[i] < agree[j] })
		sum.agree, sum.agreeFailed = agree, agreeFailed
		fmt.Printf("\ncross-replica agreement: a check-in on one replica shows as the deployment's last check-in on another after\n"+
			"  p50 %v, max %v (%d probes, %d not seen within 10 s)\n", pct(agree, 0.5).Round(time.Millisecond), pct(agree, 1).Round(time.Millisecond), len(agree), agreeFailed)
	}
	sum.print()
	return nil
}

// apiPaths are the API calls timed under load.
var apiPaths = []string{"/api/v1/summary", "/api/v1/summary?status=healthy&cloud=aws", "/api/v1/deployments?limit=100",
	"/api/v1/deployments?status=healthy&cloud=aws&limit=100", "/api/v1/deployments?q=customer-42&limit=100"}

// column is one manager's figures (or the replicas' combined) in the summary.
type column struct {
	name          string
	okRate        float64
	failed        int64
	p50, p99, max time.Duration
	cpu, rssMiB   float64
	api           map[string][2]time.Duration
}

// summary prints a run's figures as a markdown table, ready for docs/benchmarks.md.
type summary struct {
	n            int
	rate         float64
	dur          time.Duration
	store        string
	load0, load1 string
	dropped      int64
	cols         []column
	agree        []time.Duration
	agreeFailed  int
}

func (s *summary) print() {
	fmt.Printf("\nmarkdown summary (%d deployments, target %.0f check-ins/s, %v, %s; load average %s → %s; %d not sent):\n\n",
		s.n, s.rate, s.dur, s.store, s.load0, s.load1, s.dropped)
	fmt.Print("| figure |")
	for _, c := range s.cols {
		fmt.Printf(" %s |", c.name)
	}
	fmt.Print("\n|---|")
	for range s.cols {
		fmt.Print("---|")
	}
	fmt.Println()
	row := func(name string, f func(c column) string) {
		fmt.Printf("| %s |", name)
		for _, c := range s.cols {
			fmt.Printf(" %s |", f(c))
		}
		fmt.Println()
	}
	row("check-ins/s reached", func(c column) string { return fmt.Sprintf("%.0f (%d failed)", c.okRate, c.failed) })
	row("check-in latency p50 / p99 (target p99 < 50 ms)", func(c column) string { return ms(c.p50) + " / " + ms(c.p99) })
	row("manager CPU (cores), peak RSS", func(c column) string {
		if c.rssMiB == 0 {
			return fmt.Sprintf("%.2f (sum)", c.cpu)
		}
		return fmt.Sprintf("%.2f, %.0f MiB", c.cpu, c.rssMiB)
	})
	for _, k := range apiPaths {
		name := "`GET " + k + "` p50 / p99"
		if k == "/api/v1/summary" {
			name += " (target p99 < 100 ms)"
		}
		row(name, func(c column) string { a := c.api[k]; return ms(a[0]) + " / " + ms(a[1]) })
	}
	if len(s.cols) > 1 {
		fmt.Printf("\ncheck-in on one replica → shown as last check-in by another's API: p50 %v, max %v over %d probes (%d not within 10 s)\n",
			pct(s.agree, 0.5).Round(time.Millisecond), pct(s.agree, 1).Round(time.Millisecond), len(s.agree), s.agreeFailed)
	}
}

// ms formats d in milliseconds to about three significant digits, as the
// tables in docs/benchmarks.md have them.
func ms(d time.Duration) string {
	m := float64(d) / 1e6
	switch {
	case m >= 100:
		return fmt.Sprintf("%.0f ms", m)
	case m >= 10:
		return fmt.Sprintf("%.1f ms", m)
	}
	return fmt.Sprintf("%.2f ms", m)
}

// checkin sends deployment i's check-in number seq to base and returns its latency.
func checkin(c *http.Client, base, token string, uid []byte, seq uint64, i int) (time.Duration, error) {
	msg := &protobufs.AgentToServer{InstanceUid: uid, SequenceNum: seq}
	if seq == 0 {
		msg.AgentDescription = description(i)
		msg.Health = &protobufs.ComponentHealth{Healthy: true, Status: "running"}
	}
	body, _ := proto.Marshal(msg)
	req, _ := http.NewRequest("POST", base+"/v1/opamp", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", "Bearer "+token)
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("check-in: HTTP %d", resp.StatusCode)
	}
	return time.Since(t0), nil
}

// agreement makes probe deployment i's first check-in on replica from and
// returns how long until replica to's API shows a last check-in for it. The
// deployment had none before, so any last check-in is this one. Polling every
// 20 ms bounds the figure's resolution.
func agreement(c *http.Client, from, to, token string, uid []byte, i int) (time.Duration, error) {
	t0 := time.Now()
	if _, err := checkin(c, from, token, uid, 0, i); err != nil {
		return 0, err
	}
	id := fmt.Sprintf("d-%06d", i)
	for time.Since(t0) < 10*time.Second {
		req, _ := http.NewRequest("GET", to+"/api/v1/deployments/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		var d struct {
			LastCheckin *time.Time `json:"last_checkin"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("read deployment %s: %w", id, err)
		}
		if d.LastCheckin != nil {
			return time.Since(t0), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("deployment %s: no last check-in on %s within 10 s", id, to)
}

// freeAddr returns a loopback address no one listens on now, so runs of this
// benchmark (or others) at once do not meet on a fixed port.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitTotal waits until base's summary counts want deployments.
func waitTotal(c *http.Client, base string, want int, limit time.Duration) error {
	t0 := time.Now()
	for time.Since(t0) < limit {
		req, _ := http.NewRequest("GET", base+"/api/v1/summary", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		if resp, err := c.Do(req); err == nil {
			var s struct {
				Total int `json:"total"`
			}
			err := json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
			if err == nil && s.Total >= want {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the summary did not count %d deployments within %v", want, limit)
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p)
	return s[i].Round(10 * time.Microsecond)
}

func description(i int) *protobufs.AgentDescription {
	kv := func(k, v string) *protobufs.KeyValue {
		return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
	}
	clouds := []string{"aws", "gcp", "azure"}
	return &protobufs.AgentDescription{
		IdentifyingAttributes: []*protobufs.KeyValue{kv("service.name", "periscope-agent"), kv("service.version", "0.1.0")},
		NonIdentifyingAttributes: []*protobufs.KeyValue{kv("periscope.release.version", []string{"1.7.2", "1.8.0"}[i%2]),
			kv("cloud.provider", clouds[i%3]), kv("cloud.region", "region-"+strconv.Itoa(i%12))},
	}
}

func waitHealthy(c *http.Client, base string) error {
	for i := 0; i < 200; i++ {
		if resp, err := c.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("manager did not become healthy")
}

func createFleet(c *http.Client, base string, n int) ([]string, error) {
	tokens := make([]string, 0, n)
	for off := 0; off < n; off += 10000 {
		type nd struct {
			ID       string `json:"id"`
			Customer string `json:"customer"`
			Stack    string `json:"stack"`
		}
		var batch struct {
			Deployments []nd `json:"deployments"`
		}
		for i := off; i < min(n, off+10000); i++ {
			batch.Deployments = append(batch.Deployments, nd{ID: fmt.Sprintf("d-%06d", i), Customer: fmt.Sprintf("customer-%d", i%500), Stack: "analytics"})
		}
		body, _ := json.Marshal(batch)
		req, _ := http.NewRequest("POST", base+"/api/v1/deployments/batch", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		var out struct {
			Items []struct {
				Token string `json:"token"`
			} `json:"items"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 201 {
			return nil, fmt.Errorf("create batch: %d %v", resp.StatusCode, err)
		}
		for _, it := range out.Items {
			tokens = append(tokens, it.Token)
		}
	}
	return tokens, nil
}

func measureAPI(c *http.Client, base string) map[string][]time.Duration {
	out := map[string][]time.Duration{}
	for _, path := range apiPaths {
		for i := 0; i < 30; i++ {
			req, _ := http.NewRequest("GET", base+path, nil)
			req.Header.Set("Authorization", "Bearer "+admin)
			t0 := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			out[path] = append(out[path], time.Since(t0))
		}
	}
	return out
}
