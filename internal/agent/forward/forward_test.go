package forward

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/queue"
)

// manager is an upstream that answers with the next scripted status (200 after the
// script runs out) and keeps what it accepted.
type manager struct {
	mu      sync.Mutex
	script  []int
	batches []string
	records int
	bodies  []string // of every log record accepted, in order
	// had is the last sequence number the manager already holds, as after an agent
	// lost its own position; overlapping batches get 409 with it.
	had uint64
}

func (m *manager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.script) > 0 {
		code := m.script[0]
		m.script = m.script[1:]
		if code != 200 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(code)
			return
		}
	}
	// Multi-member gzip: one member per queued entry.
	data, err := otlp.Decompress(r.Header.Get("Content-Encoding"), r.Body, 64<<20)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalProto(data); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if b := r.Header.Get(otlp.BatchHeader); m.had > 0 {
		var first uint64
		fmt.Sscanf(b[strings.Index(b, ":")+1:], "%d", &first)
		if first <= m.had {
			w.Header().Set(otlp.DeliveredHeader, fmt.Sprint(m.had))
			w.WriteHeader(http.StatusConflict)
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer pdt_acme" {
		w.WriteHeader(401)
		return
	}
	m.batches = append(m.batches, r.Header.Get(otlp.BatchHeader))
	m.records += req.Logs().LogRecordCount()
	rls := req.Logs().ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		lrs := rls.At(i).ScopeLogs().At(0).LogRecords()
		for j := 0; j < lrs.Len(); j++ {
			m.bodies = append(m.bodies, lrs.At(j).Body().Str())
		}
	}
}

func (m *manager) state() ([]string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.batches...), m.records
}

type counts struct {
	mu                     sync.Mutex
	sent, dropped, retried int
	reasons                []string // of drops
}

func (c *counts) Sent(_ otlp.Signal, n, _ int) { c.mu.Lock(); c.sent += n; c.mu.Unlock() }
func (c *counts) Retried(otlp.Signal, string)  { c.mu.Lock(); c.retried++; c.mu.Unlock() }
func (c *counts) Dropped(_ otlp.Signal, n int, reason string) {
	c.mu.Lock()
	c.dropped += n
	c.reasons = append(c.reasons, reason)
	c.mu.Unlock()
}

// enqueue queues one request of n records, s2-compressed as the agent queues them.
func enqueue(t *testing.T, q *queue.Queue, records int) { enqueueAs(t, q, records, "s2") }

func enqueueAs(t *testing.T, q *queue.Queue, records int, encoding string) {
	t.Helper()
	enqueueBodies(t, q, encoding, slices.Repeat([]string{"entry"}, records)...)
}

