package record

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// commandPrefix names the stream of remote-command events.
const commandPrefix = "commands-"

// Bounds on command events: what waits for the flush loop, what one line
// holds, and what a summary lists.
const (
	maxPendingCommands = 1024
	maxCommandText     = 1024
	maxCommandParams   = 32
	// summaryCommands is how many of the newest events a Summary lists.
	summaryCommands = 50
)

// Command event kinds.
const (
	CommandReceived = "received"
	CommandRefused  = "refused"
	CommandStarted  = "started"
	CommandFinished = "finished"
)

// CommandEvent is one fact about a remote command the manager invoked: that it
// was received, refused (and why), started, or finished (and how). It holds
// the output's size and hash, never the output itself.
type CommandEvent struct {
	Time time.Time `json:"time"`
	// Event is CommandReceived, CommandRefused, CommandStarted or CommandFinished.
	Event   string `json:"event"`
	ID      string `json:"id"`
	Command string `json:"command,omitempty"`
	// By and Why are the operator and the reason they gave.
	By     string            `json:"by,omitempty"`
	Why    string            `json:"why,omitempty"`
	Params map[string]string `json:"params,omitempty"`
	// State is the invocation's state after the event; Detail says why it was
	// refused, failed or expired.
	State        string `json:"state,omitempty"`
	Detail       string `json:"detail,omitempty"`
	ExitCode     *int   `json:"exit_code,omitempty"`
	Signal       string `json:"signal,omitempty"`
	HTTPStatus   int    `json:"http_status,omitempty"`
	OutputBytes  int64  `json:"output_bytes,omitempty"`
	OutputSHA256 string `json:"output_sha256,omitempty"`
	Truncated    bool   `json:"truncated,omitempty"`
	// Redacted counts what redaction removed from the output, by reason.
	Redacted   map[string]int `json:"redacted,omitempty"`
	DurationMS int64          `json:"duration_ms,omitempty"`
}

// CommandTotals sums the command events of a Summary.
type CommandTotals struct {
	// Events counts events by kind, States the final states of finished and
	// refused invocations.
	Events map[string]int64 `json:"events"`
	States map[string]int64 `json:"states"`
	// Recent lists the newest events in range, oldest first, at most 50.
	Recent []CommandEvent `json:"recent"`
}

