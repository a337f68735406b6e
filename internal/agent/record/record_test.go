package record

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func open(t *testing.T, o Options) *Record {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), DirName)
	}
	r, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return r
}

func summarise(t *testing.T, dir string, from, to time.Time) Summary {
	t.Helper()
	s, err := Summarise(dir, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func flush(t *testing.T, r *Record) {
	t.Helper()
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
}

// What the agent records comes back in the summary, the files are private to the
// agent's user, and they hold counts and keys but never a destination's credentials.
func TestRecordRoundTrip(t *testing.T) {
	c := clock.NewFake(t0)
	dir := filepath.Join(t.TempDir(), DirName)
	r := open(t, Options{Dir: dir, Clock: c})
	r.Sent("logs", 100, 2000, "https://agent:s3cret@manager.example/v1/logs?token=abc#frag")
	c.Advance(time.Second)
	r.Sent("traces", 40, 1000, "https://manager.example/v1/traces")
	r.Removed("logs", []Removal{{"email", "user.email", 3}, {"email", "log.body", 2}, {"card", "log.body", 1}})
	r.Removed("traces", []Removal{{"email", "user.email", 4}, {"dropped_record", "log.body", 0}})
	r.Removed("logs", []Removal{{"dropped_record", "log.body", 2}, {"truncated", "log.body", 5}})
	flush(t, r)

	s := summarise(t, dir, t0, t0.Add(time.Hour))
	if s.Batches != 2 || s.Bytes != 3000 || s.Records["logs"] != 100 || s.Records["traces"] != 40 {
		t.Errorf("sent totals = %d batches, %d bytes, %v records; want 2, 3000, logs 100 and traces 40", s.Batches, s.Bytes, s.Records)
	}
	if s.RemovedValues != 10 || len(s.Removed) != 2 || s.Removed[0].Kind != "email" || s.Removed[0].Count != 9 ||
		s.Removed[0].Keys[0] != (KeyCount{"user.email", 7}) || s.Removed[0].Signals["traces"] != 4 {
		t.Errorf("removed = %d values, %+v; want 10 with e-mail 9 (user.email 7, 4 of them in traces) first", s.RemovedValues, s.Removed)
	}
	if s.Dropped.Count != 2 || s.Dropped.Signals["logs"] != 2 || s.Truncated.Count != 5 {
		t.Errorf("dropped %+v, truncated %+v; want 2 log records dropped and 5 values truncated", s.Dropped, s.Truncated)
	}
	if !s.RecordStarts.Equal(t0) || s.DamagedLines != 0 {
		t.Errorf("record starts %s with %d damaged lines, want %s and none", s.RecordStarts, s.DamagedLines, t0)
	}

	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("record dir: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	var all []byte
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		all = append(all, b...)
	}
	for _, secret := range []string{"s3cret", "agent:", "token=abc", "frag"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("the record holds %q from the destination URL:\n%s", secret, all)
		}
	}
	if got := s.Destinations; len(got) != 2 || got[0].URL != "https://manager.example/v1/logs" {
		t.Errorf("destinations = %+v, want the two URLs without user info, query or fragment", got)
	}
}

// Each stream stays within MaxFiles files of at most MaxFileBytes, deleting the
// oldest, and the summary then says where the record now begins.
func TestRotationBoundsDisk(t *testing.T) {
	c := clock.NewFake(t0)
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: c, MaxFileBytes: MinMaxFileBytes, MaxFiles: 3})
	for i := range 400 {
		r.Sent("logs", 1, 10, "https://manager.example")
		r.Removed("logs", []Removal{{"email", fmt.Sprintf("key.%03d", i), 1}})
		if i%10 == 9 {
			flush(t, r)
		}
		c.Advance(time.Second)
	}
	for _, prefix := range []string{sentPrefix, removedPrefix} {
		files, err := listFiles(dir, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 3 {
			t.Errorf("%s files: %d, want 3 (MaxFiles)", prefix, len(files))
		}
		for _, f := range files {
			if st, _ := os.Stat(f.path); st.Size() > MinMaxFileBytes {
				t.Errorf("%s is %d bytes, over MaxFileBytes %d", f.path, st.Size(), MinMaxFileBytes)
			}
		}
	}
	s := summarise(t, dir, t0, t0.Add(time.Hour))
	if s.Batches == 0 || s.Batches >= 400 || !s.RecordStarts.After(t0) {
		t.Errorf("after rotation: %d batches from %s; want some but fewer than 400, from after %s", s.Batches, s.RecordStarts, t0)
	}
	// What is kept is the newest, in order: the last batch is there.
	last := summarise(t, dir, t0.Add(399*time.Second), t0.Add(400*time.Second))
	if last.Batches != 1 {
		t.Errorf("the newest second holds %d batches, want 1", last.Batches)
	}
}

