// Package queue is a durable, bounded FIFO of byte records in a directory on disk. It
// sits between receiving telemetry and sending it on: a record is on disk before the
// sender is told it was received, and it stays there until the far side has it.
//
// # Guarantees
//
// Delivery is at least once. Append returns once the record is in the operating
// system's page cache (it survives the process being killed) or, with Options.Sync,
// once it is synced to the device (it survives power loss too). Concurrent appends
// share one write and one sync, so durability costs one sync per batch, not per record.
// Read hands out records in seq order; Ack removes them. After a restart every record
// not yet acknowledged is read again, and SetInflight lets a sender replay exactly the
// batch it may have been sending when it stopped. Seqs start at 1, only grow, and are
// never handed out twice, even once their records are deleted.
//
// Loss is counted exactly: DropOldest may remove records the reader is sending, so
// such a record counts as delivered once an Ack covers it, and as dropped (Stats,
// Options.OnDrop) once a Read from before it, or Close, shows it was not sent; never
// as both.
//
// # On disk
//
// The directory holds one queue: a state file and segment files. A segment is named by
// the seq of its first record, zero-padded to 20 digits with the extension ".seg", so
// a directory listing is in queue order. It holds records back to back, each a
// 24-byte little-endian header and then the data:
//
//	offset 0   uint32  CRC-32C (Castagnoli) of everything after it in the record
//	offset 4   uint32  length of the data
//	offset 8   uint64  seq, one more than the record before it in the segment
//	offset 16  int64   append time, Unix nanoseconds
//	offset 24          data
//
// New records go to the newest segment until it would pass Options.SegmentBytes; then
// a new segment starts. A segment is deleted once all its records are acknowledged.
//
// The state file holds the queue id, the acknowledged and in-flight seqs and the next
// seq, as two 64-byte checksummed copies at offsets 0 and 512 with a generation
// number. Each save overwrites the older copy, so a torn save leaves the other intact.
//
// Open checks every record. A short or corrupt record in the newest segment is what a
// crash in the middle of a write leaves behind, so that segment is cut off there. A
// corrupt record in an older segment means the rest of that segment can't be framed;
// it is skipped. Either way the bytes are counted in Stats.CorruptBytes. A segment
// named far past the others, or a state whose marks lie far past every record on disk,
// is not something the queue writes: the segment is set aside as corrupt, and the state
// is replaced by a fresh one (new id, records on disk delivered again), so that no file
// can make Open index an unbounded range of seqs.
package queue

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

const (
	defaultMaxBytes     = 256 << 20
	defaultSegmentBytes = 8 << 20

	// maxSpare caps the write buffer kept between batches, so one burst doesn't pin
	// memory for the life of the queue.
	maxSpare = 4 << 20
)

// FullPolicy says what Append does when the queue already holds Options.MaxBytes.
type FullPolicy int

const (
	// Refuse makes Append fail with ErrFull, pushing back on whoever sends the data so
	// that nothing already queued is lost.
	Refuse FullPolicy = iota
	// DropOldest deletes the oldest records not yet acknowledged to make room, for
	// telemetry where fresh data matters more than old. Append still returns ErrFull
	// if the room is taken by records other appends are still writing.
	DropOldest
)

// Errors returned by the queue; they are wrapped with detail, so compare with errors.Is.
var (
	// ErrFull means the record would take the queue past Options.MaxBytes and the
	// policy is Refuse.
	ErrFull = errors.New("queue: full")
	// ErrClosed means the queue was closed.
	ErrClosed = errors.New("queue: closed")
	// ErrTooLarge means a single record could never fit: with its header it is bigger
	// than Options.MaxBytes or Options.SegmentBytes.
	ErrTooLarge = errors.New("queue: record too large")
)

// Options configure a queue. Only Dir is required.
type Options struct {
	// Dir holds the queue; it is created if missing. Only one open Queue may use a
	// directory at a time.
	Dir string
	// MaxBytes bounds the bytes of records not yet acknowledged, headers included.
	// Zero means 256 MiB. Acknowledged records share segments with unacknowledged
	// ones, so the directory can hold up to about one segment more.
	MaxBytes int64
	// MaxAge drops records older than this instead of delivering them, counted in
	// Stats. Zero means records never expire.
	MaxAge time.Duration
	// SegmentBytes is the size a segment file grows to before the next one starts.
	// Zero means 8 MiB.
	SegmentBytes int64
	// OnFull says what Append does when the queue holds MaxBytes.
	OnFull FullPolicy
	// Sync makes Append, Ack and SetInflight return only once their writes are synced
	// to the device. Without it they return once the operating system has the data,
	// which survives the process being killed but not the machine losing power.
	Sync bool
	// Clock stamps records and judges MaxAge. Nil means the wall clock.
	Clock clock.Clock
	// Weight, if set, tells how many items (telemetry records, say) a record's data
	// holds, so that drops are counted in items as well as records. It is given the
	// whole data on Append but, for records found on disk at Open, only the first
	// WeightPrefix bytes: it must need no more. Nil counts every record as one item.
	Weight func(data []byte) uint64
	// OnDrop, if set, is told of records removed without being delivered, at most
	// once per record and never for a record that is then delivered. It is called
	// without the queue's locks held, from the call that noticed, possibly from
	// several goroutines at once, and must not block.
	OnDrop func(Drop)
}

