package web_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/web"
)

// BenchmarkFleetPage times the fleet page's server side (counts, adoption,
// one page of the problems-first table with its sparklines) over fleets of
// 10,000 and 100,000 deployments with a few in trouble, and reports the p95
// and the page's bytes. bench/web measures the whole dashboard.
func BenchmarkFleetPage(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("deployments=%d", n), func(b *testing.B) {
			f := newFixture(b, web.Settings{})
			ctx := context.Background()
			nds := make([]registry.NewDeployment, n)
			for i := range nds {
				nds[i] = registry.NewDeployment{ID: fmt.Sprintf("cust%06d-prod", i), Customer: fmt.Sprintf("cust%06d", i),
					Stack: []string{"shop", "search"}[i%2], Cloud: "aws", Region: "eu-west-1", Platform: "ecs", Labels: map[string]string{"tier": "gold"}}
			}
			if _, err := f.reg.CreateDeployments(ctx, nds); err != nil {
				b.Fatal(err)
			}
			for _, st := range []string{"shop", "search"} {
				for _, v := range []string{"1.0", "1.1", "2.0"} {
					if _, err := f.reg.CreateRelease(ctx, fleet.Release{Stack: st, Version: v}); err != nil {
						b.Fatal(err)
					}
				}
			}
			for i, nd := range nds {
				rep := registry.Report{Description: &registry.Description{Release: []string{"2.0", "2.0", "1.1", "1.0"}[i%4]}}
				if i%97 == 0 {
					rep.Health = &fleet.Health{Reported: true, LastError: "database unreachable"}
				}
				checkin(b, f, nd.ID, "", rep)
			}
			for i := range 50 {
				if err := f.tel.Consume(ctx, spanBatch(b, nds[i*97].ID, f.clk.Now().Add(-time.Duration(i)*time.Minute), 20, i%5)); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.tel.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			br := f.signIn(auth.RoleViewer)
			var took []time.Duration
			size := 0
			cpu0 := cpuTime(b)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				res := br.get("/")
				took = append(took, time.Since(start))
				if res.Code != http.StatusOK {
					b.Fatalf("GET /: %d", res.Code)
				}
				size = res.Body.Len()
			}
			// CPU time per page says what a page costs even when other work
			// shares the machine and stretches the wall-clock figures.
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(len(took)), "cpu-ms/op")
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)*95/100].Microseconds())/1000, "p95-ms")
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
