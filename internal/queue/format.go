package queue

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// headerSize is the framing in front of every record: CRC, length, seq, time.
	headerSize = 24

	segmentExt    = ".seg"
	segmentDigits = 20 // enough for any uint64, so names sort like their seqs

	stateName = "state"
	stateSize = 64
	// stateSlot is the distance between the two state copies. Putting them in separate
	// disk sectors means a torn state write can only ever damage the copy being written.
	stateSlot = 512
)

// castagnoli is only ever read; crc32 hands out one shared table for it anyway.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var stateMagic = [4]byte{'P', 'Q', 'S', '1'}

// appendRecord frames one record onto b.
func appendRecord(b []byte, seq uint64, nanos int64, data []byte) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, 0) // CRC, filled in below
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(nanos))
	b = append(b, data...)
	binary.LittleEndian.PutUint32(b[start:], crc32.Checksum(b[start+4:], castagnoli))
	return b
}

// checkRecord reports whether b holds exactly one intact record with the given seq,
// and if so its time. The length is checked too so a record can't be mistaken for one
// of another size that happens to share a prefix.
func checkRecord(b []byte, seq uint64) (nanos int64, ok bool) {
	if len(b) < headerSize ||
		binary.LittleEndian.Uint32(b[4:]) != uint32(len(b)-headerSize) ||
		binary.LittleEndian.Uint64(b[8:]) != seq ||
		binary.LittleEndian.Uint32(b) != crc32.Checksum(b[4:], castagnoli) {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b[16:])), true
}

func segmentName(first uint64) string {
	return fmt.Sprintf("%0*d%s", segmentDigits, first, segmentExt)
}

// parseSegmentName returns the first seq a segment file name carries, or false for any
// other file so that stray files in the directory are left alone.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentExt)
	if !ok || len(digits) != segmentDigits {
		return 0, false
	}
	first, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || first == 0 {
		return 0, false
	}
	return first, true
}

// scanSegment reads the records of one segment file in order, stopping at the first
// one that is short, fails its checksum or breaks the seq order; each good record is
// handed to add. It returns how many leading bytes are good and the file's size.
//
// The first record must carry the seq in the file name and each next one the seq after
// it, because readers find records by counting from the start of a segment.
func scanSegment(path string, first, prev uint64, add func(seq uint64, nanos int64, size int, head []byte)) (good, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("queue: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("queue: stat segment: %w", err)
	}
	size = fi.Size()
	if first <= prev {
		return 0, size, nil // overlaps the segment before it, so it can't be trusted
	}

	br := bufio.NewReaderSize(f, 1<<20)
	want := first
	for good < size {
		hdr, _ := br.Peek(headerSize)
		if len(hdr) < headerSize {
			break
		}
		crc := binary.LittleEndian.Uint32(hdr)
		n := int64(binary.LittleEndian.Uint32(hdr[4:]))
		seq := binary.LittleEndian.Uint64(hdr[8:])
		nanos := int64(binary.LittleEndian.Uint64(hdr[16:]))
		if seq != want || headerSize+n > size-good {
			break
		}
		sum := crc32.Update(0, castagnoli, hdr[4:])
		br.Discard(headerSize) // cannot fail: Peek has buffered it
		var headBuf [WeightPrefix]byte
		p, _ := br.Peek(int(min(n, WeightPrefix)))
		head := headBuf[:copy(headBuf[:], p)]
		rest := n
		for rest > 0 {
			chunk, _ := br.Peek(int(min(rest, int64(br.Size()))))
			if len(chunk) == 0 {
				break
			}
			sum = crc32.Update(sum, castagnoli, chunk)
			br.Discard(len(chunk))
			rest -= int64(len(chunk))
		}
		if rest > 0 || sum != crc {
			break
		}
		add(seq, nanos, int(headerSize+n), head)
		good += headerSize + n
		want++
	}
	return good, size, nil
}

// state is what the queue keeps besides the records themselves.
type state struct {
	gen      uint64 // picks the newer of the two copies
	id       [16]byte
	acked    uint64
	inflight uint64
	next     uint64 // seq floor, so seqs of deleted segments are never handed out again
}

func (s *state) marshal() []byte {
	b := make([]byte, 8, stateSize)
	copy(b, stateMagic[:])
	b = binary.LittleEndian.AppendUint64(b, s.gen)
	b = append(b, s.id[:]...)
	b = binary.LittleEndian.AppendUint64(b, s.acked)
	b = binary.LittleEndian.AppendUint64(b, s.inflight)
	b = binary.LittleEndian.AppendUint64(b, s.next)
	b = b[:stateSize]
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

func (s *state) unmarshal(b []byte) bool {
	if len(b) < stateSize || [4]byte(b) != stateMagic ||
		binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(b[8:stateSize], castagnoli) {
		return false
	}
	s.gen = binary.LittleEndian.Uint64(b[8:])
	copy(s.id[:], b[16:32])
	s.acked = binary.LittleEndian.Uint64(b[32:])
	s.inflight = binary.LittleEndian.Uint64(b[40:])
	s.next = binary.LittleEndian.Uint64(b[48:])
	return true
}

// writeState overwrites the older of the two copies in place. Two copies with a
// generation number make the write atomic without a rename, which keeps Ack down to a
// single write (and one sync when durable).
func writeState(f *os.File, s *state, sync bool) error {
	if _, err := f.WriteAt(s.marshal(), int64(s.gen%2)*stateSlot); err != nil {
		return fmt.Errorf("queue: write state: %w", err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("queue: sync state: %w", err)
		}
	}
	return nil
}

// openState opens dir's state file, creating it with a fresh id when it is missing or
// neither copy is readable, since then nothing in it can be trusted anyway.
func openState(dir string) (*os.File, state, error) {
	var st state
	f, err := os.OpenFile(filepath.Join(dir, stateName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, st, fmt.Errorf("queue: open state: %w", err)
	}
	b := make([]byte, stateSlot+stateSize)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, st, fmt.Errorf("queue: read state: %w", err)
	}
	b = b[:n]
	var a, c state
	okA := a.unmarshal(b)
	okC := len(b) > stateSlot && c.unmarshal(b[stateSlot:])
	switch {
	case okA && (!okC || a.gen > c.gen):
		return f, a, nil
	case okC:
		return f, c, nil
	}

	if st, err = newState(); err != nil {
		f.Close()
		return nil, st, err
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, st, fmt.Errorf("queue: reset state: %w", err)
	}
	if err := writeState(f, &st, true); err != nil {
		f.Close()
		return nil, st, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, st, err
	}
	return f, st, nil
}

// newState returns the state of a queue starting over: generation 1 and a new
// random id.
func newState() (state, error) {
	st := state{gen: 1}
	if _, err := rand.Read(st.id[:]); err != nil {
		return st, fmt.Errorf("queue: new id: %w", err)
	}
	return st, nil
}

// syncDir makes file creations and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("queue: open dir for sync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("queue: sync dir: %w", err)
	}
	return nil
}