// WeightPrefix is how many leading bytes of a record Options.Weight may rely on.
const WeightPrefix = 64

// DropReason says why records were dropped.
type DropReason string

// Reasons records are dropped; the values are stable, for metric labels.
const (
	// DropFull: removed to make room under DropOldest.
	DropFull DropReason = "queue_full"
	// DropExpired: older than Options.MaxAge.
	DropExpired DropReason = "expired"
	// DropCorrupt: failed its checksum while being read.
	DropCorrupt DropReason = "corrupt"
)

// Drop describes records removed without being delivered.
type Drop struct {
	Reason DropReason
	// Records is how many queue records were dropped, Items what Options.Weight
	// says they held, and Bytes their size with headers.
	Records, Items, Bytes uint64
}

// Record is one record as Read returns it.
type Record struct {
	// Seq is the record's position in the queue; pass it to Ack once delivered.
	Seq uint64
	// Time is when the record was appended.
	Time time.Time
	// Data is what was appended. The caller owns it; records of one Read share a
	// backing array.
	Data []byte
}

// Stats describe a queue, for metrics. Counters start at zero on Open.
type Stats struct {
	// Records is how many records wait for delivery: appended, not yet acknowledged,
	// dropped or found corrupt.
	Records int64
	// Bytes is the size of those records on disk, headers included: what MaxBytes bounds.
	Bytes int64
	// Appended counts records appended.
	Appended uint64
	// Delivered counts records removed by Ack.
	Delivered uint64
	// DroppedRecords counts records removed unsent, for being older than MaxAge or to
	// make room under DropOldest. A record removed while the reader holds it counts
	// only once a Read from before it or Close shows it was not sent (an Ack covering
	// it counts it delivered); until then it is in none of the counts.
	DroppedRecords uint64
	// DroppedBytes is the size of those records, headers included.
	DroppedBytes uint64
	// DroppedItems is what Options.Weight says those records held.
	DroppedItems uint64
	// CorruptBytes counts bytes skipped because they failed their checksum or were
	// cut short, found on Open or while reading.
	CorruptBytes uint64
	// OldestAge is the age of the oldest record waiting for delivery, zero when none is.
	OldestAge time.Duration
}

// Queue is a durable FIFO of records in one directory. Its methods are safe for
// concurrent use; concurrent Reads take turns.
type Queue struct {
	dir       string
	maxBytes  int64
	segBytes  int64
	maxRecord int64 // largest record with its header
	maxAge    time.Duration
	policy    FullPolicy
	sync      bool
	clock     clock.Clock
	id        [16]byte

	// smu orders state saves, so a save never overwrites a newer one. Lock it
	// before mu.
	smu sync.Mutex
	sf  *os.File // the state file; nil once closed

	mu       sync.Mutex
	closed   bool
	done     chan struct{} // closed by Close, to wake Read
	err      error         // a failed write; the queue refuses appends after one
	next     uint64        // seq the next append gets
	written  uint64        // highest seq written (and synced with Sync); readable up to here
	acked    uint64
	inflight uint64
	gen      uint64 // generation of the last state save

	segs   []*segment // oldest first; the last is active if active is set
	active *segment   // segment appends go to; nil until the first append after Open

	// index has an entry per seq from base to next-1, so Ack, Read and Stats learn
	// record sizes and times without touching the disk.
	base  uint64
	index []entry

	// Group commit. Appends join the filling batch, numbered batchNo; its first
	// appender leads it: it waits for the batch being written, takes its own and
	// writes it while the next one fills. A batch's end is broadcast on
	// batchDone[its number%2], which wakes its own appenders and the next leader but
	// not the appenders of the next batch, who would only go back to sleep.
	pend      []byte // records of the filling batch
	cuts      []cut  // where pend moves on to a new segment
	spare     []byte
	spareCuts []cut
	filling   bool
	writing   bool
	batchNo   uint64
	batchDone [2]sync.Cond
	dropped   bool // DropOldest released records: save state, delete segments

	avail       chan struct{} // closed when records were written and a reader waits
	readWaiting bool

	records, bytes                                          int64
	appended, delivered, droppedRecs, droppedBytes, corrupt uint64
	droppedItems                                            uint64

	weight func([]byte) uint64
	onDrop func(Drop)
	// held is the highest seq handed to the reader that it has not given back by
	// reading from before it again. A record up to held that DropOldest removes may
	// still be on its way, so it goes to limbo until an Ack covering it (delivered)
	// or a Read from before it (lost) says which it was: drops are counted exactly,
	// never guessed.
	held  uint64
	limbo []limboRec
	// told holds drops not yet reported to onDrop, one per reason.
	told []Drop

	ww *segmentWriter // the segment being written; owned by the batch leader

	rsem chan struct{} // held by the one running Read, which owns cur
	cur  cursor
}

