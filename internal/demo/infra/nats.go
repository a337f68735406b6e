package infra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults of NATSConfig.
const (
	// DefaultNATSMaxMemory bounds what JetStream keeps in memory-backed
	// streams, across all of them.
	DefaultNATSMaxMemory = 64 << 20
	// DefaultNATSMaxStore bounds what JetStream keeps on disk.
	DefaultNATSMaxStore = 256 << 20
	// natsReadyTimeout is how long Start waits for the server to accept
	// clients: it binds in well under a second on any machine.
	natsReadyTimeout = 10 * time.Second
)

// NATSConfig configures the embedded NATS server.
type NATSConfig struct {
	// Dir is the directory JetStream keeps its file-backed streams under
	// (created when missing). Required.
	Dir string
	// MaxMemory and MaxStore bound JetStream's memory and disk use in bytes;
	// zero means DefaultNATSMaxMemory and DefaultNATSMaxStore. A stream that
	// would exceed them is refused when it is created.
	MaxMemory, MaxStore int64
}

// NATS is a NATS server with JetStream running in this process, listening on
// a random port of 127.0.0.1.
type NATS struct {
	cfg NATSConfig

	mu  sync.Mutex
	srv *server.Server
}

// NewNATS validates cfg; it starts nothing.
func NewNATS(cfg NATSConfig) (*NATS, error) {
	if cfg.Dir == "" {
		return nil, errors.New("infra: nats: Dir is required")
	}
	if cfg.MaxMemory < 0 || cfg.MaxStore < 0 {
		return nil, errors.New("infra: nats: MaxMemory and MaxStore must not be negative")
	}
	if cfg.MaxMemory == 0 {
		cfg.MaxMemory = DefaultNATSMaxMemory
	}
	if cfg.MaxStore == 0 {
		cfg.MaxStore = DefaultNATSMaxStore
	}
	return &NATS{cfg: cfg}, nil
}

// Start starts the server and returns once it accepts clients.
func (n *NATS) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return errors.New("infra: nats: already started")
	}
	if err := os.MkdirAll(n.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("infra: nats: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:         "periscope-demo",
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		NoSigs:             true, // the demo owns signal handling
		NoLog:              true,
		JetStream:          true,
		StoreDir:           n.cfg.Dir,
		JetStreamMaxMemory: n.cfg.MaxMemory,
		JetStreamMaxStore:  n.cfg.MaxStore,
		MaxPayload:         64 << 10, // an order event is a few hundred bytes
	})
	if err != nil {
		return fmt.Errorf("infra: nats: %w", err)
	}
	srv.Start()
	wait := natsReadyTimeout
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("infra: nats: not ready after %s", wait)
	}
	n.srv = srv
	return nil
}

// URL is the server's client URL (nats://127.0.0.1:port), empty before Start.
func (n *NATS) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return ""
	}
	return n.srv.ClientURL()
}

// Shutdown stops the server, closing its clients' connections. It is
// idempotent and safe without Start; the server's own shutdown is not
// cancellable, so ctx only bounds the wait for it.
func (n *NATS) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("infra: nats: shutdown: %w", ctx.Err())
	}
}
