package queue

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

// fuzzRecords is how many records the damaged queues hold, across several segments.
const fuzzRecords = 9

// fuzzSegmentBytes makes segments of three of those records.
const fuzzSegmentBytes = 120

// writeFuzzQueue fills a fresh queue in dir with payload(1..fuzzRecords) in segments
// of three records and closes it. It returns the segment files in order and, per file,
// the end offsets of its records.
func writeFuzzQueue(t *testing.T, dir string) (files []string, ends [][]int64) {
	t.Helper()
	q, err := Open(Options{Dir: dir, SegmentBytes: fuzzSegmentBytes})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for i := 1; i <= fuzzRecords; i++ {
		if _, err := q.Append(payload(i)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	files = segmentFiles(t, dir)
	for _, name := range files {
		first, _ := parseSegmentName(name)
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var e []int64
		var end int64
		for seq := first; seq <= fuzzRecords && end < fi.Size(); seq++ {
			end += int64(headerSize + len(payload(int(seq))))
			e = append(e, end)
		}
		ends = append(ends, e)
	}
	return files, ends
}

// readAll reads every record Stats says is waiting.
func readAll(t *testing.T, q *Queue) []Record {
	t.Helper()
	want := int(q.Stats().Records)
	if want == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Record
	after := uint64(0)
	for len(out) < want {
		recs, err := q.Read(ctx, after, 0, 0)
		if err != nil {
			t.Fatalf("Read after %d (have %d of %d records Stats promised): %v", after, len(out), want, err)
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
	return out
}

// FuzzOpenDamagedSegment damages one segment file of a closed queue (cut short,
// overwritten, garbage appended) and reopens it, as after a crash or a bad disk.
// Open must not fail or panic, every record outside the damage must still be read
// back intact, the damaged segment's records from the damage on must be set aside
// and counted in CorruptBytes, and seqs must not be handed out again.
func FuzzOpenDamagedSegment(f *testing.F) {
	f.Add(uint8(2), uint16(100), true, []byte{})                    // last segment torn
	f.Add(uint8(0), uint16(30), false, []byte{0xff})                // older segment, bit rot
	f.Add(uint8(1), uint16(0), true, []byte{})                      // emptied segment
	f.Add(uint8(2), uint16(500), false, []byte("trailing"))         // garbage after the end
	f.Add(uint8(1), uint16(10), true, bytes.Repeat([]byte{0}, 300)) // zeroed tail
	f.Fuzz(func(t *testing.T, segIdx uint8, off uint16, cut bool, garbage []byte) {
		dir := t.TempDir()
		files, ends := writeFuzzQueue(t, dir)
		i := int(segIdx) % len(files)
		path := filepath.Join(dir, files[i])
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(orig)
		at := int(off) % (len(b) + 1)
		if cut {
			b = append(b[:at], garbage...)
		} else {
			b = append(b[:at], append(garbage, b[min(at+len(garbage), len(b)):]...)...)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}

		// The records of the damaged file that end before its first changed byte.
		diff := 0
		for diff < min(len(b), len(orig)) && b[diff] == orig[diff] {
			diff++
		}
		if len(b) == len(orig) && diff == len(b) {
			diff = len(b) + 1 // unchanged
		}
		first, _ := parseSegmentName(files[i])
		good, intact := int64(0), 0
		for _, end := range ends[i] {
			if end > int64(diff) {
				break
			}
			good, intact = end, intact+1
		}
		lost := map[uint64]bool{}
		for k := intact; k < len(ends[i]); k++ {
			lost[first+uint64(k)] = true
		}
		wantCorrupt := uint64(int64(len(b)) - good)

		q, err := Open(Options{Dir: dir, SegmentBytes: fuzzSegmentBytes})
		if err != nil {
			t.Fatalf("Open after damaging %s at %d (cut %v, %d bytes): %v", files[i], at, cut, len(garbage), err)
		}
		defer q.Close()
		st := q.Stats()
		if st.CorruptBytes != wantCorrupt {
			t.Errorf("CorruptBytes = %d, want %d (%d of %d bytes intact)", st.CorruptBytes, wantCorrupt, good, len(b))
		}
		var want []uint64
		for s := uint64(1); s <= fuzzRecords; s++ {
			if !lost[s] {
				want = append(want, s)
			}
		}
		recs := readAll(t, q)
		if got := seqs(recs); !slices.Equal(got, want) {
			t.Fatalf("records read = %v, want %v", got, want)
		}
		for _, r := range recs {
			if !bytes.Equal(r.Data, payload(int(r.Seq))) {
				t.Fatalf("record %d = %q, want %q", r.Seq, r.Data, payload(int(r.Seq)))
			}
		}
		if seq, err := q.Append([]byte("after")); err != nil || seq != fuzzRecords+1 {
			t.Fatalf("Append after reopening = %d, %v; want seq %d", seq, err, fuzzRecords+1)
		}
	})
}

// FuzzOpenArbitraryFiles opens a queue directory holding whatever a disk might: a
// state file and a segment file of arbitrary bytes, next to a valid segment. Open may
// refuse with an error but must not panic, and what it reads back must be records
// that were written.
func FuzzOpenArbitraryFiles(f *testing.F) {
	f.Add(uint64(3), uint64(1), uint64(2), uint64(4), []byte{}, uint64(4), appendRecord(nil, 4, 1, []byte("x")))
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), []byte("PQS1"), uint64(2), []byte{})
	f.Add(uint64(1), uint64(0), uint64(0), uint64(0), bytes.Repeat([]byte{0}, stateSlot+stateSize), uint64(3), appendRecord(nil, 3, 1, []byte("y")))
	f.Add(uint64(9), uint64(3), uint64(3), uint64(7), []byte{}, uint64(5), appendRecords(5, 6))
	f.Add(uint64(2), uint64(0), uint64(0), uint64(2), []byte{}, uint64(0), []byte("not a segment"))
	f.Fuzz(func(t *testing.T, gen, acked, inflight, next uint64, rawState []byte, first uint64, seg []byte) {
		dir := t.TempDir()
		// A state file of arbitrary bytes, or a well-formed one with arbitrary marks.
		stateBytes := rawState
		if len(rawState) == 0 {
			stateBytes = (&state{gen: gen, acked: acked, inflight: inflight, next: next}).marshal()
		}
		// Records 1-3 are what was really written.
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), appendRecords(1, 3), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, stateName), stateBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segmentName(first)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := Open(Options{Dir: dir, MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		defer q.Close()
		st := q.Stats()
		if st.Records < 0 || st.Bytes < 0 || st.Bytes > 1<<20+int64(len(seg)) {
			t.Fatalf("Stats after Open = %+v", st)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		after := uint64(0)
		for n := int64(0); n < st.Records; {
			recs, err := q.Read(ctx, after, 0, 0)
			if err != nil {
				t.Fatalf("Read after %d: %v (Stats promised %d records)", after, err, st.Records)
			}
			for _, r := range recs {
				if r.Seq <= 3 && first != 1 && !bytes.Equal(r.Data, []byte{byte('a' + r.Seq)}) {
					t.Fatalf("record %d = %q", r.Seq, r.Data)
				}
			}
			n += int64(len(recs))
			after = recs[len(recs)-1].Seq
		}
		seq, err := q.Append([]byte("after"))
		if err != nil {
			t.Fatalf("Append after Open: %v", err)
		}
		if seq <= after || seq <= 3 && first != 1 {
			t.Fatalf("Append got seq %d, already used (read up to %d)", seq, after)
		}
	})
}

// appendRecords frames records first..last holding 'a'+seq.
func appendRecords(first, last uint64) []byte {
	var b []byte
	for s := first; s <= last; s++ {
		b = appendRecord(b, s, int64(s), []byte{byte('a' + s)})
	}
	return b
}

// openAllocs opens the queue in dir and returns it with the bytes Open allocated.
func openAllocs(t *testing.T, opts Options) (*Queue, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	q := openQueue(t, opts)
	runtime.ReadMemStats(&after)
	return q, after.TotalAlloc - before.TotalAlloc
}

// TestStateMarksFarBeyondSegmentsAreDistrusted: a well-formed state file whose marks
// lie far past every record on disk (which the queue never writes) must neither make
// Open index every seq up to them, exhausting memory for large marks, nor pass the
// records on disk off as delivered.
func TestStateMarksFarBeyondSegmentsAreDistrusted(t *testing.T) {
	for _, st := range []state{
		{gen: 5, next: 1 << 22},
		{gen: 5, acked: 1 << 22, inflight: 1 << 22, next: 1<<22 + 1},
		{gen: 5, acked: math.MaxUint64},
	} {
		t.Run(fmt.Sprintf("acked %d next %d", st.acked, st.next), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, segmentName(1)), appendRecords(1, 3), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, stateName), st.marshal(), 0o600); err != nil {
				t.Fatal(err)
			}
			q, allocs := openAllocs(t, Options{Dir: dir, MaxBytes: 1 << 20})
			if allocs > 8<<20 {
				t.Errorf("Open allocated %d MiB for a queue of three records", allocs>>20)
			}
			if q.ID() == hex.EncodeToString(st.id[:]) {
				t.Errorf("queue kept the id of the state it distrusts")
			}
			if got := seqs(readAll(t, q)); !slices.Equal(got, []uint64{1, 2, 3}) {
				t.Errorf("records read = %v, want 1-3 delivered again", got)
			}
			if seq := mustAppend(t, q, []byte("after")); seq != 4 {
				t.Errorf("Append got seq %d, want 4", seq)
			}
		})
	}
}

// TestSegmentFarBeyondOthersSetAside: a segment file named far past the others (with
// a well-formed record) cannot have been written by the queue; Open sets it aside as
// corrupt instead of indexing every seq in between.
func TestSegmentFarBeyondOthersSetAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), appendRecords(1, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	far := appendRecords(1<<22, 1<<22)
	if err := os.WriteFile(filepath.Join(dir, segmentName(1<<22)), far, 0o600); err != nil {
		t.Fatal(err)
	}
	q, allocs := openAllocs(t, Options{Dir: dir, MaxBytes: 1 << 20})
	if allocs > 8<<20 {
		t.Errorf("Open allocated %d MiB for a queue of four records", allocs>>20)
	}
	if got := q.Stats().CorruptBytes; got != uint64(len(far)) {
		t.Errorf("CorruptBytes = %d, want the far segment's %d", got, len(far))
	}
	if got := seqs(readAll(t, q)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("records read = %v, want 1-3", got)
	}
}