// segment is one segment file.
type segment struct {
	first uint64
	last  uint64 // highest seq put in it, written or pending
	size  int64  // bytes put in it, written or pending
}

// entry is the index entry of one seq.
type entry struct {
	nanos int64
	size  uint32 // with header; 0 if there is no record for this seq
	items uint32 // what Options.Weight says the record holds
	gone  bool   // dropped for age or corrupt, though not yet acknowledged
}

// limboRec is a record DropOldest removed while the reader may be sending it.
type limboRec struct {
	seq   uint64
	items uint32
	size  uint32
}

func (e *entry) live() bool { return e.size > 0 && !e.gone }

// cut marks that pend from pos on belongs to seg, a new segment.
type cut struct {
	pos int
	seg *segment
}

// cursor remembers where the reader stopped, so that the next Read carries on with
// the open file instead of seeking from the start of the segment.
type cursor struct {
	seg   *segment
	f     *os.File
	seq   uint64 // the seq whose record starts at off
	off   int64
	chunk []entry // scratch: the index entries of the chunk being read
	marks []mark  // scratch: records found expired or corrupt
}

type mark struct {
	seq     uint64
	corrupt bool
}

// Open opens the queue in opts.Dir, creating it if needed, and checks what is on disk.
func Open(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: no directory")
	}
	if opts.MaxBytes < 0 || opts.SegmentBytes < 0 || opts.MaxAge < 0 {
		return nil, errors.New("queue: negative limit")
	}
	if opts.OnFull != Refuse && opts.OnFull != DropOldest {
		return nil, fmt.Errorf("queue: unknown full policy %d", opts.OnFull)
	}
	q := &Queue{
		dir:      opts.Dir,
		maxBytes: orDefault(opts.MaxBytes, defaultMaxBytes),
		segBytes: orDefault(opts.SegmentBytes, defaultSegmentBytes),
		maxAge:   opts.MaxAge,
		policy:   opts.OnFull,
		sync:     opts.Sync,
		clock:    clock.Or(opts.Clock),
		done:     make(chan struct{}),
		avail:    make(chan struct{}),
		rsem:     make(chan struct{}, 1),
		weight:   opts.Weight,
		onDrop:   opts.OnDrop,
	}
	if q.weight == nil {
		q.weight = func([]byte) uint64 { return 1 }
	}
	q.batchDone[0].L = &q.mu
	q.batchDone[1].L = &q.mu
	q.maxRecord = min(q.maxBytes, q.segBytes, math.MaxUint32)
	if q.maxRecord <= headerSize {
		return nil, fmt.Errorf("queue: limits of %d bytes leave no room for records", q.maxRecord)
	}

	if err := os.MkdirAll(q.dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	sf, st, err := openState(q.dir)
	if err != nil {
		return nil, err
	}
	q.sf, q.gen, q.id = sf, st.gen, st.id
	q.acked, q.inflight = st.acked, st.inflight
	if err := q.load(st.next); err != nil {
		sf.Close()
		return nil, err
	}
	return q, nil
}

