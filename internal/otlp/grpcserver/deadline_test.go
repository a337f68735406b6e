package grpcserver

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The lazy deadline must behave as context.WithDeadline does for a consumer that
// waits on it, outlives it, or whose connection ends first.
func TestDeadlineContextBehavesLikeWithDeadline(t *testing.T) {
	deadline := time.Now().Add(30 * time.Millisecond)
	ctx := newDeadlineCtx(context.Background(), deadline)
	if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("Deadline() = %v, %v; want %v", d, ok, deadline)
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err before the deadline = %v", err)
	}
	select {
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) || time.Now().Before(deadline) {
			t.Errorf("done at %v with %v; want DeadlineExceeded at %v", time.Now(), ctx.Err(), deadline)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Done never closed after the deadline")
	}
	ctx.release()

	// Released before anyone waited: Done is closed, as after a cancel.
	unused := newDeadlineCtx(context.Background(), time.Now().Add(time.Hour))
	unused.release()
	select {
	case <-unused.Done():
	default:
		t.Error("Done of a released context is not closed")
	}
	if !errors.Is(unused.Err(), context.Canceled) {
		t.Errorf("Err after release = %v, want Canceled", unused.Err())
	}

	// The connection ends first.
	conn, closeConn := context.WithCancel(context.Background())
	child := newDeadlineCtx(conn, time.Now().Add(time.Hour))
	defer child.release()
	closeConn()
	select {
	case <-child.Done():
		if !errors.Is(child.Err(), context.Canceled) {
			t.Errorf("Err after the connection closed = %v, want Canceled", child.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close with the connection")
	}
	// An earlier deadline of the parent wins.
	early, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Minute))
	defer cancel()
	want, _ := early.Deadline()
	if d, _ := newDeadlineCtx(early, time.Now().Add(time.Hour)).Deadline(); !d.Equal(want) {
		t.Errorf("Deadline() = %v, want the parent's earlier %v", d, want)
	}
}