// One interval aggregates at most MaxKeysPerInterval distinct keys; the rest count
// under OtherKey, and an overlong key is cut, so a hostile application cannot grow
// the agent's memory or the record.
func TestRemovedKeysAreBounded(t *testing.T) {
	c := clock.NewFake(t0)
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: c})
	long := strings.Repeat("k", 1000)
	r.Removed("logs", []Removal{{"secret", long, 1}})
	for i := range MaxKeysPerInterval + 500 {
		r.Removed("logs", []Removal{{"email", fmt.Sprintf("attr.%d", i), 2}})
	}
	flush(t, r)
	s := summarise(t, dir, t0, t0.Add(time.Minute))
	var email, secret KindTotal
	for _, k := range s.Removed {
		switch k.Kind {
		case "email":
			email = k
		case "secret":
			secret = k
		}
	}
	if len(secret.Keys) != 1 || len(secret.Keys[0].Key) != maxKeyLen {
		t.Errorf("an overlong key came back as %+v, want one key cut to %d bytes", secret.Keys, maxKeyLen)
	}
	if email.Count != 2*(MaxKeysPerInterval+500) || len(email.Keys) != MaxKeysPerInterval || email.Keys[0] != (KeyCount{OtherKey, 2 * 501}) {
		t.Errorf("e-mail: %d values under %d keys, first %+v; want %d under %d keys with %s holding %d",
			email.Count, len(email.Keys), email.Keys[0], 2*(MaxKeysPerInterval+500), MaxKeysPerInterval, OtherKey, 2*501)
	}
	// The bound is per interval: the next one has room again.
	r.Removed("logs", []Removal{{"email", "attr.new", 1}})
	c.Advance(time.Second)
	flush(t, r)
	if s := summarise(t, dir, t0.Add(time.Second), t0.Add(time.Minute)); len(s.Removed) != 1 || s.Removed[0].Keys[0].Key != "attr.new" {
		t.Errorf("the next interval's removals = %+v, want attr.new by name", s.Removed)
	}
}

// A crash mid-write leaves a torn last line: the summary skips it, counts it and
// still totals the rest, and an agent started again writes after it cleanly.
func TestTornLastLine(t *testing.T) {
	c := clock.NewFake(t0)
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: c})
	r.Sent("logs", 10, 100, "https://manager.example")
	r.Removed("logs", []Removal{{"email", "user.email", 1}})
	flush(t, r)
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{sentPrefix, removedPrefix} {
		f, err := os.OpenFile(filepath.Join(dir, fileName(prefix, 1)), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString(`{"time":"2026-12-05T10:00:01Z","signal":"lo`)
		f.Close()
	}
	s := summarise(t, dir, t0, t0.Add(time.Hour))
	if s.DamagedLines != 2 || s.Batches != 1 || s.RemovedValues != 1 {
		t.Errorf("torn files: %d damaged, %d batches, %d removed; want 2, 1, 1", s.DamagedLines, s.Batches, s.RemovedValues)
	}
	var text bytes.Buffer
	_ = s.WriteText(&text)
	if !strings.Contains(text.String(), "2 lines of the record could not be read and were skipped") {
		t.Errorf("the text does not mention the torn lines:\n%s", text.String())
	}

	c.Advance(time.Second)
	r2 := open(t, Options{Dir: dir, Clock: c})
	r2.Sent("logs", 5, 50, "https://manager.example")
	r2.Removed("logs", []Removal{{"email", "user.email", 4}})
	flush(t, r2)
	s = summarise(t, dir, t0, t0.Add(time.Hour))
	if s.DamagedLines != 2 || s.Batches != 2 || s.Records["logs"] != 15 || s.RemovedValues != 5 {
		t.Errorf("after a restart: %d damaged, %d batches, %d log records, %d removed; want 2, 2, 15, 5",
			s.DamagedLines, s.Batches, s.Records["logs"], s.RemovedValues)
	}
	if files, _ := listFiles(dir, sentPrefix); len(files) != 1 {
		t.Errorf("the restarted agent wrote %d sent files, want it to append to the one there", len(files))
	}
}

