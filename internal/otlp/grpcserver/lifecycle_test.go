package grpcserver

import (
	"context"
	"errors"
	"net"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/consumer/consumertest"
)

// New starts nothing, Shutdown may come first and more than once, and a Serve after
// it refuses at once and closes its listener, so no port stays bound unserved.
func TestShutdownIsIdempotentAndSafeWithoutServe(t *testing.T) {
	srv := New(&consumertest.Recorder{}, Settings{})
	for i := range 2 {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown %d: %v", i+1, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln); !errors.Is(err, ErrServerStopped) {
		t.Errorf("Serve after Shutdown: %v, want ErrServerStopped", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the listener is still open after Serve refused: Accept = %v", err)
	}
}

// waiter signals when a request arrives, then holds it until its context ends.
type waiter struct {
	started chan struct{}
	ended   chan error
}

func (w *waiter) Consume(ctx context.Context, _ consumer.Request) error {
	close(w.started)
	<-ctx.Done()
	w.ended <- ctx.Err()
	return consumer.Unavailable("stopping", 0)
}

// When Shutdown's context ends before the requests in progress are answered, the
// connections close, the consumers' contexts end, and Shutdown returns the context's
// error once they have returned.
func TestShutdownClosesConnectionsWhenItsContextEnds(t *testing.T) {
	w := &waiter{started: make(chan struct{}), ended: make(chan error, 1)}
	srv, addr := startGRPC(t, w, 0, nil)
	client := plogotlp.NewGRPCClient(dialGRPC(t, addr))
	exported := make(chan error, 1)
	go func() {
		_, err := client.Export(context.Background(), consumertest.LogsRequest(1))
		exported <- err
	}()
	<-w.started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	select {
	case err := <-w.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("consumer's context ended with %v, want context.Canceled", err)
		}
	default:
		t.Error("Shutdown returned while the consumer was still running")
	}
	if err := <-exported; status.Code(err) != codes.Unavailable {
		t.Errorf("request cut off by Shutdown: %v, want Unavailable (retried by senders)", err)
	}
}
