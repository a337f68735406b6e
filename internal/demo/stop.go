package demo

import (
	"context"
	"log/slog"
	"time"
)

// How long each step of the demo's stop may take. The steps run one after the
// other (live traffic, then the agents, then the manager and the sample
// service), so together they bound the whole stop: 15s, plus stopGrace per
// step for a part that ignores its deadline, comfortably inside the 20s a
// newcomer waits after Ctrl-C before reaching for kill.
const (
	// liveStop is for the live traffic's last round: its requests to the
	// manager get roundGrace to finish (see traffic.run).
	liveStop = 3 * time.Second
	// agentStop is for every agent at once: its runtime sources, its command
	// runner and its OpAMP client, whose WebSocket close waits for the
	// manager's answer.
	agentStop = 4 * time.Second
	// managerStop is for the manager (draining its servers, writing the
	// fleet's last state, checkpointing and closing its stores: seconds on a
	// busy machine) and the vendor's sample service, idle by then.
	managerStop = 8 * time.Second
	// stopGrace is how long past its deadline a part is waited for before the
	// demo goes on without it: every Shutdown here honours its context, so one
	// still running by then is stuck, and waiting longer would only hide it.
	stopGrace = 500 * time.Millisecond
)

// undoContext bounds the stop of what a failed Start had started: ctx may
// have ended (the demo stopped while starting) and the stop must still
// happen, within agentStop.
func undoContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), agentStop)
}

// part is one piece of the demo that stops: its name for the log, and its
// Shutdown.
type part struct {
	name string
	stop func(context.Context) error
}

// stopParts stops every part at once, each within timeout, and returns when
// all have returned or timeout and stopGrace have passed: one part that hangs
// holds up neither the others nor the rest of the stop. A part that fails or
// has not returned is logged by name.
func stopParts(log *slog.Logger, timeout time.Duration, parts ...part) {
	if len(parts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	type result struct {
		i    int
		err  error
		took time.Duration
	}
	results := make(chan result, len(parts)) // a part given up on still has room to send
	start := time.Now()
	for i, p := range parts {
		go func() {
			err := p.stop(ctx)
			results <- result{i, err, time.Since(start)}
		}()
	}
	giveUp := time.NewTimer(timeout + stopGrace)
	defer giveUp.Stop()
	done := make([]bool, len(parts))
	for range parts {
		select {
		case r := <-results:
			done[r.i] = true
			if r.err != nil {
				log.Warn("a part of the demo did not stop cleanly", "part", parts[r.i].name, "took", r.took.Round(time.Millisecond), "error", r.err)
			} else {
				log.Debug("a part of the demo stopped", "part", parts[r.i].name, "took", r.took.Round(time.Millisecond))
			}
		case <-giveUp.C:
			var stuck []string
			for i, d := range done {
				if !d {
					stuck = append(stuck, parts[i].name)
				}
			}
			log.Error("parts of the demo did not stop in time; going on without them", "parts", stuck, "waited", timeout+stopGrace)
			return
		}
	}
}

// waitPart is a part that has stopped once wait returns: goroutines the demo
// owns, whose context is already cancelled.
func waitPart(name string, wait func()) part {
	return part{name: name, stop: func(ctx context.Context) error {
		done := make(chan struct{})
		go func() { wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
}
