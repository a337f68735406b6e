// Command pipeline compares the Periscope agent with the OpenTelemetry Collector doing
// the same work — OTLP in, tag every resource with the deployment context, redact,
// persist to a disk queue, forward over OTLP/HTTP with gzip — under the same
// telemetrygen load in one run, in turns or, with -together, at the same time. It
// prints records delivered per CPU-second and peak RSS of both, the ratio round by
// round and the medians.
//
// The agent always redacts with its default policy; the Collector runs its redaction
// processor configured for the closest equivalent (scripts/peers/otelcol-redaction.yaml)
// unless -redaction=false. The load carries personal data in some records (load.go),
// and the command fails if any of it reaches the sink from a side that redacts.
//
//	scripts/install-peers otelcol-peer telemetrygen
//	go run ./bench/pipeline -rate 40000 -duration 15s -rounds 5 -together
//
// Both forward to a counting sink inside this command, so "delivered" means a record
// reached the upstream, not merely that it was received.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/otlp"
)

func main() {
	if spec := os.Getenv(floorEnv); spec != "" {
		if err := serveFloor(spec); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	rate := flag.Float64("rate", 20000, "records per second telemetrygen offers, in total")
	workers := flag.Int("workers", 4, "telemetrygen workers")
	dur := flag.Duration("duration", 20*time.Second, "how long telemetrygen sends, per run")
	signals := flag.String("signals", "logs,traces", "signals to compare")
	flag.IntVar(&rounds, "rounds", 3, "runs per system and signal, alternating which goes first; medians are compared")
	peers := flag.String("peers", defaultPeers(), "directory holding otelcol-peer and telemetrygen")
	flag.StringVar(&protocol, "protocol", "grpc", "how telemetrygen sends: grpc or http")
	flag.IntVar(&batchSize, "batch-size", 100, "records per telemetrygen request (telemetrygen's default is 100)")
	flag.StringVar(&profileDir, "profile", "", "write a CPU profile of the agent under load per signal into this directory")
	flag.BoolVar(&withFloor, "floor", false, "also measure the receive floor: receivers that discard the load (gRPC in only)")
	flag.BoolVar(&together, "together", false, "run the systems at the same time, each under its own telemetrygen, so that a slow spell of the machine affects all alike")
	flag.StringVar(&baselineRef, "baseline", "", "also run the agent built at this git ref (e.g. HEAD~1) in the same rounds, to measure a change against it")
	flag.BoolVar(&collectorRedacts, "redaction", true, "run the Collector with its redaction processor (the agent always redacts; -baseline 9d57850 is the agent before it did)")
	flag.StringVar(&redactionConfig, "redaction-config", filepath.Join("scripts", "peers", "otelcol-redaction.yaml"), "the Collector's redaction overlay, merged over scripts/peers/otelcol-agent-equivalent.yaml")
	flag.BoolVar(&selfCheck, "self-check", true, "fail when personal data reaches the sink from a side that redacts (false: measure a Collector configuration that lets some through, to see what each part costs)")
	flag.StringVar(&loadKind, "load", "app", "app: application-like records, a share with personal data; plain: the earlier figures' fixed body, no attributes")
	flag.Parse()
	if rounds < 1 {
		fmt.Fprintln(os.Stderr, "pipeline: -rounds must be at least 1")
		os.Exit(2)
	}
	if loadKind != "app" && loadKind != "plain" {
		fmt.Fprintln(os.Stderr, "pipeline: -load is app or plain")
		os.Exit(2)
	}
	if loadKind == "app" && *workers < 2 {
		fmt.Fprintln(os.Stderr, "pipeline: -load app needs at least 2 workers (one sends personal data)")
		os.Exit(2)
	}
	if withFloor && protocol != "grpc" {
		fmt.Fprintln(os.Stderr, "pipeline: -floor measures OTLP/gRPC receivers only")
		os.Exit(2)
	}
	if err := run(*rate, *workers, *dur, strings.Split(*signals, ","), *peers); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

// protocol is telemetrygen's OTLP transport; batchSize its records per request.
var (
	protocol  string
	batchSize int
)

// profileDir, when set, asks the agent for CPU profiles during the load.
var profileDir string

// rounds is how many times each system runs per signal. One run's CPU figure moves by
// a fifth or more on a shared VM, mostly with the Collector's; the median of runs that
// alternate which system goes first is steadier than any single run.
var rounds int

// withFloor adds the receive floors (floor.go) to each signal's comparison.
var withFloor bool

// baselineRef, when set, names a git ref whose agent runs as a third system. A change
// worth a few percent is smaller than the spread between two invocations on a shared
// VM, so it is measured against the build before it within the same rounds.
var baselineRef string

// together runs a round's systems at the same time rather than one after another.
var together bool

// collectorRedacts adds the redaction processor to the Collector's pipelines, as
// configured by the overlay redactionConfig.
var (
	collectorRedacts bool
	redactionConfig  string
)

// selfCheck fails a run in which personal data reached the sink from a side that redacts.
var selfCheck bool

// roundRatios lists a's records per CPU-second over b's, round by round, and their median.
func roundRatios(a, b []result) string {
	var out []string
	var rs []float64
	for i := range a {
		r := a[i].perCPU() / b[i].perCPU()
		rs = append(rs, r)
		out = append(out, fmt.Sprintf("%.2f", r))
	}
	slices.Sort(rs)
	med := rs[len(rs)/2]
	if len(rs)%2 == 0 {
		med = (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	return fmt.Sprintf("%s (median %.2fx)", strings.Join(out, " "), med)
}

func defaultPeers() string {
	if d := os.Getenv("PERISCOPE_PEERS_BIN"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "periscope-peers", "bin")
}

// result is one system's figures for one signal.
type result struct {
	delivered int64
	cpu       float64
	rssKiB    int
}

func (r result) perCPU() float64 { return float64(r.delivered) / r.cpu }

func run(rate float64, workers int, dur time.Duration, signals []string, peers string) error {
	collector := filepath.Join(peers, "otelcol-peer")
	telemetrygen := filepath.Join(peers, "telemetrygen")
	for _, p := range []string{collector, telemetrygen} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%v: run scripts/install-peers otelcol-peer telemetrygen", err)
		}
	}
	work, err := os.MkdirTemp("", "periscope-bench-pipeline")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	agentBin := filepath.Join(work, "periscope-agent")
	if err := buildAgent(".", agentBin); err != nil {
		return err
	}
	systems := []string{"periscope", "collector"}
	var baselineBin string
	if baselineRef != "" {
		if baselineBin, err = buildBaseline(baselineRef, work); err != nil {
			return err
		}
		systems = append(systems, "baseline")
	}
	sink := newSink()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(ln, sink)
	sinkURL := "http://" + ln.Addr().String()
	// The Collector merges its --config files; the redaction overlay adds the processor
	// to the base's pipelines.
	configs := []string{filepath.Join("scripts", "peers", "otelcol-agent-equivalent.yaml")}
	if collectorRedacts {
		configs = append(configs, redactionConfig)
	}
	var cfgPaths []string
	for _, name := range configs {
		p, err := filepath.Abs(name)
		if err != nil {
			return err
		}
		cfgPaths = append(cfgPaths, p)
	}

	b := &bench{agentBin: agentBin, baselineBin: baselineBin, collector: collector, telemetrygen: telemetrygen, cfgPaths: cfgPaths,
		work: work, sinkURL: sinkURL, sink: sink, rate: rate, workers: workers, dur: dur}
	fmt.Printf("load: telemetrygen (%s), %d workers, %.0f records/s in total for %s per run (%.0f records offered to each system; a system that delivers fewer did not keep up, or telemetrygen could not offer them), %d records per request, OTLP/%s in; %d CPUs\n",
		loadKind, workers, rate, dur, rate*dur.Seconds(), batchSize, protocol, numCPU())
	collectorRedaction := "none"
	if collectorRedacts {
		collectorRedaction = "redaction processor (" + redactionConfig + ")"
	}
	fmt.Printf("redaction: periscope default policy; collector %s\n\n", collectorRedaction)
	fmt.Printf("%-7s %-10s %5s %10s %8s %14s %9s\n", "signal", "system", "round", "delivered", "CPU s", "records/CPU-s", "peak RSS")
	for _, sig := range signals {
		res := make([][]result, len(systems))
		for round := 1; round <= rounds; round++ {
			if together {
				rs := make([]result, len(systems))
				errs := make([]error, len(systems))
				var wg sync.WaitGroup
				for i := range systems {
					wg.Go(func() { rs[i], errs[i] = b.runSystem(systems[i], sig, round) })
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					return err
				}
				for i, r := range rs {
					res[i] = append(res[i], r)
					fmt.Printf("%-7s %-10s %5d %10d %8.2f %14.0f %7d MiB\n", sig, systems[i], round, r.delivered, r.cpu, r.perCPU(), r.rssKiB/1024)
				}
				continue
			}
			// Each round starts with the next system, so none always goes first.
			for k := range systems {
				i := (round - 1 + k) % len(systems)
				r, err := b.runSystem(systems[i], sig, round)
				if err != nil {
					return err
				}
				res[i] = append(res[i], r)
				fmt.Printf("%-7s %-10s %5d %10d %8.2f %14.0f %7d MiB\n", sig, systems[i], round, r.delivered, r.cpu, r.perCPU(), r.rssKiB/1024)
			}
		}
		fmt.Printf("%-7s periscope/collector per round: %s\n", sig, roundRatios(res[0], res[1]))
		if baselineBin != "" {
			fmt.Printf("%-7s periscope/baseline per round:  %s\n", sig, roundRatios(res[0], res[2]))
		}
		p, c := median(res[0]), median(res[1])
		fmt.Printf("%-7s periscope median %.0f records/CPU-s, %d MiB; collector median %.0f records/CPU-s, %d MiB\n",
			sig, p.perCPU, p.rssKiB/1024, c.perCPU, c.rssKiB/1024)
		fmt.Printf("%-7s ratio: periscope delivers %.2fx the collector's records per CPU-second with %.2fx its peak memory (medians of %d runs each)\n\n",
			sig, p.perCPU/c.perCPU, float64(p.rssKiB)/float64(c.rssKiB), rounds)
		if baselineBin != "" {
			base := median(res[2])
			fmt.Printf("%-7s baseline (%s) median %.0f records/CPU-s, %d MiB: %.2fx the collector; this build does %.3fx the baseline's records per CPU-second\n\n",
				sig, baselineRef, base.perCPU, base.rssKiB/1024, base.perCPU/c.perCPU, p.perCPU/base.perCPU)
		}
		if withFloor {
			if err := b.floors(sig, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// floors measures the receive floors for sig and says what ratio each would allow
// against the Collector's median.
func (b *bench) floors(sig string, collector summary) error {
	res := make([][]result, len(floors))
	for round := 1; round <= rounds; round++ {
		for i, mode := range floors {
			r, err := b.runFloor(mode, sig)
			if err != nil {
				return err
			}
			res[i] = append(res[i], r)
			fmt.Printf("%-7s %-10s %5d %10d %8.2f %14.0f %7d MiB\n", sig, mode, round, r.delivered, r.cpu, r.perCPU(), r.rssKiB/1024)
		}
	}
	for i, mode := range floors {
		f := median(res[i])
		fmt.Printf("%-7s %s floor: median %.0f records/CPU-s; a pipeline costing nothing on it would reach %.2fx the collector\n",
			sig, mode, f.perCPU, f.perCPU/collector.perCPU)
	}
	fmt.Println()
	return nil
}

// bench holds what every run shares: the programs, the sink and the load.
type bench struct {
	agentBin, baselineBin, collector, telemetrygen, work, sinkURL string
	cfgPaths                                                      []string
	sink                                                          *sink
	rate                                                          float64
	workers                                                       int
	dur                                                           time.Duration
}

// buildAgent builds the agent in the module at dir, as it ships: without cgo.
func buildAgent(dir, out string) error {
	build := exec.Command("go", "build", "-o", out, "./cmd/periscope-agent")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build agent in %s: %v\n%s", dir, err, b)
	}
	return nil
}

// buildBaseline builds the agent at a git ref from a copy of that commit's tree.
func buildBaseline(ref, work string) (string, error) {
	src := filepath.Join(work, "baseline-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("git", "archive", "--format=tar", ref)
	extract := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	extract.Stdin = pipe
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	if err := extract.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		return "", fmt.Errorf("git archive %s: %v\n%s", ref, err, stderr.String())
	}
	if err := extract.Wait(); err != nil {
		return "", fmt.Errorf("extract %s: %w", ref, err)
	}
	bin := filepath.Join(work, "periscope-agent-baseline")
	return bin, buildAgent(src, bin)
}

// runSystem starts one system, puts the load through it and stops it again.
func (b *bench) runSystem(system, sig string, round int) (result, error) {
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	// Each run has its own sink path and queue directory, so nothing carries over.
	prefix := fmt.Sprintf("/%s-%s-%d", system, sig, round)
	dir := filepath.Join(b.work, prefix[1:])
	var cmd *exec.Cmd
	if system == "periscope" || system == "baseline" {
		bin := b.agentBin
		if system == "baseline" {
			bin = b.baselineBin
		}
		cmd = exec.Command(bin, "--manager", b.sinkURL+prefix, "--token", "pdt_bench", "--release", "1.8.0",
			"--cloud", "aws", "--region", "us-east-1", "--platform", "aws_ecs", "--transport", "http",
			"--heartbeat-interval", "1h", "--data-dir", dir,
			"--otlp-grpc", grpcAddr, "--otlp-http", httpAddr, "--log-level", "error")
		if profileDir != "" && round == 1 {
			pprofAddr := freeAddr()
			cmd.Args = append(cmd.Args, "--pprof", pprofAddr)
			go profile(pprofAddr, filepath.Join(profileDir, "agent-"+sig+".pprof"), b.dur)
		}
	} else {
		os.MkdirAll(dir, 0o755)
		cmd = exec.Command(b.collector)
		for _, p := range b.cfgPaths {
			cmd.Args = append(cmd.Args, "--config", p)
		}
		cmd.Env = append(os.Environ(), "PEER_GRPC="+grpcAddr, "PEER_HTTP="+httpAddr,
			"PEER_UPSTREAM="+b.sinkURL+prefix, "PEER_QUEUE_DIR="+dir)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	path := prefix + "/v1/" + sig
	r, err := b.measure(cmd, path, sig, grpcAddr, httpAddr)
	cmd.Process.Kill()
	cmd.Wait()
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w\n%s", system, sig, err, tail(stderr.String()))
	}
	// The self-check: a side that redacts must deliver none of the planted personal data.
	summary, err := b.sink.stats(path).verdict(sig)
	if system == "periscope" || system == "collector" && collectorRedacts {
		if err != nil && selfCheck {
			return result{}, fmt.Errorf("%s %s round %d: %w", system, sig, round, err)
		}
		if round == 1 {
			verdict := "no personal data delivered"
			if err != nil {
				verdict = err.Error()
			}
			fmt.Printf("self-check %s %s: %s; %s\n", system, sig, verdict, summary)
		}
	}
	return r, nil
}

// summary is the median of one system's runs.
type summary struct {
	perCPU float64
	rssKiB int
}

// median takes the median of each figure separately.
func median(rs []result) summary {
	per := make([]float64, len(rs))
	rss := make([]int, len(rs))
	for i, r := range rs {
		per[i], rss[i] = r.perCPU(), r.rssKiB
	}
	slices.Sort(per)
	slices.Sort(rss)
	m := len(rs) / 2
	if len(rs)%2 == 1 {
		return summary{per[m], rss[m]}
	}
	return summary{(per[m-1] + per[m]) / 2, (rss[m-1] + rss[m]) / 2}
}

// measure puts the load through a started system, waits for delivery to settle and
// returns the system's figures for the load alone (startup excluded).
func (b *bench) measure(cmd *exec.Cmd, path, sig, grpcAddr, httpAddr string) (result, error) {
	before, last := int64(0), int64(0)
	pid := cmd.Process.Pid
	cpu, err := b.loadCPU(pid, sig, grpcAddr, httpAddr, func() {
		before = b.sink.count(path)
	}, func() time.Duration {
		// Delivery is done when the sink has seen nothing new for two seconds.
		stable := 0
		for last = b.sink.count(path); stable < 20; {
			time.Sleep(100 * time.Millisecond)
			if n := b.sink.count(path); n != last {
				last, stable = n, 0
			} else {
				stable++
			}
		}
		return 2 * time.Second
	})
	if err != nil {
		return result{}, err
	}
	return result{delivered: last - before, cpu: cpu, rssKiB: procstat.PeakRSS(pid)}, nil
}

// loadCPU waits for the process to listen on grpcAddr, calls start, runs the load,
// then settle, and returns the CPU seconds the process used from start on. settle
// returns how long it waited once the process was idle; that wait is charged at the
// process's idle rate and taken back off.
func (b *bench) loadCPU(pid int, sig, grpcAddr, httpAddr string, start func(), settle func() time.Duration) (float64, error) {
	if err := waitListening(grpcAddr, 20*time.Second); err != nil {
		return 0, err
	}
	time.Sleep(500 * time.Millisecond)
	cpu0, err := procstat.CPU(pid)
	if err != nil {
		return 0, err
	}
	start()
	if err := runLoad(loadCommands(b.telemetrygen, sig, grpcAddr, httpAddr, b.rate, b.workers, b.dur)); err != nil {
		return 0, err
	}
	idle := settle()
	cpu1, err := procstat.CPU(pid)
	if err != nil {
		return 0, err
	}
	return cpu1 - cpu0 - idle.Seconds()*idleCPU(pid), nil
}

// idleCPU is what a system burns per second doing nothing; the settle wait above
// is charged at this rate and taken back off, which keeps short runs honest.
func idleCPU(pid int) float64 {
	c0, _ := procstat.CPU(pid)
	time.Sleep(time.Second)
	c1, _ := procstat.CPU(pid)
	return c1 - c0
}

// sink is an OTLP/HTTP upstream that counts records per path, and answers the agent's
// deployment-context request like a manager would.
type sink struct {
	mu    sync.Mutex
	paths map[string]*pathStats
}

// pathStats is what reached one path: records, and what the self-check found.
type pathStats struct {
	records atomic.Int64
	check
}

func newSink() *sink { return &sink{paths: map[string]*pathStats{}} }

func (s *sink) stats(path string) *pathStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.paths[path]
	if p == nil {
		p = &pathStats{}
		s.paths[path] = p
	}
	return p
}

func (s *sink) count(path string) int64 { return s.stats(path).records.Load() }

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/v1/agent/context") {
		fmt.Fprint(w, `{"deployment_id":"bench-deployment","customer":"bench-customer","stack":"bench-stack"}`)
		return
	}
	sig, err := otlp.ParseSignal(path.Base(r.URL.Path))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	data, err := otlp.Decompress(r.Header.Get("Content-Encoding"), r.Body, 64<<20)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	_, n, err := otlp.NewTagger(otlp.Context{}).Tag(sig, nil, data)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	st := s.stats(r.URL.Path)
	st.scan(data)
	st.records.Add(int64(n))
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// profile fetches a CPU profile covering most of the load.
func profile(addr, path string, dur time.Duration) {
	time.Sleep(2 * time.Second)
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(dur.Seconds())-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("did not start listening on " + addr)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