// enqueueBodies queues one request holding a log record per body.
func enqueueBodies(t *testing.T, q *queue.Queue, encoding string, bodies ...string) {
	t.Helper()
	records := len(bodies)
	l := plog.NewLogs()
	sl := l.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	for _, b := range bodies {
		sl.LogRecords().AppendEmpty().Body().SetStr(b)
	}
	req, _ := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
	enc, _ := NewEncoder(encoding)
	entry, err := enc.Append(nil, records, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(entry); err != nil {
		t.Fatal(err)
	}
}

// acking is the queue as the forwarder sees it, with a kick after every Ack: the
// forwarder acknowledges each batch once it is done with it (delivered or dropped), so
// that is when a test's condition can have changed.
type acking struct {
	*queue.Queue
	acked chan struct{}
}

func (q acking) Ack(upTo uint64) error {
	err := q.Queue.Ack(upTo)
	select {
	case q.acked <- struct{}{}:
	default: // a kick is pending already
	}
	return err
}

// run forwards q to url until until holds and the queue is empty, looking again after
// each acknowledgement.
func run(t *testing.T, q *queue.Queue, url string, obs Observer, until func() bool) {
	t.Helper()
	aq := acking{Queue: q, acked: make(chan struct{}, 1)}
	f, err := New(otlp.Logs, aq, Settings{Endpoint: url, Token: "pdt_acme", Linger: -1,
		InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	timeout := time.After(10 * time.Second)
	// Also wait for the forwarder to have acknowledged everything: the upstream can
	// count a batch before the forwarder has read the answer.
	for !until() || q.Stats().Records > 0 {
		select {
		case <-aq.acked:
		case <-timeout:
			t.Fatal("forwarder did not get there in 10s")
		}
	}
}

func TestForwarderRetriesThenDeliversInOrder(t *testing.T) {
	m := &manager{script: []int{503, 429, 502}}
	srv := httptest.NewServer(m)
	defer srv.Close()
	q, err := queue.Open(queue.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i := 0; i < 3; i++ {
		enqueue(t, q, 4)
	}
	c := &counts{}
	run(t, q, srv.URL, c, func() bool { _, n := m.state(); return n == 12 })
	batches, _ := m.state()
	if len(batches) != 1 || batches[0] != q.ID()+":1-3" {
		t.Errorf("batches %v, want one %s:1-3", batches, q.ID())
	}
	if c.sent != 12 || c.retried != 3 || c.dropped != 0 {
		t.Errorf("sent %d, retried %d, dropped %d", c.sent, c.retried, c.dropped)
	}
	if q.Acked() != 3 {
		t.Errorf("acked %d, want 3", q.Acked())
	}
}

func TestForwarderDropsWhatTheManagerRefusesForGood(t *testing.T) {
	m := &manager{script: []int{400}}
	srv := httptest.NewServer(m)
	defer srv.Close()
	q, _ := queue.Open(queue.Options{Dir: t.TempDir()})
	defer q.Close()
	enqueueAs(t, q, 2, "gzip") // entries already in the wire encoding are passed through
	c := &counts{}
	run(t, q, srv.URL, c, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.dropped == 2 })
	enqueueAs(t, q, 1, "gzip")
	enqueueAs(t, q, 1, "none")
	enqueueAs(t, q, 1, "s2")
	run(t, q, srv.URL, c, func() bool { _, n := m.state(); return n == 3 })
	if q.Acked() != 4 {
		t.Errorf("acked %d, want 4 (the refused entry and the three delivered)", q.Acked())
	}
}

// A batch the manager cannot store (it answers 422 and sets it aside) is counted
// apart from other refusals, and the records queued behind it are delivered.
func TestForwarderMovesOnFromABatchTheManagerCannotStore(t *testing.T) {
	m := &manager{script: []int{422}}
	srv := httptest.NewServer(m)
	defer srv.Close()
	q, _ := queue.Open(queue.Options{Dir: t.TempDir()})
	defer q.Close()
	enqueue(t, q, 2)
	c := &counts{}
	run(t, q, srv.URL, c, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.dropped == 2 })
	enqueue(t, q, 3)
	run(t, q, srv.URL, c, func() bool { _, n := m.state(); return n == 3 })
	if len(c.reasons) != 1 || c.reasons[0] != "unstorable" || c.sent != 3 {
		t.Errorf("drops %q, sent %d; want one unstorable drop and 3 sent", c.reasons, c.sent)
	}
}

func TestForwarderResendsExactlyTheInFlightRangeAfterACrash(t *testing.T) {
	m := &manager{}
	srv := httptest.NewServer(m)
	defer srv.Close()
	dir := t.TempDir()
	q, _ := queue.Open(queue.Options{Dir: dir})
	for i := 0; i < 5; i++ {
		enqueue(t, q, 1)
	}
	// A previous run had entries 1-2 in flight when it died.
	if err := q.SetInflight(2); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q, _ = queue.Open(queue.Options{Dir: dir})
	defer q.Close()
	run(t, q, srv.URL, &counts{}, func() bool { _, n := m.state(); return n == 5 })
	batches, _ := m.state()
	if len(batches) != 2 || batches[0] != q.ID()+":1-2" || batches[1] != q.ID()+":3-5" {
		t.Errorf("batches %v, want the in-flight range 1-2 first, then 3-5", batches)
	}
}

func TestForwarderSplitsWhatTheManagerFindsTooLarge(t *testing.T) {
	m := &manager{script: []int{413, 302}} // then a redirect, retried rather than followed
	srv := httptest.NewServer(m)
	defer srv.Close()
	q, _ := queue.Open(queue.Options{Dir: t.TempDir()})
	defer q.Close()
	for i := 0; i < 4; i++ {
		enqueue(t, q, 1)
	}
	c := &counts{}
	run(t, q, srv.URL, c, func() bool { _, n := m.state(); return n == 4 })
	batches, _ := m.state()
	id := q.ID()
	if len(batches) != 2 || batches[0] != id+":1-2" || batches[1] != id+":3-4" {
		t.Errorf("batches %v, want the batch halved into %s:1-2 and %s:3-4", batches, id, id)
	}
	if c.dropped != 0 || c.retried != 1 {
		t.Errorf("dropped %d, retried %d; want 0 and 1 (the redirect)", c.dropped, c.retried)
	}
}

// One request joins entries of every size and encoding, decompressed through one
// reused buffer: each must arrive whole, in order, with nothing left over from the
// entry decoded before it.
func TestForwarderJoinsEntriesOfEverySizeAndEncoding(t *testing.T) {
	m := &manager{}
	srv := httptest.NewServer(m)
	defer srv.Close()
	q, _ := queue.Open(queue.Options{Dir: t.TempDir()})
	defer q.Close()
	var want []string
	for i, enc := range []string{"s2", "s2", "none", "s2", "zstd", "s2", "gzip", "s2"} {
		// Sizes go up and down, so a buffer sized for one entry is reused for a
		// smaller and a larger one.
		size := []int{5000, 40, 300, 20000, 7, 1, 900, 3}[i]
		body := strings.Repeat(string(rune('a'+i)), size)
		enqueueBodies(t, q, enc, body, fmt.Sprint(i))
		want = append(want, body, fmt.Sprint(i))
	}
	run(t, q, srv.URL, nil, func() bool { return q.Acked() == 8 })
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.Equal(m.bodies, want) {
		t.Errorf("the manager got %d records that differ from the %d queued", len(m.bodies), len(want))
	}
}

func TestForwarderSkipsOnlyTheUnreadableEntry(t *testing.T) {
	m := &manager{}
	srv := httptest.NewServer(m)
	defer srv.Close()
	q, _ := queue.Open(queue.Options{Dir: t.TempDir()})
	defer q.Close()
	enqueue(t, q, 2)
	bad, _ := (&Encoder{encoding: "s2"}).Append(nil, 5, []byte("request"))
	bad = bad[:len(bad)-3] // a truncated s2 block: its checksum in the queue is fine
	if _, err := q.Append(bad); err != nil {
		t.Fatal(err)
	}
	enqueue(t, q, 3)
	c := &counts{}
	run(t, q, srv.URL, c, func() bool { _, n := m.state(); return n == 5 })
	if c.dropped != 5 || c.sent != 5 {
		t.Errorf("dropped %d, sent %d; want the bad entry's 5 dropped and the other 5 sent", c.dropped, c.sent)
	}
}

func TestForwarderSendsOnlyWhatTheManagerDoesNotHave(t *testing.T) {
	m := &manager{had: 3} // the agent lost its position after entries 1-3 reached the manager
	srv := httptest.NewServer(m)
	defer srv.Close()
	q, _ := queue.Open(queue.Options{Dir: t.TempDir()})
	defer q.Close()
	for i := 0; i < 5; i++ {
		enqueue(t, q, 1)
	}
	c := &counts{}
	run(t, q, srv.URL, c, func() bool { return q.Acked() == 5 })
	batches, records := m.state()
	if len(batches) != 1 || batches[0] != q.ID()+":4-5" || records != 2 {
		t.Errorf("batches %v with %d records, want only %s:4-5 with 2", batches, records, q.ID())
	}
	if c.dropped != 0 {
		t.Errorf("dropped %d", c.dropped)
	}
}
