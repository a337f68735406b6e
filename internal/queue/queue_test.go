package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/clock"
)

// crashChildEnv makes the test binary act as the appender TestCrashRecovery kills.
const crashChildEnv = "QUEUE_TEST_CRASH_CHILD_DIR"

// TestMain runs the crash child when asked to, and otherwise the tests, failing
// them if a goroutine outlives them.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	goleak.VerifyTestMain(m)
}

func openQueue(t testing.TB, opts Options) *Queue {
	t.Helper()
	q, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func mustAppend(t testing.TB, q *Queue, data []byte) uint64 {
	t.Helper()
	seq, err := q.Append(data)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

// readN reads exactly n records after seq after, failing if they don't come.
func readN(t testing.TB, q *Queue, after uint64, n int) []Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Record
	for len(out) < n {
		recs, err := q.Read(ctx, after, n-len(out), 0)
		if err != nil {
			t.Fatalf("Read after %d (have %d of %d records): %v", after, len(out), n, err)
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
	return out
}

// expectNoRecords checks that nothing is readable after seq after.
func expectNoRecords(t testing.TB, q *Queue, after uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	recs, err := q.Read(ctx, after, 0, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read after %d = %d records, %v; want none", after, len(recs), err)
	}
}

func payload(i int) []byte { return []byte(fmt.Sprintf("record-%d-%s", i, strings.Repeat("x", i%50))) }

func seqs(recs []Record) []uint64 {
	var s []uint64
	for _, r := range recs {
		s = append(s, r.Seq)
	}
	return s
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	q := openQueue(t, Options{Dir: t.TempDir()})
	for i := 1; i <= 100; i++ {
		if seq := mustAppend(t, q, payload(i)); seq != uint64(i) {
			t.Fatalf("Append #%d got seq %d", i, seq)
		}
	}

	recs := readN(t, q, 0, 100)
	for i, r := range recs {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Data, payload(i+1)) {
			t.Fatalf("record %d = seq %d %q; want seq %d %q", i, r.Seq, r.Data, i+1, payload(i+1))
		}
	}
	expectNoRecords(t, q, 100)

	// Limits: maxRecords, maxBytes, and at least one record however small maxBytes is.
	ctx := context.Background()
	if recs, err := q.Read(ctx, 0, 7, 0); err != nil || !slices.Equal(seqs(recs), seqRange(1, 7)) {
		t.Errorf("Read(max 7 records) = %v, %v", seqs(recs), err)
	}
	if recs, err := q.Read(ctx, 10, 0, 1); err != nil || !slices.Equal(seqs(recs), []uint64{11}) {
		t.Errorf("Read(max 1 byte) = %v, %v; want just 11", seqs(recs), err)
	}
	two := len(payload(21)) + len(payload(22))
	if recs, err := q.Read(ctx, 20, 0, two); err != nil || !slices.Equal(seqs(recs), []uint64{21, 22}) {
		t.Errorf("Read(max %d bytes) = %v, %v; want 21, 22", two, seqs(recs), err)
	}

	if err := q.Ack(40); err != nil {
		t.Fatal(err)
	}
	if q.Acked() != 40 {
		t.Errorf("Acked = %d, want 40", q.Acked())
	}
	// Reading from before the acknowledged mark starts after it.
	if recs, err := q.Read(ctx, 0, 1, 0); err != nil || recs[0].Seq != 41 {
		t.Errorf("Read after 0 once 40 is acked = %v, %v; want 41", seqs(recs), err)
	}
	st := q.Stats()
	if st.Records != 60 || st.Appended != 100 || st.Delivered != 40 {
		t.Errorf("Stats = %+v; want 60 records, 100 appended, 40 delivered", st)
	}
	var want int64
	for i := 41; i <= 100; i++ {
		want += int64(headerSize + len(payload(i)))
	}
	if st.Bytes != want {
		t.Errorf("Stats.Bytes = %d, want %d", st.Bytes, want)
	}
}

func TestReopenKeepsRecordsIDAndMarks(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, Options{Dir: dir})
	id := q.ID()
	if len(id) != 32 {
		t.Errorf("ID %q, want 32 hex digits", id)
	}
	for i := 1; i <= 10; i++ {
		mustAppend(t, q, payload(i))
	}
	if err := q.Ack(4); err != nil {
		t.Fatal(err)
	}
	if err := q.SetInflight(7); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	q = openQueue(t, Options{Dir: dir})
	if q.ID() != id {
		t.Errorf("ID after reopen = %q, want %q", q.ID(), id)
	}
	if q.Acked() != 4 || q.Inflight() != 7 {
		t.Errorf("after reopen Acked = %d, Inflight = %d; want 4, 7", q.Acked(), q.Inflight())
	}
	if st := q.Stats(); st.Records != 6 || st.CorruptBytes != 0 {
		t.Errorf("Stats after reopen = %+v; want 6 records, no corrupt bytes", st)
	}
	recs := readN(t, q, 0, 6)
	for _, r := range recs {
		if !bytes.Equal(r.Data, payload(int(r.Seq))) {
			t.Errorf("record %d = %q after reopen", r.Seq, r.Data)
		}
	}
	if !slices.Equal(seqs(recs), seqRange(5, 10)) {
		t.Errorf("records after reopen = %v, want 5..10", seqs(recs))
	}
	if seq := mustAppend(t, q, []byte("new")); seq != 11 {
		t.Errorf("first Append after reopen got seq %d, want 11", seq)
	}
}

func TestSeqsNotReusedOnceDeleted(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, Options{Dir: dir})
	for range 5 {
		mustAppend(t, q, []byte("x"))
	}
	if err := q.Ack(5); err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = openQueue(t, Options{Dir: dir})
	if files := segmentFiles(t, dir); len(files) != 0 {
		t.Errorf("segments left after reopening an acknowledged queue: %v", files)
	}
	if seq := mustAppend(t, q, []byte("y")); seq != 6 {
		t.Errorf("Append after everything was acked and deleted got seq %d, want 6", seq)
	}
}

