package consumer_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// queue is a bounded consumer: it keeps copies of the requests it takes, since a
// Body is only borrowed, and refuses with KindFull when it holds enough.
type queue struct {
	mu     sync.Mutex
	bodies [][]byte
	max    int
}

func (q *queue) Consume(_ context.Context, r consumer.Request) error {
	q.mu.Lock() // Consume may be called concurrently
	defer q.mu.Unlock()
	if len(q.bodies) == q.max {
		return consumer.Full("queue is full; retry later", 5*time.Second)
	}
	q.bodies = append(q.bodies, bytes.Clone(r.Body))
	return nil
}

func Example() {
	var c consumer.Consumer = &queue{max: 1}
	noHeaders := func(string) string { return "" }
	for range 2 {
		err := c.Consume(context.Background(), consumer.Request{Signal: otlp.Logs, Body: []byte{0x0a, 0x00}, Header: noHeaders})
		fmt.Println(consumer.KindOf(err), err)
	}
	// Output:
	// none <nil>
	// full queue is full; retry later
}
