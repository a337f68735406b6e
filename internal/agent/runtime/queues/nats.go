package queues

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// NATS collects a JetStream stream's messages, bytes and first-message age,
// and each consumer's pending (lag) and ack-pending counts.
type NATS struct {
	// SourceName is the source's name, "nats/<name>".
	SourceName string
	// URL is the server (nats://host:4222).
	URL string
	// Stream is the JetStream stream.
	Stream string
	// Consumers are the consumers to report; empty reports every consumer of
	// the stream, at most 100.
	Consumers []string
	// User and Password, when set, authenticate the connection.
	User, Password string
}

// Name returns the source's name.
func (n *NATS) Name() string { return n.SourceName }

// Kind returns "nats".
func (n *NATS) Kind() string { return "nats" }

// Collect connects, reads the stream's and its consumers' state, and closes.
func (n *NATS) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	// nats.go reports a refused dial as "no servers available"; the dialer
	// keeps the reason, which is what the operator needs to see.
	d := &dialer{Dialer: net.Dialer{Timeout: timeoutOf(ctx)}}
	opts := []nats.Option{nats.Name("periscope-agent"), nats.NoReconnect(), nats.Timeout(timeoutOf(ctx)), nats.SetCustomDialer(d)}
	if n.User != "" || n.Password != "" {
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	}
	nc, err := nats.Connect(n.URL, opts...)
	if err != nil {
		if d.err != nil {
			return fmt.Errorf("connect to nats: %w (%w)", d.err, err)
		}
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s, err := js.Stream(ctx, n.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", n.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", n.Stream, err)
	}
	f := figures{ms: ms, now: now, system: "nats", destination: n.Stream}
	st := info.State
	f.depth(clamp(st.Msgs))
	f.bytes(clamp(st.Bytes))
	if st.Msgs > 0 && !st.FirstTime.IsZero() {
		f.oldest(st.FirstTime)
	}

	pending, ackPending := f.lag()
	add := func(ci *jetstream.ConsumerInfo) {
		f.group(pending, ci.Name, clamp(ci.NumPending))
		f.group(ackPending, ci.Name, int64(ci.NumAckPending))
	}
	if len(n.Consumers) > 0 {
		var errs []error
		for _, name := range n.Consumers {
			c, err := s.Consumer(ctx, name)
			var ci *jetstream.ConsumerInfo
			if err == nil {
				ci, err = c.Info(ctx)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("consumer %s: %w", name, err))
				continue
			}
			add(ci)
		}
		return errors.Join(errs...)
	}
	l := s.ListConsumers(ctx)
	seen := 0
	for ci := range l.Info() {
		if seen < maxGroups {
			add(ci)
		}
		seen++ // drain the lister: it stops only when read to the end or ctx ends
	}
	if err := l.Err(); err != nil {
		return fmt.Errorf("consumers of %s: %w", n.Stream, err)
	}
	return nil
}

// dialer remembers its last failure; one Connect dials from one goroutine.
type dialer struct {
	net.Dialer
	err error
}

// Dial dials and keeps the error.
func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	c, err := d.Dialer.Dial(network, addr)
	if err != nil {
		d.err = err
	}
	return c, err
}

// timeoutOf is what is left of ctx's deadline, for clients that take a timeout
// rather than a context to connect.
func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 10 * time.Second
}
