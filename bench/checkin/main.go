// Command checkin drives simulated OpAMP agents against a real manager process and
// reports check-ins per second, latency percentiles, the manager's CPU and memory,
// and how fast the fleet list and summary answer at that fleet size.
//
//	go run ./bench/checkin -deployments 100000 -rate 3400 -duration 60s
//	go run ./bench/checkin -storage postgres://postgres@127.0.0.1:5432/ # fleet store on PostgreSQL
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
	storage := flag.String("storage", "", "a postgres:// server URL: the manager's fleet store is a throwaway database created there (embedded store when empty)")
	flag.Parse()
	if err := run(*n, *rate, *dur, *workers, *bin, *storage); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const admin = "psk_bench-admin"

func run(n int, rate float64, dur time.Duration, workers int, bin, storage string) error {
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
	fmt.Printf("fleet store: %s; load average at start: %s\n", fleetStore, procstat.LoadAvg())
	if bin == "" {
		bin = filepath.Join(tmp, "periscope")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/periscope").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v\n%s", err, out)
		}
	}
	addr := "127.0.0.1:17070"
	cmd := exec.Command(bin, "manager", "--listen", addr, "--data-dir", filepath.Join(tmp, "data"), "--heartbeat-interval", "30s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "PERISCOPE_ADMIN_TOKEN="+admin)
	if storage != "" {
		cmd.Env = append(cmd.Env, "PERISCOPE_STORAGE="+storage)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}, Timeout: 10 * time.Second}
	if err := waitHealthy(client, base); err != nil {
		return err
	}

	fmt.Printf("creating %d deployments...\n", n)
	start := time.Now()
	tokens, err := createFleet(client, base, n)
	if err != nil {
		return err
	}
	fmt.Printf("created in %v\n", time.Since(start).Round(time.Millisecond))

	uids := make([][]byte, n)
	for i := range uids {
		u := uuid.New()
		uids[i] = u[:]
	}
	var seq = make([]uint64, n)
	jobs := make(chan int, workers*4)
	var ok, failed, dropped atomic.Int64
	lat := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := range jobs {
				msg := &protobufs.AgentToServer{InstanceUid: uids[i], SequenceNum: seq[i]}
				if seq[i] == 0 {
					msg.AgentDescription = description(i)
					msg.Health = &protobufs.ComponentHealth{Healthy: true, Status: "running"}
				}
				seq[i]++
				body, _ := proto.Marshal(msg)
				req, _ := http.NewRequest("POST", base+"/v1/opamp", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Authorization", "Bearer "+tokens[i])
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
				ok.Add(1)
			}
		}(w)
	}

	cpu0, _ := procstat.CPU(cmd.Process.Pid)
	t0 := time.Now()
	sent := 0
	next := 0
	tick := time.NewTicker(time.Millisecond)
	var apiLat map[string][]time.Duration
	apiDone := make(chan struct{})
	go func() {
		// Measure the API while the fleet checks in, from the middle of the run.
		time.Sleep(dur / 2)
		apiLat = measureAPI(client, base)
		close(apiDone)
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
	cpu1, _ := procstat.CPU(cmd.Process.Pid)
	<-apiDone
	rss := procstat.PeakRSS(cmd.Process.Pid)

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	cpuSec := (cpu1 - cpu0)
	fmt.Printf("\nfleet %d deployments on %s, target %.0f check-ins/s, %v, %d client workers\n", n, fleetStore, rate, dur, workers)
	fmt.Printf("load average at end     %s\n", procstat.LoadAvg())
	fmt.Printf("check-ins ok            %d (%.0f/s)\n", ok.Load(), float64(ok.Load())/elapsed.Seconds())
	fmt.Printf("check-ins failed        %d\n", failed.Load())
	fmt.Printf("not sent (client full)  %d\n", dropped.Load())
	fmt.Printf("latency p50 / p99 / max %v / %v / %v\n", pct(all, 0.50), pct(all, 0.99), pct(all, 1))
	fmt.Printf("manager CPU             %.2f s over %.1f s = %.0f%% of one core\n", cpuSec, elapsed.Seconds(), 100*cpuSec/elapsed.Seconds())
	fmt.Printf("manager peak RSS        %.0f MiB\n", float64(rss)/1024)
	names := make([]string, 0, len(apiLat))
	for k := range apiLat {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		l := apiLat[k]
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		fmt.Printf("API %-38s p50 %v  p99 %v  (under load)\n", k, pct(l, 0.5), pct(l, 0.99))
	}
	return nil
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
	for _, path := range []string{"/api/v1/deployments?limit=100", "/api/v1/deployments?status=healthy&cloud=aws&limit=100", "/api/v1/summary",
		"/api/v1/summary?status=healthy&cloud=aws", "/api/v1/deployments?q=customer-42&limit=100"} {
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