// Command records one remote-command event. It only adds to memory; the flush
// loop is woken to write it soon, as commands are rare and each one matters.
func (r *Record) Command(ev CommandEvent) {
	ev = ev.bounded()
	r.mu.Lock()
	if ev.Time.IsZero() {
		ev.Time = r.clock.Now().UTC()
	}
	if len(r.commands) < maxPendingCommands {
		r.commands = append(r.commands, ev)
	} else {
		r.lostCmds++
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// bounded cuts every string of ev to its bound, as its own copy.
func (ev CommandEvent) bounded() CommandEvent {
	ev.Time = ev.Time.UTC()
	ev.Event, ev.ID, ev.Command = clip(ev.Event, maxKindLen), clip(ev.ID, maxKindLen), clip(ev.Command, maxKindLen)
	ev.By, ev.Why, ev.Detail = clip(ev.By, maxCommandText), clip(ev.Why, maxCommandText), clip(ev.Detail, maxCommandText)
	ev.State, ev.Signal, ev.OutputSHA256 = clip(ev.State, maxKindLen), clip(ev.Signal, maxKindLen), clip(ev.OutputSHA256, maxKindLen)
	if len(ev.Params) > 0 {
		p := make(map[string]string, min(len(ev.Params), maxCommandParams))
		for k, v := range ev.Params {
			if len(p) == maxCommandParams {
				break
			}
			p[clip(k, maxKindLen)] = clip(v, maxKeyLen)
		}
		ev.Params = p
	}
	if len(ev.Redacted) > 0 {
		m := make(map[string]int, len(ev.Redacted))
		for k, v := range ev.Redacted {
			if len(m) == maxCommandParams {
				break
			}
			m[clip(k, maxKindLen)] = v
		}
		ev.Redacted = m
	}
	return ev
}

// parseCommand reads one command line, refusing what the writer never writes.
func parseCommand(b []byte) (CommandEvent, error) {
	var ev CommandEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, fmt.Errorf("command line: %w", err)
	}
	if ev.Time.IsZero() || ev.Event == "" || ev.ID == "" || ev.OutputBytes < 0 {
		return ev, fmt.Errorf("command line: missing time, event or id")
	}
	return ev.bounded(), nil
}

// commandLine adds one command line to the aggregate.
func (a *aggregate) commandLine(b []byte) (time.Time, bool) {
	ev, err := parseCommand(b)
	if err != nil {
		return time.Time{}, false
	}
	if !a.inRange(ev.Time) {
		return ev.Time, true
	}
	c := &a.s.Commands
	kind := bounded(c.Events, ev.Event)
	c.Events[kind] = add(c.Events[kind], 1)
	if ev.Event == CommandFinished || ev.Event == CommandRefused {
		st := bounded(c.States, ev.State)
		c.States[st] = add(c.States[st], 1)
	}
	if len(c.Recent) == summaryCommands {
		c.Recent = append(c.Recent[:0], c.Recent[1:]...)
	}
	c.Recent = append(c.Recent, ev)
	return ev.Time, true
}

// textCommands is how many of the newest finished or refused invocations a
// text summary describes one by one.
const textCommands = 10

// writeText says what remote commands did, when there were any.
func (c CommandTotals) writeText(b *strings.Builder) {
	received := c.Events[CommandReceived]
	if received == 0 && len(c.Recent) == 0 {
		return
	}
	var parts []string
	for _, st := range slices.Sorted(maps.Keys(c.States)) {
		parts = append(parts, thousands(c.States[st])+" "+quoteIfOdd(st))
	}
	fmt.Fprintf(b, "It received %s from the manager", noun{"remote command", "remote commands"}.of(received))
	if len(parts) > 0 {
		fmt.Fprintf(b, ": %s", list(parts))
	}
	b.WriteString(".\n")
	var ends []CommandEvent
	for _, ev := range c.Recent {
		if ev.Event == CommandFinished || ev.Event == CommandRefused {
			ends = append(ends, ev)
		}
	}
	if len(ends) > textCommands {
		ends = ends[len(ends)-textCommands:]
	}
	for _, ev := range ends {
		fmt.Fprintf(b, "  %s UTC  %s %s", ev.Time.UTC().Format("2006-01-02 15:04:05"), quoteIfOdd(ev.Command), quoteIfOdd(ev.ID))
		if ev.By != "" {
			fmt.Fprintf(b, " by %s", quoteIfOdd(ev.By))
		}
		if ev.Why != "" {
			fmt.Fprintf(b, " (%s)", strconv.QuoteToGraphic(ev.Why))
		}
		fmt.Fprintf(b, ": %s", quoteIfOdd(ev.State))
		switch {
		case ev.ExitCode != nil && ev.Signal != "":
			fmt.Fprintf(b, ", killed by %s", quoteIfOdd(ev.Signal))
		case ev.ExitCode != nil:
			fmt.Fprintf(b, ", exit %d", *ev.ExitCode)
		case ev.HTTPStatus != 0:
			fmt.Fprintf(b, ", HTTP %d", ev.HTTPStatus)
		}
		if ev.Event == CommandFinished && ev.OutputSHA256 != "" {
			fmt.Fprintf(b, ", %s of output", bytesText(ev.OutputBytes))
			if ev.Truncated {
				b.WriteString(" (cut to the limit)")
			}
			fmt.Fprintf(b, ", sha256 %.12s…", ev.OutputSHA256)
		}
		if ev.DurationMS > 0 {
			fmt.Fprintf(b, ", %s", (time.Duration(ev.DurationMS) * time.Millisecond).String())
		}
		if ev.Detail != "" {
			fmt.Fprintf(b, " — %s", strconv.QuoteToGraphic(ev.Detail))
		}
		b.WriteString("\n")
	}
}