func TestWipedDirGetsNewID(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, Options{Dir: dir})
	id := q.ID()
	mustAppend(t, q, []byte("x"))
	q.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, Options{Dir: dir})
	if q.ID() == id {
		t.Errorf("wiped directory kept id %s", id)
	}
	if seq := mustAppend(t, q, []byte("x")); seq != 1 {
		t.Errorf("first seq of a wiped queue = %d, want 1", seq)
	}
}

func TestTornLastRecord(t *testing.T) {
	last := payload(10)
	cases := []struct {
		name        string
		damage      func(b []byte) []byte
		wantCorrupt uint64
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-5] }, uint64(headerSize + len(last) - 5)},
		{"truncated in header", func(b []byte) []byte { return b[:len(b)-len(last)-10] }, headerSize - 10},
		{"flipped byte", func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b }, uint64(headerSize + len(last))},
		{"zeroed tail", func(b []byte) []byte { clear(b[len(b)-len(last)-headerSize:]); return b }, uint64(headerSize + len(last))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			q := openQueue(t, Options{Dir: dir})
			for i := 1; i <= 10; i++ {
				mustAppend(t, q, payload(i))
			}
			q.Close()

			files := segmentFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("segments = %v, want one", files)
			}
			path := filepath.Join(dir, files[0])
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}

			q = openQueue(t, Options{Dir: dir})
			if got := q.Stats().CorruptBytes; got != tc.wantCorrupt {
				t.Errorf("CorruptBytes = %d, want %d", got, tc.wantCorrupt)
			}
			recs := readN(t, q, 0, 9)
			for i, r := range recs {
				if r.Seq != uint64(i+1) || !bytes.Equal(r.Data, payload(i+1)) {
					t.Errorf("record %d = seq %d %q", i, r.Seq, r.Data)
				}
			}
			expectNoRecords(t, q, 9)

			// Seq 10 was handed out before the damage, so it must not be reused.
			seq := mustAppend(t, q, []byte("after"))
			if seq <= 10 {
				t.Errorf("Append after repair got seq %d, want above 10", seq)
			}
			if recs := readN(t, q, 9, 1); recs[0].Seq != seq || string(recs[0].Data) != "after" {
				t.Errorf("read back %d %q, want %d \"after\"", recs[0].Seq, recs[0].Data, seq)
			}
			q.Close()

			// The torn tail was cut off, so it is not counted again.
			q = openQueue(t, Options{Dir: dir})
			if got := q.Stats().CorruptBytes; got != 0 {
				t.Errorf("CorruptBytes on the next open = %d, want 0", got)
			}
			if got := q.Stats().Records; got != 10 {
				t.Errorf("Records on the next open = %d, want 10", got)
			}
		})
	}
}