// The summary counts exactly the lines in [from, to), and does not read files whose
// first and last lines put them wholly outside it.
func TestTimeRange(t *testing.T) {
	c := clock.NewFake(t0)
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: c, MaxFileBytes: MinMaxFileBytes})
	for range 3 * 60 { // three hours, a batch a minute
		r.Sent("metrics", 7, 70, "https://manager.example")
		flush(t, r)
		c.Advance(time.Minute)
	}
	files, _ := listFiles(dir, sentPrefix)
	if len(files) < 3 {
		t.Fatalf("%d sent files, want several for this test", len(files))
	}
	// Damage the middle of the oldest file: a summary of the last hour must not see it.
	oldest, _ := os.ReadFile(files[0].path)
	mid := bytes.IndexByte(oldest[len(oldest)/2:], '\n') + len(oldest)/2 + 1
	damaged := append(append(append([]byte{}, oldest[:mid]...), "not json\n"...), oldest[mid:]...)
	if err := os.WriteFile(files[0].path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		from, to time.Duration
		batches  int64
		damaged  int64
	}{
		{0, 3 * time.Hour, 180, 1},
		{time.Hour, 2 * time.Hour, 60, 0},
		{2 * time.Hour, 3 * time.Hour, 60, 0},
		{90 * time.Minute, 90*time.Minute + time.Second, 1, 0},
		{3 * time.Hour, 4 * time.Hour, 0, 0},
		{-time.Hour, 0, 0, 0},
	} {
		s := summarise(t, dir, t0.Add(tc.from), t0.Add(tc.to))
		if s.Batches != tc.batches || s.Records["metrics"] != 7*tc.batches || s.DamagedLines != tc.damaged {
			t.Errorf("[%s, %s): %d batches, %d points, %d damaged; want %d, %d, %d", tc.from, tc.to,
				s.Batches, s.Records["metrics"], s.DamagedLines, tc.batches, 7*tc.batches, tc.damaged)
		}
	}
}

// A clock stepped back starts a new file, so no file's times go backwards and the
// summary still finds every line by its own time.
func TestClockSteppedBack(t *testing.T) {
	c := clock.NewFake(t0.Add(time.Hour))
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: c})
	r.Sent("logs", 1, 1, "https://manager.example")
	flush(t, r)
	c.Set(t0) // NTP stepped the clock back an hour
	r.Sent("logs", 2, 2, "https://manager.example")
	flush(t, r)
	if files, _ := listFiles(dir, sentPrefix); len(files) != 2 {
		t.Errorf("%d sent files after the clock stepped back, want 2", len(files))
	}
	if s := summarise(t, dir, t0, t0.Add(time.Minute)); s.Records["logs"] != 2 {
		t.Errorf("the first minute holds %d records, want the 2 sent after the step", s.Records["logs"])
	}
	if s := summarise(t, dir, t0.Add(time.Hour), t0.Add(2*time.Hour)); s.Records["logs"] != 1 {
		t.Errorf("the second hour holds %d records, want the 1 sent before the step", s.Records["logs"])
	}
}

// Forwarders and the hot path call Sent and Removed at once while the loop and
// Flush write: every count arrives once.
func TestConcurrentCallers(t *testing.T) {
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: clock.NewFake(t0), FlushInterval: time.Millisecond})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r.Sent("traces", 3, 30, "https://manager.example")
				r.Removed("traces", []Removal{{"ip", fmt.Sprintf("k%d", (w*each+i)%50), 1}, {"jwt", "http.request.header.authorization", 2}})
				if i%100 == 0 {
					_ = r.Flush()
				}
			}
		})
	}
	wg.Wait()
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := summarise(t, dir, t0, t0.Add(time.Second))
	if s.Batches != workers*each || s.Records["traces"] != 3*workers*each || s.RemovedValues != 3*workers*each {
		t.Errorf("%d batches, %d spans, %d removed; want %d, %d, %d", s.Batches, s.Records["traces"], s.RemovedValues,
			workers*each, 3*workers*each, 3*workers*each)
	}
}

