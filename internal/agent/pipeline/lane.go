package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/forward"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
)

// lane is one signal's queue and forwarder. A queue that fails to write (a full or
// failing disk) refuses every append from then on, so the lane reopens it once the
// disk takes writes again: what was acknowledged is on disk and stays, and the
// application, told 503 meanwhile, resends the rest.
type lane struct {
	sig  otlp.Signal
	opts queue.Options

	mu     sync.RWMutex // guards q, stop and done; held for reading around appends
	q      *queue.Queue
	stop   context.CancelFunc
	done   chan struct{}
	broken atomic.Bool
	// written is the seq of the last entry appended successfully, so a repair can
	// tell when everything written has been delivered.
	written atomic.Uint64
}

// stats reads the current queue's figures for metrics.
func (l *lane) stats() queue.Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.q.Stats()
}

// append queues an entry, or says the lane is being repaired.
func (l *lane) append(entry []byte) error {
	if l.broken.Load() {
		return errRepairing
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	seq, err := l.q.Append(entry)
	// Appends of one group commit return in any order: keep the largest.
	for old := l.written.Load(); err == nil && seq > old && !l.written.CompareAndSwap(old, seq); old = l.written.Load() {
	}
	return err
}

// drained reports whether everything written has been delivered.
func (l *lane) drained() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.q.Acked() >= l.written.Load()
}

var errRepairing = errors.New("the agent's queue failed to write and is being reopened")

// startForwarder runs a forwarder on the current queue; the caller holds l.mu.
func (p *Pipeline) startForwarder(ctx context.Context, l *lane) error {
	fs := p.s.Forward
	fs.Logger = p.log.With("component", "forward")
	fs.Observer = p.metrics
	f, err := forward.New(l.sig, l.q, fs)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithCancel(ctx)
	l.stop, l.done = cancel, make(chan struct{})
	done := l.done
	go func() {
		defer close(done)
		if err := f.Run(fctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("forwarder stopped", "signal", l.sig, "error", err)
		}
	}()
	return nil
}

// stopForwarder stops the lane's forwarder and waits for it; the caller holds l.mu.
func (l *lane) stopForwarder() {
	if l.stop != nil {
		l.stop()
		<-l.done
		l.stop = nil
	}
}

// repair reopens a lane's queue after a write failure, retrying every interval until
// it opens or ctx ends. Only one repair runs per lane (broken is its flag).
//
// The forwarder keeps sending from the failed queue meanwhile (reads and acks still
// work), which is what frees the disk when the queue itself filled it; the queue is
// reopened once it has drained, or every 30 intervals in case the space came back
// some other way.
func (p *Pipeline) repair(ctx context.Context, l *lane, interval time.Duration) {
	defer p.wg.Done()
	for tick := 1; ; tick++ {
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !l.drained() && tick%30 != 0 {
			continue
		}
		l.mu.Lock()
		l.stopForwarder()
		_ = l.q.Close() // it has failed already; closing releases its files
		q, err := queue.Open(l.opts)
		if err != nil {
			// Keep the closed queue in place: appends fail fast with errRepairing.
			l.mu.Unlock()
			p.log.Error("could not reopen the agent's queue; retrying", "signal", l.sig, "error", err)
			continue
		}
		l.q = q
		err = p.startForwarder(ctx, l)
		l.mu.Unlock()
		if err != nil {
			p.log.Error("could not restart forwarding", "signal", l.sig, "error", err)
			continue
		}
		l.broken.Store(false)
		p.log.Info("agent queue reopened after a write failure", "signal", l.sig)
		return
	}
}