func TestCorruptOlderSegment(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("d"), 100)
	size := headerSize + len(data)
	q := openQueue(t, Options{Dir: dir, SegmentBytes: int64(4 * size)})
	for range 12 {
		mustAppend(t, q, data)
	}
	q.Close()

	files := segmentFiles(t, dir)
	if len(files) != 3 {
		t.Fatalf("segments = %v, want 3", files)
	}
	// Damage the second record of the first segment: records 2-4 become unreadable.
	path := filepath.Join(dir, files[0])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[size+headerSize+1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	q = openQueue(t, Options{Dir: dir})
	if got, want := q.Stats().CorruptBytes, uint64(3*size); got != want {
		t.Errorf("CorruptBytes = %d, want %d", got, want)
	}
	recs := readN(t, q, 0, 9)
	if want := append([]uint64{1}, seqRange(5, 12)...); !slices.Equal(seqs(recs), want) {
		t.Errorf("records = %v, want %v", seqs(recs), want)
	}
	if seq := mustAppend(t, q, data); seq != 13 {
		t.Errorf("Append got seq %d, want 13", seq)
	}
}

func TestCorruptionFoundWhileReading(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, Options{Dir: dir})
	for i := 1; i <= 5; i++ {
		mustAppend(t, q, payload(i))
	}
	// Damage record 3 on disk behind the open queue's back, as a failing disk would.
	files := segmentFiles(t, dir)
	f, err := os.OpenFile(filepath.Join(dir, files[0]), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(2*headerSize + len(payload(1)) + len(payload(2)) + headerSize)
	if _, err := f.WriteAt([]byte{'#'}, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if recs := readN(t, q, 0, 4); !slices.Equal(seqs(recs), []uint64{1, 2, 4, 5}) {
		t.Errorf("records = %v, want 1, 2, 4, 5", seqs(recs))
	}
	st := q.Stats()
	if want := uint64(headerSize + len(payload(3))); st.CorruptBytes != want || st.Records != 4 {
		t.Errorf("Stats = %+v; want %d corrupt bytes, 4 records", st, want)
	}
}

func TestAckBeyondWritten(t *testing.T) {
	q := openQueue(t, Options{Dir: t.TempDir()})
	for range 3 {
		mustAppend(t, q, []byte("x"))
	}
	if err := q.Ack(100); err != nil {
		t.Fatal(err)
	}
	if q.Acked() != 3 {
		t.Errorf("Acked = %d after Ack(100) of 3 records, want 3", q.Acked())
	}
	// Records appended later are not acknowledged in advance.
	seq := mustAppend(t, q, []byte("later"))
	if recs := readN(t, q, 0, 1); recs[0].Seq != seq {
		t.Errorf("read %d, want %d", recs[0].Seq, seq)
	}
}

func TestOverlappingSegmentIgnored(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("v"), 100)
	size := headerSize + len(data)
	q := openQueue(t, Options{Dir: dir, SegmentBytes: int64(4 * size)})
	for range 8 {
		mustAppend(t, q, data)
	}
	q.Close()
	// A stray file claiming to start at seq 3, holding valid copies of records 3 and 4,
	// which the first segment already has.
	b, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segmentName(3)), b[2*size:], 0o600); err != nil {
		t.Fatal(err)
	}

	q = openQueue(t, Options{Dir: dir})
	if got := q.Stats().CorruptBytes; got != uint64(2*size) {
		t.Errorf("CorruptBytes = %d, want %d", got, 2*size)
	}
	if recs := readN(t, q, 0, 8); !slices.Equal(seqs(recs), seqRange(1, 8)) {
		t.Errorf("records = %v, want 1..8 once each", seqs(recs))
	}
	expectNoRecords(t, q, 8)
}

func TestRefuseWhenFull(t *testing.T) {
	data := bytes.Repeat([]byte("r"), 100)
	size := int64(headerSize + len(data))
	q := openQueue(t, Options{Dir: t.TempDir(), MaxBytes: 10 * size})
	for range 10 {
		mustAppend(t, q, data)
	}
	if _, err := q.Append(data); !errors.Is(err, ErrFull) {
		t.Fatalf("Append to a full queue: %v, want ErrFull", err)
	}
	if st := q.Stats(); st.Records != 10 || st.Bytes != 10*size || st.DroppedRecords != 0 {
		t.Errorf("Stats = %+v; want 10 records of %d bytes, none dropped", st, 10*size)
	}
	if recs := readN(t, q, 0, 10); !slices.Equal(seqs(recs), seqRange(1, 10)) {
		t.Errorf("records = %v, want 1..10", seqs(recs))
	}
	if err := q.Ack(2); err != nil {
		t.Fatal(err)
	}
	if seq := mustAppend(t, q, data); seq != 11 {
		t.Errorf("Append after Ack got seq %d, want 11", seq)
	}
}