// orDefault returns v, or def when v is zero.
func orDefault(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// load scans the segments, rebuilding the index and counts, and drops what is corrupt
// or already acknowledged.
func (q *Queue) load(floor uint64) error {
	des, err := os.ReadDir(q.dir)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	var firsts []uint64
	for _, de := range des {
		if first, ok := parseSegmentName(de.Name()); ok && de.Type().IsRegular() {
			firsts = append(firsts, first)
		}
	}
	slices.Sort(firsts)

	add := func(seq uint64, nanos int64, size int, head []byte) {
		if len(q.index) == 0 {
			q.base = seq
		}
		for q.base+uint64(len(q.index)) < seq {
			q.index = append(q.index, entry{}) // records lost to corruption
		}
		q.index = append(q.index, entry{nanos: nanos, size: uint32(size), items: q.items(head)})
		if seq > q.acked {
			q.records++
			q.bytes += int64(size)
		}
	}
	// The index holds an entry for every seq from the first on disk to the next, so
	// a gap in the seqs costs memory. Appends, corrupt segments and records lost in a
	// crash leave gaps of at most a queue's worth of records; a wider one can only
	// come from a file the queue did not write, and indexing it could take more
	// memory than the machine has.
	maxGap := uint64(q.maxBytes/headerSize) + 1
	var prev uint64 // last good seq so far
	for i, first := range firsts {
		path := filepath.Join(q.dir, segmentName(first))
		seg := &segment{first: first}
		after := prev
		if len(q.segs) > 0 && first-prev > maxGap {
			after = first // scanSegment then takes it for an overlapping segment
		}
		good, size, err := scanSegment(path, first, after, func(seq uint64, nanos int64, size int, head []byte) {
			add(seq, nanos, size, head)
			seg.last = seq
		})
		if err != nil {
			return err
		}
		q.corrupt += uint64(size - good)
		switch {
		case good == 0:
			// Nothing usable: an empty file left by a crash, or garbage.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("queue: remove bad segment: %w", err)
			}
			continue
		case good < size && i == len(firsts)-1:
			// A torn write; cut it off so it isn't counted again on the next Open.
			if err := os.Truncate(path, good); err != nil {
				return fmt.Errorf("queue: truncate torn segment: %w", err)
			}
		}
		seg.size = good
		q.segs = append(q.segs, seg)
		prev = seg.last
	}

	if len(q.segs) > 0 && max(floor, q.acked+1) > prev+1+maxGap || q.acked == math.MaxUint64 {
		// The marks lie far beyond every record on disk, which the queue never
		// writes; trusting them would take the records for delivered, or need an
		// index of that many seqs. Distrust the state as if it were unreadable: a
		// new id, so the receiver takes what follows for a queue that started over
		// and no seq is mistaken for one it had, and everything on disk delivered
		// again.
		if err := q.resetState(); err != nil {
			return err
		}
		floor = 0
	}
	q.next = max(floor, prev+1, q.acked+1)
	if len(q.index) == 0 {
		q.base = q.next
	}
	for q.base+uint64(len(q.index)) < q.next {
		q.index = append(q.index, entry{}) // seqs handed out but never written
	}
	q.written = q.next - 1
	// New records always start a new segment, so a segment written before a crash is
	// never appended to.
	return q.removeReleasedLocked(q.acked)
}

// items weighs a record's data, saturating at what an index entry holds.
func (q *Queue) items(data []byte) uint32 {
	return uint32(min(q.weight(data), math.MaxUint32))
}

// resetState replaces a loaded state that cannot be trusted by a fresh one, counting
// every indexed record as waiting again.
func (q *Queue) resetState() error {
	st, err := newState()
	if err != nil {
		return err
	}
	st.gen = q.gen + 1
	if err := writeState(q.sf, &st, true); err != nil {
		return err
	}
	q.gen, q.id, q.acked, q.inflight = st.gen, st.id, 0, 0
	q.records, q.bytes = 0, 0
	for _, e := range q.index {
		if e.size > 0 {
			q.records++
			q.bytes += int64(e.size)
		}
	}
	return nil
}

// ID returns the queue's id: random, created with the directory and kept across
// restarts, so a receiver can tell a replay from a queue that started over.
func (q *Queue) ID() string { return hex.EncodeToString(q.id[:]) }

// Append adds a record holding a copy of data and returns its seq once it is as
// durable as Options.Sync asks.
func (q *Queue) Append(data []byte) (uint64, error) {
	n := int64(headerSize + len(data))
	if n > q.maxRecord {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), q.maxRecord-headerSize)
	}
	nanos := q.clock.Now().UnixNano()
	items := q.items(data)

	q.mu.Lock()
	seq, err := q.enqueueLocked(data, n, nanos, items)
	if err != nil {
		q.mu.Unlock()
		q.tell()
		return 0, err
	}
	save := false
	if q.filling {
		no := q.batchNo
		for q.written < seq && q.err == nil {
			q.batchDone[no%2].Wait()
		}
	} else {
		q.filling = true
		q.batchNo++
		save = q.leadLocked(q.batchNo)
	}
	if q.written < seq {
		err = q.err
	}
	q.mu.Unlock()
	if save {
		// Records were dropped to make room: record that and delete their segments.
		// A failure here only delays the deletion to the next Ack, which reports it.
		_ = q.saveState(false)
	}
	q.tell()
	if err != nil {
		return 0, err
	}
	return seq, nil
}