// Batches that come faster than the loop writes are folded into one line per signal
// and destination past a bound, and still counted exactly.
func TestSentBurstIsFolded(t *testing.T) {
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: clock.NewFake(t0)})
	const n = maxPendingSent + 5000
	for i := range n {
		r.Sent("logs", 2, 20, fmt.Sprintf("https://m%d.example", i%2))
	}
	flush(t, r)
	s := summarise(t, dir, t0, t0.Add(time.Second))
	if s.Batches != n || s.Records["logs"] != 2*n || s.Bytes != 20*n || len(s.Destinations) != 2 || s.Destinations[0].Batches != n/2 {
		t.Errorf("burst: %d batches, %d records, %d bytes, destinations %+v; want %d, %d, %d, two of %d each",
			s.Batches, s.Records["logs"], s.Bytes, s.Destinations, n, 2*n, 20*n, n/2)
	}
	if lines := countLines(t, dir, sentPrefix); lines > maxPendingSent+2 {
		t.Errorf("%d sent lines for the burst, want at most %d", lines, maxPendingSent+2)
	}
}

func countLines(t *testing.T, dir, prefix string) int {
	t.Helper()
	files, _ := listFiles(dir, prefix)
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		n += bytes.Count(b, []byte("\n"))
	}
	return n
}

// The loop writes once per FlushInterval with nothing calling Flush, and Shutdown
// writes what the last interval held.
func TestFlushLoopWritesEachInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		r, err := Open(Options{Dir: dir, FlushInterval: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r.Removed("logs", []Removal{{"email", "user.email", 1}})
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if n := countLines(t, dir, removedPrefix); n != 0 {
			t.Errorf("%d lines before the interval ended, want 0", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := countLines(t, dir, removedPrefix); n != 1 {
			t.Errorf("%d lines once the interval ended, want 1", n)
		}
		r.Removed("logs", []Removal{{"email", "user.email", 2}})
		if err := r.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := r.Shutdown(context.Background()); err != nil {
			t.Errorf("a second Shutdown: %v", err)
		}
		if s := summarise(t, dir, start, time.Now().Add(time.Second)); s.RemovedValues != 3 {
			t.Errorf("after Shutdown the record holds %d removed values, want 3", s.RemovedValues)
		}
	})
}

// Open refuses bounds that would not bound anything, and Shutdown without Start
// writes what is pending.
func TestOpenOptions(t *testing.T) {
	for _, o := range []Options{{}, {Dir: t.TempDir(), MaxFileBytes: 100}, {Dir: t.TempDir(), MaxFiles: -1}, {Dir: t.TempDir(), FlushInterval: -time.Second}} {
		if _, err := Open(o); err == nil {
			t.Errorf("Open(%+v) succeeded, want an error", o)
		}
	}
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Open wrote %d files before anything was recorded", len(entries))
	}
	r.Sent("logs", 1, 1, "https://manager.example")
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := summarise(t, dir, t0, t0.Add(time.Second)); s.Batches != 1 {
		t.Errorf("Shutdown without Start left %d batches in the record, want 1", s.Batches)
	}
	if err := r.Start(context.Background()); err == nil {
		t.Error("Start after Shutdown succeeded, want an error (its loop would never stop)")
	}
}

// Batches recorded at once by many forwarders, on the wall clock, land in one file:
// their times are taken in the order they are written, so none looks like a clock
// stepped back and forces a rotation that would push history out early.
func TestConcurrentSentKeepsOneFile(t *testing.T) {
	dir := t.TempDir()
	r := open(t, Options{Dir: dir})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 2000 {
				r.Sent("logs", 1, 1, "https://manager.example")
				if i%200 == 0 {
					_ = r.Flush()
				}
			}
		})
	}
	wg.Wait()
	flush(t, r)
	if files, _ := listFiles(dir, sentPrefix); len(files) != 1 {
		t.Errorf("%d sent files after concurrent batches, want 1", len(files))
	}
}

// Sent and Removed run on the agent's hot paths: once a key or destination has been
// seen in an interval, recording it again allocates nothing.
func TestRecordingIsCheap(t *testing.T) {
	r := open(t, Options{Dir: t.TempDir(), Clock: clock.NewFake(t0)})
	items := []Removal{{"email", "user.email", 1}, {"card", "log.body", 2}}
	r.Removed("logs", items)
	if n := testing.AllocsPerRun(1000, func() { r.Removed("logs", items) }); n != 0 {
		t.Errorf("Removed of known keys allocates %.1f times, want 0", n)
	}
	r.Sent("logs", 1, 1, "https://manager.example/v1/logs")
	if n := testing.AllocsPerRun(1000, func() { r.Sent("logs", 1, 1, "https://manager.example/v1/logs") }); n > 0.1 {
		t.Errorf("Sent allocates %.1f times a batch, want 0 (amortised)", n)
	}
}