func TestDropOldest(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("o"), 100)
	size := int64(headerSize + len(data))
	q := openQueue(t, Options{Dir: dir, MaxBytes: 5 * size, SegmentBytes: 2 * size, OnFull: DropOldest})
	for i := 1; i <= 8; i++ {
		mustAppend(t, q, data)
	}
	st := q.Stats()
	if st.DroppedRecords != 3 || st.DroppedBytes != uint64(3*size) || st.Records != 5 {
		t.Errorf("Stats = %+v; want 3 dropped (%d bytes), 5 left", st, 3*size)
	}
	if recs := readN(t, q, 0, 5); !slices.Equal(seqs(recs), seqRange(4, 8)) {
		t.Errorf("records = %v, want 4..8", seqs(recs))
	}

	// With nobody acknowledging, disk use stays bounded.
	for range 100 {
		mustAppend(t, q, data)
	}
	if files := segmentFiles(t, dir); len(files) > 4 {
		t.Errorf("%d segment files after dropping, want at most 4: %v", len(files), files)
	}
	// The five the reader holds may be on their way: they count once the reader
	// says whether it sent them, here by reading from the start again.
	if st := q.Stats(); st.DroppedRecords != 98 || st.Records != 5 {
		t.Errorf("Stats = %+v; want 98 dropped, 5 left", st)
	}
	if recs := readN(t, q, 0, 5); !slices.Equal(seqs(recs), seqRange(104, 108)) {
		t.Errorf("records = %v, want 104..108", seqs(recs))
	}
	if st := q.Stats(); st.DroppedRecords != 103 || st.Records != 5 {
		t.Errorf("Stats = %+v; want 103 dropped, 5 left", st)
	}
	q.Close()

	// The drops were saved: they don't come back.
	q = openQueue(t, Options{Dir: dir, MaxBytes: 5 * size, OnFull: DropOldest})
	if recs := readN(t, q, 0, 5); !slices.Equal(seqs(recs), seqRange(104, 108)) {
		t.Errorf("records after reopen = %v, want 104..108", seqs(recs))
	}
}

func TestMaxAge(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	q := openQueue(t, Options{Dir: t.TempDir(), MaxAge: time.Hour, Clock: clk})
	for i := 1; i <= 3; i++ {
		mustAppend(t, q, payload(i))
	}
	clk.Advance(30 * time.Minute)
	if got := q.Stats().OldestAge; got != 30*time.Minute {
		t.Errorf("OldestAge = %v, want 30m", got)
	}
	clk.Advance(90 * time.Minute)
	mustAppend(t, q, payload(4))
	mustAppend(t, q, payload(5))

	recs := readN(t, q, 0, 2)
	if !slices.Equal(seqs(recs), []uint64{4, 5}) {
		t.Fatalf("records = %v, want 4, 5", seqs(recs))
	}
	if !recs[0].Time.Equal(clk.Now()) {
		t.Errorf("record time %v, want %v", recs[0].Time, clk.Now())
	}
	st := q.Stats()
	size := uint64(3*headerSize + len(payload(1)) + len(payload(2)) + len(payload(3)))
	if st.DroppedRecords != 3 || st.DroppedBytes != size || st.Records != 2 {
		t.Errorf("Stats = %+v; want 3 dropped (%d bytes), 2 left", st, size)
	}
	if q.Acked() != 3 {
		t.Errorf("Acked = %d, want 3: expired records at the head are acknowledged", q.Acked())
	}
}

func TestMaxAgeBehindRecordsInFlight(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	q := openQueue(t, Options{Dir: t.TempDir(), MaxAge: time.Hour, Clock: clk})
	mustAppend(t, q, payload(1))
	inFlight := readN(t, q, 0, 1)
	mustAppend(t, q, payload(2))
	mustAppend(t, q, payload(3))
	clk.Advance(2 * time.Hour)
	mustAppend(t, q, payload(4))

	if recs := readN(t, q, inFlight[0].Seq, 1); recs[0].Seq != 4 {
		t.Fatalf("record after 1 = %d, want 4", recs[0].Seq)
	}
	if q.Acked() != 0 {
		t.Errorf("Acked = %d; record 1 is still in flight, so nothing may be acknowledged", q.Acked())
	}
	// Reading the same range again doesn't count the drops twice.
	readN(t, q, 1, 1)
	if err := q.Ack(4); err != nil {
		t.Fatal(err)
	}
	st := q.Stats()
	if st.DroppedRecords != 2 || st.Delivered != 2 || st.Records != 0 {
		t.Errorf("Stats = %+v; want 2 dropped, 2 delivered, 0 left", st)
	}
}

