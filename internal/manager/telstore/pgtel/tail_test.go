package pgtel

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telstoretest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

// holdNext makes s's next write transaction wait, once its rows, rollups and
// marks are written and before it commits, until release is closed; held is
// closed when it waits.
func holdNext(s *Store) (held <-chan struct{}, release chan<- struct{}) {
	h, r := make(chan struct{}), make(chan struct{})
	var once sync.Once
	// Set before the batch is sent: the gate's channel orders this write
	// before the writer goroutine's read.
	s.w.beforeCommit = func() { once.Do(func() { close(h); <-r }) }
	return h, r
}

// consumeAsync sends s a batch of n log records of dep from queue stream and
// delivers Consume's answer.
func consumeAsync(t *testing.T, s *Store, dep telstoretest.Dep, stream string, n int) <-chan error {
	b := streamed(t, stream, 1, n)
	if dep != telstoretest.AcmeOld {
		specs := make([]telstoretest.LogSpec, n)
		for i := range specs {
			specs[i] = telstoretest.LogSpec{At: t0, Severity: plog.SeverityNumberInfo, Body: fmt.Sprintf("%s #%d", stream, i+1)}
		}
		b = telstoretest.LogBatch(t, dep, specs...)
		b.Stream, b.First, b.Last = stream, 1, uint64(n)
	}
	done := make(chan error, 1)
	go func() { done <- s.Consume(context.Background(), b) }()
	return done
}

func await[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: nothing in 20s", what)
		panic("unreachable")
	}
}

// startTail starts a log tail on s and returns the bodies it shows, once it
// is listening: it starts from the newest row when it begins, so probes are
// sent until it shows one. The probes also create the partitions the rows go
// to, so writers held later need no partition change (which waits for them).
func startTail(t *testing.T, s *Store) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	seen := make(chan string, 100)
	go func() {
		_ = s.TailLogs(ctx, telquery.LogQuery{}, func(l telquery.Log) error { seen <- l.Body; return nil })
	}()
	for probe, listening := 0, false; !listening; probe++ {
		if err := s.Consume(ctx, streamed(t, fmt.Sprintf("probe-%d", probe), 1, 1)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-seen:
			listening = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	for len(seen) > 0 {
		<-seen
	}
	return seen
}

// TestATailMissesNoRowOfAWriterThatCommitsLate: writers on several replicas
// commit at once, so a row numbered early may commit after rows numbered
// later. Here replica "first" numbers its rows and stays open, then "late"
// does, then a third replica commits rows numbered after both; first commits,
// and only then late. A tail must show every row once, in the order they were
// numbered, holding back what follows a still-open writer's rows rather than
// skip them.
func TestATailMissesNoRowOfAWriterThatCommitsLate(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	set := Settings{Clock: clock.NewFake(t0.Add(time.Hour)), TailPoll: 5 * time.Millisecond, RetainEvery: -1}
	tailer := open(t, url, set)
	ctx := context.Background()
	seen := startTail(t, tailer)
	first, late := open(t, url, set), open(t, url, set)

	firstHeld, releaseFirst := holdNext(first)
	firstDone := consumeAsync(t, first, telstoretest.AcmeOld, "first", 3)
	await(t, firstHeld, "first's write")
	// Another deployment's: a replica's first write of a resource in an hour
	// marks it (markResources), and waits for first's mark of the same one.
	lateHeld, releaseLate := holdNext(late)
	lateDone := consumeAsync(t, late, telstoretest.AcmeNew, "late", 3)
	await(t, lateHeld, "late's write (it must not wait for first's)")
	// Numbered after both open writers' rows, committed before either.
	if err := tailer.Consume(ctx, streamed(t, "after", 1, 3)); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-seen:
		t.Fatalf("the tail showed %q while the writers before it were open", b)
	default:
	}

	close(releaseFirst)
	if err := await(t, firstDone, "first's commit"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 3 {
		got = append(got, await(t, seen, fmt.Sprintf("the tail after first committed (so far %q)", got)))
	}
	close(releaseLate)
	if err := await(t, lateDone, "late's commit"); err != nil {
		t.Fatal(err)
	}
	for len(got) < 9 {
		got = append(got, await(t, seen, fmt.Sprintf("the tail after late committed (so far %q)", got)))
	}
	want := []string{"first #1", "first #2", "first #3", "late #1", "late #2", "late #3", "after #1", "after #2", "after #3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the tail showed %q, want %q", got, want)
	}
}

// TestATailIsNotHeldBackByAReplicaThatDiedMidWrite: a replica killed with its
// transaction open leaves its floor in log_writers, but its transaction ended
// with its connection, so tails go on past it without any expiry.
func TestATailIsNotHeldBackByAReplicaThatDiedMidWrite(t *testing.T) {
	url := testenv.PostgresDatabase(t)
	set := Settings{Clock: clock.NewFake(t0.Add(time.Hour)), TailPoll: 5 * time.Millisecond, RetainEvery: -1}
	tailer := open(t, url, set)
	ctx := context.Background()
	seen := startTail(t, tailer)
	dying := open(t, url, set)
	held, release := holdNext(dying)
	dyingDone := consumeAsync(t, dying, telstoretest.AcmeNew, "dying", 3)
	await(t, held, "the dying replica's write")
	if err := tailer.Consume(ctx, streamed(t, "after", 1, 2)); err != nil {
		t.Fatal(err)
	}
	// The held transaction is the only one open in this database.
	var killed bool
	if err := tailer.pool.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction'`).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the held writer: %v %v", killed, err)
	}
	var got []string
	for len(got) < 2 {
		got = append(got, await(t, seen, fmt.Sprintf("the tail after the writer died (so far %q)", got)))
	}
	if fmt.Sprint(got) != fmt.Sprint([]string{"after #1", "after #2"}) {
		t.Fatalf("the tail showed %q, want the rows committed after the dead writer's", got)
	}
	close(release)
	if err := await(t, dyingDone, "the dead writer's answer"); err == nil {
		t.Fatal("a write whose connection died mid-transaction was acknowledged")
	}
}