// enqueueLocked assigns the next seq to data and encodes it into the pending batch.
func (q *Queue) enqueueLocked(data []byte, n, nanos int64, items uint32) (uint64, error) {
	if q.closed {
		return 0, ErrClosed
	}
	if q.err != nil {
		return 0, q.err
	}
	for q.bytes+n > q.maxBytes {
		// Only written records can be dropped; the others are still on their way.
		if q.policy != DropOldest || q.acked >= q.written {
			return 0, fmt.Errorf("%w: %d of %d bytes in use", ErrFull, q.bytes, q.maxBytes)
		}
		q.releaseLocked(q.acked+1, DropFull)
		q.dropped = true
	}

	seq := q.next
	if q.active == nil || q.active.size+n > q.segBytes {
		q.active = &segment{first: seq}
		q.segs = append(q.segs, q.active)
		q.cuts = append(q.cuts, cut{pos: len(q.pend), seg: q.active})
	}
	q.pend = appendRecord(q.pend, seq, nanos, data)
	q.active.last = seq
	q.active.size += n
	q.index = append(q.index, entry{nanos: nanos, size: uint32(n), items: items})
	q.next++
	q.records++
	q.bytes += n
	q.appended++
	return seq, nil
}

// leadLocked writes batch no once the batch before it is written, dropping q.mu
// meanwhile so that appenders can fill the next batch. It reports whether the state
// needs saving.
func (q *Queue) leadLocked(no uint64) bool {
	for q.writing {
		q.batchDone[(no-1)%2].Wait()
	}
	// Let appenders that are ready to run join the batch first. Without this, with
	// few cores, most batches hold one or two records and the per-write cost of the
	// system call dominates; with it they hold several, at the price of a yield.
	q.mu.Unlock()
	runtime.Gosched()
	q.mu.Lock()
	q.filling = false
	if q.err == nil {
		q.writing = true
		buf, cuts, last := q.pend, q.cuts, q.next-1
		q.pend, q.cuts = q.spare, q.spareCuts
		q.mu.Unlock()

		err := q.writeBatch(buf, cuts)

		q.mu.Lock()
		q.writing = false
		if err != nil {
			q.err = err
		} else {
			q.written = last
			if q.readWaiting {
				close(q.avail)
				q.avail = make(chan struct{})
				q.readWaiting = false
			}
		}
		q.spare = nil
		if cap(buf) <= maxSpare {
			q.spare = buf[:0]
		}
		clear(cuts)
		q.spareCuts = cuts[:0]
	}
	q.batchDone[no%2].Broadcast()
	save := q.dropped
	q.dropped = false
	return save
}

// writeBatch writes one batch of records, starting new segment files where cuts say.
// Only one goroutine runs it at a time.
func (q *Queue) writeBatch(buf []byte, cuts []cut) error {
	start := 0
	for _, c := range cuts {
		if err := q.write(buf[start:c.pos]); err != nil {
			return err
		}
		if err := q.startSegment(c.seg); err != nil {
			return err
		}
		start = c.pos
	}
	if err := q.write(buf[start:]); err != nil {
		return err
	}
	if q.sync {
		if err := q.ww.f.Sync(); err != nil {
			return fmt.Errorf("queue: sync segment: %w", err)
		}
	}
	return nil
}

func (q *Queue) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := q.ww.Write(b); err != nil {
		return fmt.Errorf("queue: write segment: %w", err)
	}
	return nil
}