func TestConcurrentAppendAndRead(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", durable), func(t *testing.T) {
			const writers, each = 8, 1000
			dir := t.TempDir()
			q := openQueue(t, Options{Dir: dir, Sync: durable, SegmentBytes: 32 << 10})

			// A reader acknowledging as it goes, so segments are deleted under the writers.
			type got struct {
				recs []Record
				err  error
			}
			done := make(chan got)
			go func() {
				var all []Record
				var after uint64
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				for len(all) < writers*each {
					recs, err := q.Read(ctx, after, 100, 0)
					if err != nil {
						done <- got{all, err}
						return
					}
					all = append(all, recs...)
					after = recs[len(recs)-1].Seq
					if err := q.Ack(after); err != nil {
						done <- got{all, err}
						return
					}
				}
				done <- got{all, nil}
			}()

			var wg sync.WaitGroup
			appended := make([][]uint64, writers)
			for w := range writers {
				wg.Go(func() {
					for i := range each {
						seq, err := q.Append(fmt.Appendf(nil, "%d/%d", w, i))
						if err != nil {
							t.Errorf("Append: %v", err)
							return
						}
						appended[w] = append(appended[w], seq)
					}
				})
			}
			wg.Wait()
			res := <-done
			if res.err != nil {
				t.Fatalf("reader: %v", res.err)
			}

			if !slices.Equal(seqs(res.recs), seqRange(1, writers*each)) {
				t.Fatalf("read %d records, not seqs 1..%d in order", len(res.recs), writers*each)
			}
			bySeq := make(map[uint64]string)
			for _, r := range res.recs {
				bySeq[r.Seq] = string(r.Data)
			}
			for w, ss := range appended {
				if !slices.IsSorted(ss) {
					t.Errorf("writer %d got seqs out of order", w)
				}
				for i, s := range ss {
					if want := fmt.Sprintf("%d/%d", w, i); bySeq[s] != want {
						t.Fatalf("seq %d holds %q, want %q", s, bySeq[s], want)
					}
				}
			}
			if files := segmentFiles(t, dir); len(files) != 1 {
				t.Errorf("segments left once all is acknowledged: %v, want only the active one", files)
			}
		})
	}
}

func TestSegmentRotationAndDeletion(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("s"), 1000)
	q := openQueue(t, Options{Dir: dir, SegmentBytes: 4 * (headerSize + 1000)})
	for range 10 {
		mustAppend(t, q, data)
	}
	name := func(first uint64) string { return fmt.Sprintf("%020d.seg", first) }
	check := func(want ...string) {
		t.Helper()
		if got := segmentFiles(t, dir); !slices.Equal(got, want) {
			t.Errorf("segments = %v, want %v", got, want)
		}
	}
	check(name(1), name(5), name(9))

	ack := func(upTo uint64) {
		t.Helper()
		if err := q.Ack(upTo); err != nil {
			t.Fatal(err)
		}
	}
	ack(3)
	check(name(1), name(5), name(9))
	ack(4)
	check(name(5), name(9))
	ack(7)
	check(name(5), name(9))
	if recs := readN(t, q, 0, 3); !slices.Equal(seqs(recs), seqRange(8, 10)) {
		t.Errorf("records = %v, want 8..10", seqs(recs))
	}
	ack(10)
	check(name(9)) // fully acknowledged, but still being appended to
	mustAppend(t, q, data)
	mustAppend(t, q, data)
	check(name(9))
	mustAppend(t, q, data)
	check(name(9), name(13))
	ack(12)
	check(name(13))
	q.Close()

	q = openQueue(t, Options{Dir: dir})
	check(name(13))
	if recs := readN(t, q, 0, 1); !slices.Equal(seqs(recs), []uint64{13}) {
		t.Errorf("records after reopen = %v, want 13", seqs(recs))
	}
}

