package sampleapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	otellog "go.opentelemetry.io/otel/log"
)

// orderEvent is what a checkout publishes; no personal data travels on the
// queue.
type orderEvent struct {
	Order string `json:"order"`
	Items int    `json:"items"`
	Cents int    `json:"cents"`
}

// orderQueue publishes orders and runs the fulfilment worker.
type orderQueue struct {
	cfg  Queue
	app  *App
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream
	cons jetstream.Consumer

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// openQueue connects and creates the stream and the worker's consumer when
// missing; an instance of a new release finds the previous one's.
func openQueue(ctx context.Context, cfg Queue, app *App, log *slog.Logger) (*orderQueue, error) {
	nc, err := nats.Connect(cfg.URL, nats.Name(ServiceName+"/"+app.cfg.Deployment), nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1), nats.ReconnectBufSize(256<<10))
	if err != nil {
		return nil, fmt.Errorf("queue: connect %s: %w", cfg.URL, err)
	}
	q := &orderQueue{cfg: cfg, app: app, log: log, nc: nc}
	if err := q.declare(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return q, nil
}

func (q *orderQueue) declare(ctx context.Context) error {
	js, err := jetstream.New(q.nc)
	if err != nil {
		return fmt.Errorf("queue: jetstream: %w", err)
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: q.cfg.Stream, Subjects: []string{q.cfg.Subject},
		Storage: jetstream.MemoryStorage, Retention: jetstream.LimitsPolicy,
		MaxMsgs: q.cfg.MaxMsgs, Discard: jetstream.DiscardOld, MaxMsgSize: 4 << 10,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", q.cfg.Stream, err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: q.cfg.Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 16,
	})
	if err != nil {
		return fmt.Errorf("queue: consumer %s: %w", q.cfg.Consumer, err)
	}
	q.js, q.cons = js, cons
	return nil
}

// publish sends one order with the trace context in its headers, and waits
// for the stream to store it.
func (q *orderQueue) publish(ctx context.Context, ev orderEvent) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode order: %w", err)
	}
	msg := nats.NewMsg(q.cfg.Subject)
	msg.Data = data
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(msg.Header))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := q.js.PublishMsg(pctx, msg, jetstream.WithMsgID(ev.Order)); err != nil {
		return fmt.Errorf("publish order %s: %w", ev.Order, err)
	}
	return nil
}

// startWorker fulfils one order every 1/Rate seconds, each a consumer span
// in the checkout's trace.
func (q *orderQueue) startWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	every := time.Duration(float64(time.Second) / q.cfg.Rate)
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			msg, err := q.cons.Next(jetstream.FetchContext(ctx))
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
					q.log.Warn("fetching an order failed", "err", err)
				}
				continue
			}
			q.fulfil(ctx, msg)
		}
	}()
}

// fulfil processes one order and acknowledges it.
func (q *orderQueue) fulfil(ctx context.Context, msg jetstream.Msg) {
	a := q.app
	pctx := propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(http.Header(msg.Headers())))
	pctx, span := a.tel.tracer.Start(pctx, FnOrdersFulfil, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(a.cfg.Clock.Now()))
	var ev orderEvent
	err := json.Unmarshal(msg.Data(), &ev)
	if err == nil {
		err = a.step(pctx, FnOrdersFulfil, nil)
	}
	if err == nil {
		a.tel.done.Add(pctx, 1)
		a.log(pctx, otellog.SeverityInfo, FnOrdersFulfil, "order "+ev.Order+" handed to the carrier", attribute.String("order.id", ev.Order))
	}
	// A malformed order is acknowledged too: redelivering it cannot help.
	if aerr := msg.Ack(); aerr != nil && ctx.Err() == nil {
		q.log.Warn("acknowledging an order failed", "err", aerr)
	}
	span.End(trace.WithTimestamp(a.cfg.Clock.Now()))
}

// close stops the worker and drains the connection, so every published order
// has been stored. Safe to call twice.
func (q *orderQueue) close(ctx context.Context) error {
	var err error
	q.once.Do(func() {
		if q.cancel != nil {
			q.cancel()
		}
		done := make(chan struct{})
		go func() { q.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("worker: %w", ctx.Err())
		}
		q.nc.Close()
	})
	return err
}