// startSegment finishes the segment being written and creates seg's file.
func (q *Queue) startSegment(seg *segment) error {
	if q.ww != nil {
		if q.sync {
			if err := q.ww.f.Sync(); err != nil {
				return fmt.Errorf("queue: sync segment: %w", err)
			}
		}
		if err := q.ww.f.Close(); err != nil {
			return fmt.Errorf("queue: close segment: %w", err)
		}
		q.ww = nil
	}
	f, err := os.OpenFile(filepath.Join(q.dir, segmentName(seg.first)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("queue: create segment: %w", err)
	}
	w, err := newSegmentWriter(f)
	if err != nil {
		f.Close()
		return err
	}
	q.ww = w
	if q.sync {
		return syncDir(q.dir)
	}
	return nil
}

// Read returns records with seqs above both after and Acked, oldest first: at least
// one, blocking until there is one, the context ends or the queue is closed. It stops
// at maxRecords records or maxBytes bytes of data, but always returns at least one
// record, however big; zero or less means no limit. Records older than Options.MaxAge
// are dropped instead of returned.
func (q *Queue) Read(ctx context.Context, after uint64, maxRecords, maxBytes int) ([]Record, error) {
	select {
	case q.rsem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-q.done:
		return nil, ErrClosed
	}
	defer func() { <-q.rsem }()
	defer q.tell()
	q.mu.Lock()
	// Whatever the reader had beyond after it asks for again, so it is not sending it.
	q.held = min(q.held, after)
	q.settleLimboLocked(after, false)
	q.mu.Unlock()
	if maxRecords <= 0 {
		maxRecords = math.MaxInt
	}
	if maxBytes <= 0 {
		maxBytes = math.MaxInt
	}

	var recs []Record
	size := 0 // bytes of data in recs
	next := after + 1
	for len(recs) < maxRecords && size < maxBytes {
		if err := ctx.Err(); err != nil && len(recs) == 0 {
			return nil, err
		}
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		next = max(next, q.acked+1)
		off, n, err := q.planLocked(next, maxRecords-len(recs), maxBytes-size, len(recs) == 0)
		if err != nil {
			q.mu.Unlock()
			return nil, err
		}
		if n == 0 {
			if len(recs) > 0 {
				q.mu.Unlock()
				break
			}
			q.readWaiting = true
			avail := q.avail
			q.mu.Unlock()
			select {
			case <-avail:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-q.done:
				return nil, ErrClosed
			}
		}
		q.mu.Unlock()

		var got int
		recs, got, err = q.readChunk(recs, off, n)
		if err != nil {
			return nil, err
		}
		size += got
		next = q.cur.seq
	}
	return recs, nil
}

// planLocked picks the next chunk to read: records from seq on within one segment,
// fitting the room left, described by q.cur.chunk. It positions the cursor at the
// chunk and returns the chunk's offset and length, or a zero length when nothing is
// readable yet.
func (q *Queue) planLocked(seq uint64, roomRecords, roomBytes int, first bool) (off, n int64, err error) {
	for seq <= q.written {
		if e := q.entryLocked(seq); e != nil && e.live() {
			break
		}
		seq++
	}
	if seq > q.written {
		return 0, 0, nil
	}
	seg := q.segmentLocked(seq)
	c := &q.cur
	if c.seg != seg {
		if c.f != nil {
			c.f.Close()
			c.f = nil
		}
		f, err := os.Open(filepath.Join(q.dir, segmentName(seg.first)))
		if err != nil {
			return 0, 0, fmt.Errorf("queue: open segment for reading: %w", err)
		}
		c.seg, c.f, c.seq, c.off = seg, f, seg.first, 0
	}
	if c.seq > seq {
		c.seq, c.off = seg.first, 0
	}
	for ; c.seq < seq; c.seq++ {
		c.off += int64(q.entryLocked(c.seq).size)
	}

	c.chunk = c.chunk[:0]
	records := 0
	for s := seq; s <= min(q.written, seg.last) && records < roomRecords; s++ {
		e := *q.entryLocked(s)
		if e.live() {
			d := int(e.size) - headerSize
			if d > roomBytes && !(first && records == 0) {
				break
			}
			roomBytes -= d
			records++
		}
		c.chunk = append(c.chunk, e)
		n += int64(e.size)
		q.held = max(q.held, s)
	}
	return c.off, n, nil
}

// readChunk reads the chunk planLocked chose and appends its records to recs. Records
// past MaxAge or failing their checksum are marked gone instead. It returns the bytes
// of data added.
func (q *Queue) readChunk(recs []Record, off, n int64) ([]Record, int, error) {
	c := &q.cur
	buf := make([]byte, n)
	if _, err := c.f.ReadAt(buf, off); err != nil {
		return recs, 0, fmt.Errorf("queue: read segment: %w", err)
	}
	var expiry int64 = math.MinInt64
	if q.maxAge > 0 {
		expiry = q.clock.Now().Add(-q.maxAge).UnixNano()
	}
	c.marks = c.marks[:0]
	added := 0
	seq := c.seq
	for _, e := range c.chunk {
		b := buf[:e.size:e.size]
		buf = buf[e.size:]
		s := seq
		seq++
		if !e.live() {
			continue
		}
		nanos, ok := checkRecord(b, s)
		switch {
		case !ok:
			c.marks = append(c.marks, mark{seq: s, corrupt: true})
		case nanos < expiry:
			c.marks = append(c.marks, mark{seq: s})
		default:
			recs = append(recs, Record{Seq: s, Time: time.Unix(0, nanos), Data: b[headerSize:]})
			added += len(b) - headerSize
		}
	}
	c.seq, c.off = seq, off+n

	if len(c.marks) > 0 {
		q.mu.Lock()
		for _, m := range c.marks {
			q.markGoneLocked(m.seq, m.corrupt)
		}
		// Gone records at the head can be acknowledged right away; others wait for the
		// Ack of a later record so that records in flight before them aren't acked.
		upTo := q.acked
		for upTo < q.written {
			if e := q.entryLocked(upTo + 1); e != nil && e.live() {
				break
			}
			upTo++
		}
		advanced := upTo > q.acked
		if advanced {
			q.releaseLocked(upTo, DropExpired) // every record it passes is gone already
		}
		q.mu.Unlock()
		if advanced {
			if err := q.saveState(false); err != nil {
				return recs, added, err
			}
		}
	}
	return recs, added, nil
}

// markGoneLocked takes a record out of the counts without acknowledging it.
func (q *Queue) markGoneLocked(seq uint64, corrupt bool) {
	reason := DropExpired
	if corrupt {
		reason = DropCorrupt
	}
	e := q.entryLocked(seq)
	if seq <= q.acked {
		// DropOldest took it after it was planned into this read, which then did
		// not return it: it will not be sent.
		for i, l := range q.limbo {
			if l.seq == seq {
				q.limbo = slices.Delete(q.limbo, i, i+1)
				q.countDropLocked(reason, l.items, l.size)
				break
			}
		}
		return
	}
	if e == nil || !e.live() {
		return
	}
	e.gone = true
	q.records--
	q.bytes -= int64(e.size)
	q.countDropLocked(reason, e.items, e.size)
}

// countDropLocked counts one dropped record and keeps it for onDrop.
func (q *Queue) countDropLocked(reason DropReason, items, size uint32) {
	if reason == DropCorrupt {
		q.corrupt += uint64(size)
	} else {
		q.droppedRecs++
		q.droppedBytes += uint64(size)
		q.droppedItems += uint64(items)
	}
	if q.onDrop == nil {
		return
	}
	for i := range q.told {
		if q.told[i].Reason == reason {
			q.told[i].Records++
			q.told[i].Items += uint64(items)
			q.told[i].Bytes += uint64(size)
			return
		}
	}
	q.told = append(q.told, Drop{Reason: reason, Records: 1, Items: uint64(items), Bytes: uint64(size)})
}

// settleLimboLocked decides what it can of the records in limbo. After an Ack up to
// floor (acked set), those up to floor were delivered; the others the reader may
// still send. After a Read from floor on, those above floor were not sent and will
// not be (the reader asks for them again, and they are gone): they are dropped.
func (q *Queue) settleLimboLocked(floor uint64, acked bool) {
	keep := q.limbo[:0]
	for _, l := range q.limbo {
		switch {
		case acked && l.seq <= floor:
			q.delivered++
		case !acked && l.seq > floor:
			q.countDropLocked(DropFull, l.items, l.size)
		default:
			keep = append(keep, l)
		}
	}
	q.limbo = keep
}

// dropLimboLocked counts what is left in limbo as dropped: the queue is closing,
// and acked has passed it, so it is not read again after a restart.
func (q *Queue) dropLimboLocked() {
	for _, l := range q.limbo {
		q.countDropLocked(DropFull, l.items, l.size)
	}
	q.limbo = nil
}

// tell hands the drops counted so far to onDrop, outside the queue's locks.
func (q *Queue) tell() {
	if q.onDrop == nil {
		return
	}
	q.mu.Lock()
	told := q.told
	q.told = nil
	q.mu.Unlock()
	for _, d := range told {
		q.onDrop(d)
	}
}

// entryLocked returns seq's index entry, or nil if the index no longer covers it.
func (q *Queue) entryLocked(seq uint64) *entry {
	if seq < q.base || seq-q.base >= uint64(len(q.index)) {
		return nil
	}
	return &q.index[seq-q.base]
}

// segmentLocked returns the segment holding seq, which must be a live record.
func (q *Queue) segmentLocked(seq uint64) *segment {
	i := sort.Search(len(q.segs), func(i int) bool { return q.segs[i].first > seq })
	return q.segs[i-1]
}

// Ack acknowledges every record up to and including upTo as delivered, so that they
// are never read again; segments holding only acknowledged records are deleted. A seq
// beyond the last record written acknowledges all records written.
func (q *Queue) Ack(upTo uint64) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	upTo = min(upTo, q.written)
	q.settleLimboLocked(upTo, true)
	if upTo <= q.acked {
		q.mu.Unlock()
		q.tell()
		return nil
	}
	q.releaseLocked(upTo, "")
	q.mu.Unlock()
	q.tell()
	return q.saveState(q.sync)
}