// TestReadBlocks runs in a synctest bubble: synctest.Wait returns once the reader is
// durably blocked, so each step cancels or closes a Read that is really waiting,
// and "still blocked" is a fact rather than a guess after some milliseconds.
func TestReadBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := openQueue(t, Options{Dir: t.TempDir()})
		type result struct {
			recs []Record
			err  error
		}
		read := func(ctx context.Context, after uint64) chan result {
			ch := make(chan result, 1)
			go func() {
				recs, err := q.Read(ctx, after, 0, 0)
				ch <- result{recs, err}
			}()
			synctest.Wait() // the reader is waiting for a record, or has returned
			return ch
		}

		ch := read(context.Background(), 0)
		select {
		case r := <-ch:
			t.Fatalf("Read of an empty queue returned %v, %v", seqs(r.recs), r.err)
		default:
		}
		mustAppend(t, q, []byte("wake"))
		synctest.Wait()
		select {
		case r := <-ch:
			if r.err != nil || len(r.recs) != 1 || string(r.recs[0].Data) != "wake" {
				t.Errorf("Read = %v, %v; want the appended record", r.recs, r.err)
			}
		default:
			t.Fatal("Read still blocked after Append")
		}

		ctx, cancel := context.WithCancel(context.Background())
		ch = read(ctx, 1)
		cancel()
		synctest.Wait()
		select {
		case r := <-ch:
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("Read after cancel = %v, %v; want context.Canceled", r.recs, r.err)
			}
		default:
			t.Fatal("Read still blocked after cancel")
		}

		ch = read(context.Background(), 1)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case r := <-ch:
			if !errors.Is(r.err, ErrClosed) {
				t.Errorf("Read after Close = %v, %v; want ErrClosed", r.recs, r.err)
			}
		default:
			t.Fatal("Read still blocked after Close")
		}
	})
}

func TestClosed(t *testing.T) {
	q := openQueue(t, Options{Dir: t.TempDir()})
	mustAppend(t, q, []byte("x"))
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append([]byte("y")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := q.Read(context.Background(), 0, 0, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := q.Ack(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Ack after Close: %v", err)
	}
	if err := q.SetInflight(1); !errors.Is(err, ErrClosed) {
		t.Errorf("SetInflight after Close: %v", err)
	}
}

func TestInflightSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, Options{Dir: dir, Sync: true})
	for range 5 {
		mustAppend(t, q, []byte("x"))
	}
	if q.Inflight() != 0 {
		t.Errorf("Inflight of a new queue = %d", q.Inflight())
	}
	if err := q.SetInflight(3); err != nil {
		t.Fatal(err)
	}
	q.Close()

	q = openQueue(t, Options{Dir: dir})
	if q.Inflight() != 3 || q.Acked() != 0 {
		t.Fatalf("after reopen Inflight = %d, Acked = %d; want 3, 0", q.Inflight(), q.Acked())
	}
	// The sender replays the batch in flight, then moves on.
	if recs := readN(t, q, 0, 3); !slices.Equal(seqs(recs), seqRange(1, 3)) {
		t.Errorf("replayed %v, want 1..3", seqs(recs))
	}
	if err := q.Ack(3); err != nil {
		t.Fatal(err)
	}
	if err := q.SetInflight(5); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = openQueue(t, Options{Dir: dir})
	if q.Inflight() != 5 || q.Acked() != 3 {
		t.Errorf("after second reopen Inflight = %d, Acked = %d; want 5, 3", q.Inflight(), q.Acked())
	}
}

func TestTornStateWriteKeepsOlderCopy(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, Options{Dir: dir})
	id := q.ID()
	for range 5 {
		mustAppend(t, q, []byte("x"))
	}
	if err := q.Ack(2); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(4); err != nil {
		t.Fatal(err)
	}
	q.Close()

	// Close saved the newest copy; damage it as a torn write would.
	path := filepath.Join(dir, stateName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var a, c state
	a.unmarshal(b)
	c.unmarshal(b[stateSlot:])
	newest := 0
	if c.gen > a.gen {
		newest = stateSlot
	}
	b[newest+40] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	q = openQueue(t, Options{Dir: dir})
	if q.ID() != id {
		t.Errorf("ID = %s after a torn state write, want %s", q.ID(), id)
	}
	if q.Acked() != 4 {
		t.Errorf("Acked = %d after a torn state write, want the previous save's 4", q.Acked())
	}
}

