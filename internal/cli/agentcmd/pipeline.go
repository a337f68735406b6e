package agentcmd

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/periscope-dev/periscope/internal/agent/forward"
	"github.com/periscope-dev/periscope/internal/agent/opamp"
	"github.com/periscope-dev/periscope/internal/agent/pipeline"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
)

// startPipeline starts the telemetry path and keeps its deployment context current.
func startPipeline(ctx context.Context, cfg config.Agent, log *slog.Logger) (*pipeline.Pipeline, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	onFull := queue.Refuse
	if cfg.Queue.OnFull == "drop_oldest" {
		onFull = queue.DropOldest
	}
	det := opamp.Detect(os.Environ())
	pick := func(flag, detected string) string {
		if flag != "" {
			return flag
		}
		return detected
	}
	local := otlp.Context{Release: cfg.Release, Cloud: pick(cfg.Cloud, det.Cloud),
		Region: pick(cfg.Region, det.Region), Platform: pick(cfg.Platform, det.Platform)}
	host, _ := os.Hostname()
	p, err := pipeline.New(pipeline.Settings{
		GRPCAddr: cfg.OTLPGRPC, HTTPAddr: cfg.OTLPHTTP, MaxRequestBytes: int64(cfg.MaxRequestBytes),
		QueueDir: filepath.Join(cfg.DataDir, "queue"),
		Queue: queue.Options{MaxBytes: int64(cfg.Queue.MaxBytes), MaxAge: time.Duration(cfg.Queue.MaxAge),
			OnFull: onFull, Sync: cfg.Queue.Sync},
		Forward:             forward.Settings{Endpoint: cfg.Manager, Token: cfg.Token, Compression: cfg.Compression},
		SelfMetricsInterval: time.Duration(cfg.SelfMetricsInterval),
		Resource:            map[string]string{"service.name": opamp.ServiceName, "service.version": opamp.Version, "host.name": host},
		Logger:              log.With("component", "pipeline"),
		Registerer:          reg,
		Gatherer:            reg,
	})
	if err != nil {
		return nil, err
	}
	cs := &pipeline.ContextSource{Manager: cfg.Manager, Token: cfg.Token, Local: local,
		CacheFile: filepath.Join(cfg.DataDir, "deployment-context.json")}
	cs.Prime(p)
	if err := p.Start(ctx); err != nil {
		p.Shutdown(context.WithoutCancel(ctx))
		return nil, err
	}
	go cs.Run(ctx, p)
	return p, nil
}

// servePprof serves the Go profiler on its own listener, never on the OTLP ports.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error("pprof server stopped", "error", err)
	}
}