// releaseLocked moves the acknowledged mark to upTo, counting the records it passes as
// delivered (reason "") or dropped for reason. A dropped record the reader may be
// sending goes to limbo instead, to be counted once its fate is known.
func (q *Queue) releaseLocked(upTo uint64, reason DropReason) {
	for s := max(q.acked+1, q.base); s <= upTo; s++ {
		e := q.entryLocked(s)
		if e == nil || !e.live() {
			continue // no record, or already out of the counts
		}
		q.records--
		q.bytes -= int64(e.size)
		switch {
		case reason == "":
			q.delivered++
		case s <= q.held:
			q.limbo = append(q.limbo, limboRec{seq: s, items: e.items, size: e.size})
		default:
			q.countDropLocked(reason, e.items, e.size)
		}
	}
	q.acked = upTo
}

// Acked returns the highest acknowledged seq: every record up to it is done with.
func (q *Queue) Acked() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked
}

// SetInflight records, durably, that a send of the records up to last may be under way.
// Call it before sending, so that after a crash the sender can resend the same records
// as one batch first and a receiver that deduplicates batches recognizes the replay.
func (q *Queue) SetInflight(last uint64) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.inflight = last
	q.mu.Unlock()
	return q.saveState(q.sync)
}

// Inflight returns the last mark SetInflight saved, here or before a restart. A send
// may be in flight only if it is above Acked.
func (q *Queue) Inflight() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight
}