func TestTooLarge(t *testing.T) {
	q := openQueue(t, Options{Dir: t.TempDir(), SegmentBytes: 1024, MaxBytes: 4096})
	if _, err := q.Append(make([]byte, 1024-headerSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append over SegmentBytes: %v, want ErrTooLarge", err)
	}
	mustAppend(t, q, make([]byte, 1024-headerSize))

	q = openQueue(t, Options{Dir: t.TempDir(), SegmentBytes: 4096, MaxBytes: 1024})
	if _, err := q.Append(make([]byte, 1024-headerSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Append over MaxBytes: %v, want ErrTooLarge", err)
	}
	if st := q.Stats(); st.Appended != 0 || st.Records != 0 {
		t.Errorf("refused record counted: %+v", st)
	}
}

// TestCrashRecovery kills a process that appends, reads and acknowledges with SIGKILL,
// several times over, and checks that every record whose Append returned is still
// there unless it was acknowledged, and that no acknowledgement was forgotten.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	reported := make(map[uint64][2]int) // seq -> writer, index
	var acked uint64                    // highest Ack the child saw return
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() }) // in case the test fails before the kill
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "ack" {
				seq, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					t.Fatalf("child said %q", sc.Text())
				}
				acked = max(acked, seq)
				continue
			}
			seq, err1 := strconv.ParseUint(f[0], 10, 64)
			w, err2 := strconv.Atoi(f[1])
			i, err3 := strconv.Atoi(f[2])
			if err := errors.Join(err1, err2, err3); len(f) != 3 || err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			if _, dup := reported[seq]; dup {
				t.Fatalf("seq %d reported twice", seq)
			}
			reported[seq] = [2]int{w, i}
			if n++; n == 3000 {
				cmd.Process.Kill() // SIGKILL; keep reading what it said before dying
			}
		}
		cmd.Wait()
		if n < 3000 {
			t.Fatalf("round %d: child stopped after %d records", round, n)
		}
	}

	q := openQueue(t, Options{Dir: dir})
	if q.Acked() < acked {
		t.Fatalf("Acked = %d after the crash, but Ack(%d) had returned", q.Acked(), acked)
	}
	st := q.Stats()
	t.Logf("%d records reported, %d acknowledged, %d on disk, %d corrupt bytes cut off",
		len(reported), q.Acked(), st.Records, st.CorruptBytes)
	recs := readN(t, q, 0, int(st.Records))
	found := make(map[uint64]string, len(recs))
	for i, r := range recs {
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Fatalf("seq %d after %d", r.Seq, recs[i-1].Seq)
		}
		found[r.Seq] = string(r.Data)
	}
	var maxSeq uint64
	for seq, wi := range reported {
		maxSeq = max(maxSeq, seq)
		if seq <= q.Acked() {
			continue
		}
		data, ok := found[seq]
		if !ok {
			t.Fatalf("seq %d lost: its Append had returned and it was not acknowledged", seq)
		}
		if want := string(crashPayload(wi[0], wi[1])); data != want {
			t.Fatalf("seq %d holds %q, want %q", seq, data, want)
		}
	}
	if seq := mustAppend(t, q, []byte("after")); seq <= maxSeq {
		t.Errorf("Append after crashes got seq %d, not above %d", seq, maxSeq)
	}
}

func crashPayload(w, i int) []byte {
	return fmt.Appendf(nil, "%d:%d:%s", w, i, strings.Repeat("p", (i*37)%3000))
}

// crashChild appends from several goroutines and reads and acknowledges from another,
// printing each seq appended and each Ack once the call returns, until it is killed.
func crashChild(dir string) {
	q, err := Open(Options{Dir: dir, SegmentBytes: 256 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		fmt.Printf(format, args...)
		mu.Unlock()
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				seq, err := q.Append(crashPayload(w, i))
				if err != nil {
					fail(err)
				}
				say("%d %d %d\n", seq, w, i)
			}
		}()
	}
	// Acknowledge half of what was read, so that the kill meets acknowledged and
	// unacknowledged records, and Acks in progress.
	var after uint64
	for {
		recs, err := q.Read(context.Background(), after, 50, 0)
		if err != nil {
			fail(err)
		}
		after = recs[len(recs)-1].Seq
		if err := q.Ack(after / 2); err != nil {
			fail(err)
		}
		say("ack %d\n", after/2)
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", durable), func(b *testing.B) {
			q, err := Open(Options{Dir: b.TempDir(), Sync: durable})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			// Acknowledge everything now and then so the queue never fills.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				t := time.NewTicker(5 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						q.Ack(q.Stats().Appended)
					}
				}
			})
			data := bytes.Repeat([]byte("b"), 1024)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := q.Append(data); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			close(stop)
			wg.Wait()
		})
	}
}

