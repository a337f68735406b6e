package sampleapp_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
)

// BenchmarkInstanceMemory measures what the demo pays per deployment: the
// heap in use of the embedded NATS and S3 servers, then per sample service
// instance (SDK providers, HTTP server, queue connection, S3 client, worker)
// after each served a little traffic, and the process's RSS. Run it with
// -benchtime=1x; PERISCOPE_BENCH_INSTANCES sets how many instances (50),
// PERISCOPE_BENCH_EXPORT_QUEUE their Config.ExportQueue.
func BenchmarkInstanceMemory(b *testing.B) {
	n := 50
	if v, err := strconv.Atoi(os.Getenv("PERISCOPE_BENCH_INSTANCES")); err == nil && v > 0 {
		n = v
	}
	queue := 0 // DefaultExportQueue
	if v, err := strconv.Atoi(os.Getenv("PERISCOPE_BENCH_EXPORT_QUEUE")); err == nil && v > 0 {
		queue = v
	}
	for range b.N {
		base := heapInuse()
		rss0 := rss()
		w := newWorld(b)
		infraHeap := heapInuse() - base
		var apps []*sampleapp.App
		for i := range n {
			cfg := w.config("1.0.0", uint64(i))
			cfg.Deployment = fmt.Sprintf("d%04d", i)
			cfg.Queue.Stream = fmt.Sprintf("ORDERS_%04d", i)
			cfg.Queue.Rate = 2
			cfg.ExportInterval = 0 // the demo's default
			cfg.ExportQueue = queue
			a, err := sampleapp.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := a.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			apps = append(apps, a)
			sh, _ := sampleapp.NewShopper(sampleapp.ShopperConfig{BaseURL: a.URL()})
			if err := sh.Send(context.Background(), 20); err != nil {
				b.Fatal(err)
			}
		}
		total := heapInuse() - base
		if path := os.Getenv("PERISCOPE_BENCH_HEAPPROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		b.ReportMetric(float64(infraHeap)/(1<<20), "infra-heap-MiB")
		b.ReportMetric(float64(total-infraHeap)/float64(n)/(1<<10), "heap-KiB/instance")
		b.ReportMetric(float64(rss()-rss0)/(1<<20), "rss-growth-MiB")
		b.ReportMetric(float64(runtime.NumGoroutine())/float64(n), "goroutines/instance")
		for _, a := range apps {
			if err := a.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// rss reads the process's resident set from /proc (0 elsewhere).
func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