// saveState writes the state file and then deletes the segments it no longer needs:
// in that order, so a crash between the two can't lose the seq floor.
func (q *Queue) saveState(sync bool) error {
	q.smu.Lock()
	defer q.smu.Unlock()
	if q.sf == nil {
		return ErrClosed
	}
	q.mu.Lock()
	q.gen++
	st := state{gen: q.gen, id: q.id, acked: q.acked, inflight: q.inflight, next: q.next}
	q.mu.Unlock()
	if err := writeState(q.sf, &st, sync); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.removeReleasedLocked(st.acked)
}

// removeReleasedLocked deletes the segments whose records are all acknowledged, except
// the one being appended to, and drops their index entries.
func (q *Queue) removeReleasedLocked(acked uint64) error {
	for len(q.segs) > 0 && q.segs[0] != q.active && q.segs[0].last <= acked {
		err := os.Remove(filepath.Join(q.dir, segmentName(q.segs[0].first)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: remove acknowledged segment: %w", err)
		}
		q.segs[0] = nil
		q.segs = q.segs[1:]
	}
	base := q.next
	if len(q.segs) > 0 {
		base = q.segs[0].first
	}
	if base > q.base {
		q.index = q.index[base-q.base:]
		q.base = base
	}
	return nil
}

// Stats returns the queue's current figures.
func (q *Queue) Stats() Stats {
	now := q.clock.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{
		Records:        q.records,
		Bytes:          q.bytes,
		Appended:       q.appended,
		Delivered:      q.delivered,
		DroppedRecords: q.droppedRecs,
		DroppedBytes:   q.droppedBytes,
		DroppedItems:   q.droppedItems,
		CorruptBytes:   q.corrupt,
	}
	for seq := max(q.acked+1, q.base); seq < q.next; seq++ {
		if e := q.entryLocked(seq); e != nil && e.live() {
			s.OldestAge = max(0, now.Sub(time.Unix(0, e.nanos)))
			break
		}
	}
	return s
}

// Close waits for appends under way, saves the state and closes the files. Blocked
// Reads return ErrClosed, as does every later call.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.done)
	for q.filling || q.writing {
		q.batchDone[q.batchNo%2].Wait()
	}
	q.dropLimboLocked()
	q.mu.Unlock()
	q.tell()

	var errs []error
	if q.ww != nil {
		if err := q.ww.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("queue: sync segment: %w", err))
		}
		if err := q.ww.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("queue: close segment: %w", err))
		}
	}
	if err := q.saveState(true); err != nil {
		errs = append(errs, err)
	}
	q.smu.Lock()
	if err := q.sf.Close(); err != nil {
		errs = append(errs, fmt.Errorf("queue: close state: %w", err))
	}
	q.sf = nil
	q.smu.Unlock()

	q.rsem <- struct{}{} // wait for a running Read to see the close; never released
	if q.cur.f != nil {
		q.cur.f.Close()
	}
	return errors.Join(errs...)
}