func BenchmarkReadAck(b *testing.B) {
	q, err := Open(Options{Dir: b.TempDir(), MaxBytes: 64 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	data := bytes.Repeat([]byte("b"), 1024)
	for range b.N {
		if _, err := q.Append(data); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	ctx := context.Background()
	var after uint64
	for read := 0; read < b.N; {
		recs, err := q.Read(ctx, after, 1000, 0)
		if err != nil {
			b.Fatal(err)
		}
		read += len(recs)
		after = recs[len(recs)-1].Seq
		if err := q.Ack(after); err != nil {
			b.Fatal(err)
		}
	}
}

// A record DropOldest removes while the reader is sending it is counted dropped only
// if the reader then does not deliver it: delivered and dropped add up to appended.
func TestDropOldestCountsInFlightRecordsExactly(t *testing.T) {
	data := bytes.Repeat([]byte("f"), 100)
	size := int64(headerSize + len(data))
	q := openQueue(t, Options{Dir: t.TempDir(), MaxBytes: 5 * size, SegmentBytes: 2 * size, OnFull: DropOldest})
	for range 5 {
		mustAppend(t, q, data)
	}
	batch := readN(t, q, 0, 5) // the forwarder's batch, on its way to the manager
	for range 3 {
		mustAppend(t, q, data) // the queue is full: 1..3 are dropped from under the batch
	}
	if st := q.Stats(); st.DroppedRecords != 0 {
		t.Errorf("Stats = %+v while the batch is in flight; want nothing counted dropped yet", st)
	}
	// The batch reaches the manager after all.
	if err := q.Ack(batch[len(batch)-1].Seq); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Delivered != 5 || st.DroppedRecords != 0 || st.Records != 3 {
		t.Errorf("Stats = %+v after delivering the batch; want 5 delivered, 0 dropped, 3 left", st)
	}

	// A batch trimmed before sending: what was dropped beyond what it sent is lost.
	batch = readN(t, q, 5, 3) // 6..8
	for range 5 {
		mustAppend(t, q, data) // drops 6..8 from under it
	}
	if err := q.Ack(batch[0].Seq); err != nil { // only 6 was sent
		t.Fatal(err)
	}
	// The reader may still send 7 and 8 until it reads from 6 on again.
	if st := q.Stats(); st.Delivered != 6 || st.DroppedRecords != 0 {
		t.Errorf("Stats = %+v after acknowledging 6; want 6 delivered, nothing dropped yet", st)
	}
	readN(t, q, 6, 5)
	st := q.Stats()
	if st.Delivered != 6 || st.DroppedRecords != 2 || st.Records != 5 {
		t.Errorf("Stats = %+v after a partial send; want 6 delivered, 2 dropped, 5 left", st)
	}
	if st.Appended != st.Delivered+st.DroppedRecords+uint64(st.Records) {
		t.Errorf("Stats = %+v: appended != delivered + dropped + left", st)
	}
}

// Drops are counted in items with Options.Weight, reported once each to OnDrop, and
// a record the reader still held when the queue closed is lost.
func TestDropOldestReportsItems(t *testing.T) {
	var mu sync.Mutex
	told := map[DropReason]Drop{}
	weight := func(d []byte) uint64 { return uint64(d[0]) } // the first byte says how many items
	dir := t.TempDir()
	rec := func(items byte) []byte { return append([]byte{items}, bytes.Repeat([]byte("w"), 99)...) }
	size := int64(headerSize + 100)
	opts := Options{Dir: dir, MaxBytes: 3 * size, OnFull: DropOldest, Weight: weight, OnDrop: func(d Drop) {
		mu.Lock()
		defer mu.Unlock()
		t := told[d.Reason]
		t.Reason = d.Reason
		t.Records += d.Records
		t.Items += d.Items
		t.Bytes += d.Bytes
		told[d.Reason] = t
	}}
	q := openQueue(t, opts)
	mustAppend(t, q, rec(7))
	mustAppend(t, q, rec(11))
	q.Close()

	// Weights of records found on disk come from their first bytes.
	q = openQueue(t, opts)
	mustAppend(t, q, rec(1))
	readN(t, q, 0, 1)        // the reader holds 1 (7 items)
	mustAppend(t, q, rec(2)) // drops 1, held: in limbo
	mustAppend(t, q, rec(3)) // drops 2 (11 items)
	if st := q.Stats(); st.DroppedItems != 11 || st.DroppedRecords != 1 {
		t.Errorf("Stats = %+v; want 1 record of 11 items dropped", st)
	}
	if err := q.Close(); err != nil { // 1 was never acknowledged: lost
		t.Fatal(err)
	}
	want := Drop{Reason: DropFull, Records: 2, Items: 18, Bytes: uint64(2 * size)}
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 1 || told[DropFull] != want {
		t.Errorf("OnDrop told %+v; want %+v", told, want)
	}
}
