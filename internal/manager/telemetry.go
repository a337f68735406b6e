package manager

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/manager/api"
	"github.com/periscope-dev/periscope/internal/manager/export"
	"github.com/periscope-dev/periscope/internal/manager/ingest"
	"github.com/periscope-dev/periscope/internal/manager/registry"
	"github.com/periscope-dev/periscope/internal/manager/telstore"
	"github.com/periscope-dev/periscope/internal/manager/telstore/pgtel"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/grpcserver"
	"github.com/periscope-dev/periscope/internal/otlp/receiver"
	"github.com/periscope-dev/periscope/internal/queue"
	"github.com/periscope-dev/periscope/internal/store/postgres"
)

// TelemetrySink is where accepted telemetry goes besides the exporters and the
// telemetry store. Settings.Sinks adds them.
type TelemetrySink = consumer.Sink

// startTelemetry builds the ingest path: exporters behind their queues, the ingest
// consumer, and the optional OTLP/gRPC listener.
func (m *Manager) startTelemetry(ctx context.Context, reg prometheus.Registerer) error {
	var exps []export.Exporter
	for _, c := range m.cfg.Exporters {
		e, err := export.New(c)
		if err != nil {
			for _, e := range exps {
				e.Close(ctx)
			}
			return err
		}
		exps = append(exps, e)
	}
	q := m.cfg.ExportQueue
	fo, err := export.NewFanout(exps, export.FanoutSettings{
		Dir: filepath.Join(m.cfg.DataDir, "exporters"),
		// A queue record must fit in one segment; tagging adds a little to each batch.
		Queue: queue.Options{MaxBytes: int64(q.MaxBytes), MaxAge: time.Duration(q.MaxAge), Sync: q.Sync, Clock: m.set.Clock,
			SegmentBytes: max(8<<20, 2*int64(m.cfg.MaxRequestBytes)+1<<20)},
		Logger:     m.log.With("component", "export"),
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	m.fanout = fo
	if m.tel, err = m.openTelemetryStore(ctx, reg); err != nil {
		return fmt.Errorf("open the telemetry store: %w", err)
	}
	// Each exporter is a sink of its own: ingest keeps every sink's delivered
	// position, so a batch one sink refused reaches the others once however often
	// the agent resends it.
	var sinks []ingest.Sink
	for _, l := range fo.Lanes() {
		sinks = append(sinks, ingest.Sink{Name: "exporter/" + l.Name(), Sink: l})
	}
	for i, s := range m.set.Sinks {
		sinks = append(sinks, ingest.Sink{Name: fmt.Sprintf("sink/%d", i), Sink: s})
	}
	sinks = append(sinks, ingest.Sink{Name: "telstore", Sink: m.tel})
	m.ingest, err = ingest.New(deployments{m.reg}, sinks, ingest.Settings{
		Dir: m.cfg.DataDir, Clock: m.set.Clock, Logger: m.log.With("component", "ingest"), Registerer: reg,
	})
	if err != nil {
		return err
	}
	m.ingestLimit = receiver.NewLimiter(m.cfg.MaxConcurrentRequests)
	bgCtx := m.groupCtx
	fo.Start(bgCtx)
	m.group.Go(func() error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-bgCtx.Done():
				return nil
			case <-t.C:
				if err := m.ingest.Flush(); err != nil {
					m.log.Error("could not save delivered-batch positions", "error", err)
				}
			}
		}
	})
	if m.cfg.OTLPGRPC != "" {
		ln, err := m.listen(m.cfg.OTLPGRPC, "h2")
		if err != nil {
			return fmt.Errorf("OTLP/gRPC listen on %s: %w", m.cfg.OTLPGRPC, err)
		}
		m.grpcLn = ln
		m.grpcSrv = grpcserver.New(m.ingest, grpcserver.Settings{MaxBytes: int(m.cfg.MaxRequestBytes), Limiter: m.ingestLimit})
		m.group.Go(func() error {
			// Shutdown stops the server before it waits for the group, so this ends in
			// time; a failure before that is the manager's, and reaches Wait.
			if err := m.grpcSrv.Serve(ln); err != nil && !errors.Is(err, grpcserver.ErrServerStopped) {
				return fmt.Errorf("OTLP/gRPC server on %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	names := make([]string, len(exps))
	for i, e := range exps {
		names[i] = e.Name()
	}
	m.log.Info("telemetry ingest ready", "exporters", names, "otlp_grpc", m.cfg.OTLPGRPC)
	return nil
}

// TelemetryStore is what the manager needs of its operational telemetry
// store: the queries the API, dashboard, regression detector and runtime view
// ask, the sink ingest hands accepted batches to, and Flush and Close. The
// embedded DuckDB store and the PostgreSQL one both are.
type TelemetryStore interface {
	api.Telemetry
	consumer.Sink
	// Flush returns once every acknowledged batch shows in RED and comparisons.
	Flush(ctx context.Context) error
	Close() error
}

var (
	_ TelemetryStore = (*telstore.Store)(nil)
	_ TelemetryStore = (*pgtel.Store)(nil)
)

// openTelemetryStore opens the telemetry store beside the fleet store: in the
// PostgreSQL database of a postgres:// storage URL, so every replica sees all
// telemetry, or in the data directory.
func (m *Manager) openTelemetryStore(ctx context.Context, reg prometheus.Registerer) (TelemetryStore, error) {
	ts := m.cfg.TelemetryStore
	log := m.log.With("component", "telstore")
	// A failed Open's nil pointer must not become a non-nil interface that
	// Shutdown would close.
	if postgres.IsURL(m.cfg.Storage) {
		st, err := pgtel.Open(ctx, m.cfg.Storage, pgtel.Settings{MaxAge: time.Duration(ts.MaxAge), MaxBytes: int64(ts.MaxBytes), PartitionWidth: time.Duration(ts.PartitionWidth),
			Clock: m.set.Clock, Logger: log, Registerer: reg})
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	st, err := telstore.Open(ctx, m.cfg.DataDir, telstore.Settings{MaxAge: time.Duration(ts.MaxAge), MaxBytes: int64(ts.MaxBytes),
		MemoryLimit: ts.MemoryLimit, Clock: m.set.Clock, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Telemetry exposes the operational telemetry store to in-process callers (the
// demo, tests, benchmarks).
func (m *Manager) Telemetry() TelemetryStore { return m.tel }

// GRPCAddr returns the OTLP/gRPC address, or "" when it is not served.
func (m *Manager) GRPCAddr() string {
	if m.grpcLn == nil {
		return ""
	}
	return m.grpcLn.Addr().String()
}

// deployments adapts the registry to what ingest needs.
type deployments struct{ r *registry.Registry }

func (d deployments) Authenticate(token string) (string, bool) { return d.r.Authenticate(token) }

func (d deployments) Context(id string) (otlp.Context, bool) {
	v, err := d.r.Get(id)
	if err != nil {
		return otlp.Context{}, false
	}
	dep := v.Deployment
	return otlp.Context{
		DeploymentID: dep.ID, Customer: dep.Customer, Cloud: dep.Cloud, Region: dep.Region,
		Platform: dep.Platform, Release: dep.RunningRelease, Stack: dep.Stack,
	}, true
}
