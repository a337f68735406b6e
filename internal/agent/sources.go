package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers/docker"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers/kube"
	"github.com/periscope-dev/periscope/internal/agent/runtime/ingress"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues/sqsqueue"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/postgresdb"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/s3bucket"
	"github.com/periscope-dev/periscope/internal/config"
)

// runtimeSources builds every runtime-signal source the configuration names,
// with credentials from env and redact for what containers write (their log
// lines and termination messages reach the manager); it starts nothing. The ingress proxies are
// sources too (their figures are collected like the others') and are also
// returned apart, since the agent runs them from Start to Shutdown.
func runtimeSources(r config.Runtime, env []string, log *slog.Logger, redact func(string) string) ([]runtime.Source, []*ingress.Proxy, error) {
	var srcs []runtime.Source
	for _, q := range r.Queues {
		if q.Kind == config.QueueSQS {
			srcs = append(srcs, sqsqueue.FromConfig(q, env))
			continue
		}
		src, err := queues.FromConfig(q, env)
		if err != nil {
			return nil, nil, err
		}
		srcs = append(srcs, src)
	}
	for _, s := range r.Storage {
		var src runtime.Source
		var err error
		switch s.Kind {
		case config.StorageS3:
			src, err = s3bucket.New(s, env)
		case config.StoragePostgres:
			src, err = postgresdb.New(s, env)
		default:
			src, err = storage.New(s, env)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("runtime.storage: %w", err)
		}
		srcs = append(srcs, src)
	}
	for _, c := range r.Containers {
		var src runtime.Source
		var err error
		switch c.Kind {
		case config.ContainersDocker:
			src, err = docker.New(c, docker.Settings{Redact: redact})
		default:
			src, err = kube.New(c, kube.Settings{Redact: redact})
		}
		if err != nil {
			return nil, nil, fmt.Errorf("runtime.containers: %w", err)
		}
		srcs = append(srcs, src)
	}
	var proxies []*ingress.Proxy
	for _, c := range r.Ingress {
		p, err := ingress.New(c, ingress.Settings{Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("runtime.ingress: %w", err)
		}
		proxies = append(proxies, p)
		srcs = append(srcs, p)
	}
	return srcs, proxies, nil
}

// startProxies binds and serves every ingress proxy; on an error (an address
// in use) it shuts down those it started and returns it.
func startProxies(ctx context.Context, proxies []*ingress.Proxy) error {
	for i, p := range proxies {
		if err := p.Start(ctx); err != nil {
			return errors.Join(fmt.Errorf("runtime.ingress: %w", err), shutdownProxies(context.WithoutCancel(ctx), proxies[:i]))
		}
	}
	return nil
}

// shutdownProxies stops the proxies at once, each draining the requests in
// progress within ctx's deadline.
func shutdownProxies(ctx context.Context, proxies []*ingress.Proxy) error {
	errs := make([]error, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		wg.Go(func() { errs[i] = p.Shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
