package record

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"slices"
	"time"
)

// Bounds on what Summarise reads and keeps, whatever the files hold.
const (
	// maxReadFiles is how many of each stream's newest files Summarise looks at.
	maxReadFiles = 1024
	// maxSummaryKeys bounds the distinct keys a Summary lists over all kinds;
	// the rest count under OtherKey.
	maxSummaryKeys = 10000
	// maxSummaryNames bounds the distinct kinds, signals and destinations.
	maxSummaryNames = 256
)

// Summary totals the record over [From, To). Its JSON form is for machines;
// WriteText says it in words.
type Summary struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// RecordStarts is the time of the oldest line still on disk (zero when the
	// record is empty): before it, nothing is known.
	RecordStarts time.Time `json:"record_starts,omitzero"`

	// Batches and Bytes are the batches the manager accepted and their bytes on
	// the wire; Records counts their records by signal ("logs", "traces", "metrics").
	Batches      int64              `json:"batches"`
	Bytes        int64              `json:"bytes"`
	Records      map[string]int64   `json:"records"`
	Destinations []DestinationTotal `json:"destinations"`

	// RemovedValues is the sum of Removed's counts: values the detectors and
	// sanitisers took out.
	RemovedValues int64       `json:"removed_values"`
	Removed       []KindTotal `json:"removed"`
	// Truncated counts values shortened to the length limit; Dropped counts
	// records dropped whole by a drop pattern (its Signals say which).
	Truncated KindTotal `json:"truncated"`
	Dropped   KindTotal `json:"dropped"`

	// Commands sums the remote commands the manager invoked on this agent.
	Commands CommandTotals `json:"commands"`

	// DamagedLines counts lines skipped because they could not be read: a torn
	// last line after a crash, or a damaged file.
	DamagedLines int64 `json:"damaged_lines"`
}

// DestinationTotal is what went to one destination.
type DestinationTotal struct {
	URL     string `json:"url"`
	Batches int64  `json:"batches"`
	Bytes   int64  `json:"bytes"`
}

// KindTotal is what one kind of removal took out, by key and by signal.
type KindTotal struct {
	Kind    string           `json:"kind"`
	Count   int64            `json:"count"`
	Keys    []KeyCount       `json:"keys"`
	Signals map[string]int64 `json:"signals"`
}

// KeyCount is how many values one attribute key lost.
type KeyCount struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
}

// Summarise totals the record in dir over [from, to). It streams the files, skips
// those wholly outside the range by their first and last lines, and skips (and
// counts) lines it cannot read. A file deleted by rotation while it reads is
// passed over: it was the oldest.
func Summarise(dir string, from, to time.Time) (Summary, error) {
	if !from.Before(to) {
		return Summary{}, fmt.Errorf("summarise the record: from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	a := newAggregate(from, to)
	for _, st := range []struct {
		prefix string
		line   func([]byte) (time.Time, bool)
	}{{sentPrefix, a.sentLine}, {removedPrefix, a.removedLine}, {commandPrefix, a.commandLine}} {
		files, err := listFiles(dir, st.prefix)
		if err != nil {
			return Summary{}, err
		}
		if len(files) > maxReadFiles {
			files = files[len(files)-maxReadFiles:]
		}
		for _, f := range files {
			if err := a.readFile(f.path, st.line); err != nil {
				return Summary{}, err
			}
		}
	}
	return a.summary(), nil
}

// aggregate holds Summarise's running totals, each map bounded.
type aggregate struct {
	s         Summary
	dests     map[string]*DestinationTotal
	kinds     map[string]*kindAgg
	keys      int
	buf       *bufio.Reader
	skipLines bool
}

type kindAgg struct {
	count   int64
	keys    map[string]int64
	signals map[string]int64
}

func newAggregate(from, to time.Time) *aggregate {
	return &aggregate{s: Summary{From: from, To: to, Records: map[string]int64{},
		Commands: CommandTotals{Events: map[string]int64{}, States: map[string]int64{}, Recent: []CommandEvent{}}},
		dests: map[string]*DestinationTotal{}, kinds: map[string]*kindAgg{}}
}

// readFile adds the lines of one file that fall in range. line parses and adds one
// line, returning its time, or false when it is damaged.
func (a *aggregate) readFile(path string, line func([]byte) (time.Time, bool)) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the record: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read the record: %w", err)
	}
	first, last, _, ok := edges(f, st.Size())
	if ok {
		a.starts(first)
		if last.Before(a.s.From) || !first.Before(a.s.To) {
			return nil
		}
	}
	if a.buf == nil {
		a.buf = bufio.NewReaderSize(f, maxLineLen)
	} else {
		a.buf.Reset(f)
	}
	for {
		b, err := a.buf.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			a.skipLines = true // the rest of an overlong line is skipped with it
			continue
		case errors.Is(err, io.EOF):
			if len(b) > 0 || a.skipLines {
				a.s.DamagedLines++ // torn: the writer stopped mid-line
			}
			a.skipLines = false
			return nil
		case err != nil:
			return fmt.Errorf("read the record: %s: %w", path, err)
		}
		if a.skipLines {
			a.skipLines = false
			a.s.DamagedLines++
			continue
		}
		t, ok := line(b)
		if !ok {
			a.s.DamagedLines++
			continue
		}
		a.starts(t)
	}
}

func (a *aggregate) starts(t time.Time) {
	if a.s.RecordStarts.IsZero() || t.Before(a.s.RecordStarts) {
		a.s.RecordStarts = t
	}
}

func (a *aggregate) inRange(t time.Time) bool { return !t.Before(a.s.From) && t.Before(a.s.To) }

func (a *aggregate) sentLine(b []byte) (time.Time, bool) {
	l, err := parseSent(b)
	if err != nil {
		return time.Time{}, false
	}
	if !a.inRange(l.Time) {
		return l.Time, true
	}
	a.s.Batches = add(a.s.Batches, l.Batches)
	a.s.Bytes = add(a.s.Bytes, l.Bytes)
	sig := bounded(a.s.Records, l.Signal)
	a.s.Records[sig] = add(a.s.Records[sig], l.Records)
	url := bounded(a.dests, l.Destination)
	d := a.dests[url]
	if d == nil {
		d = &DestinationTotal{URL: url}
		a.dests[url] = d
	}
	d.Batches, d.Bytes = add(d.Batches, l.Batches), add(d.Bytes, l.Bytes)
	return l.Time, true
}

func (a *aggregate) removedLine(b []byte) (time.Time, bool) {
	l, err := parseRemoved(b)
	if err != nil {
		return time.Time{}, false
	}
	if !a.inRange(l.Time) {
		return l.Time, true
	}
	kind := bounded(a.kinds, l.Kind)
	k := a.kinds[kind]
	if k == nil {
		k = &kindAgg{keys: map[string]int64{}, signals: map[string]int64{}}
		a.kinds[kind] = k
	}
	k.count = add(k.count, l.Count)
	sig := bounded(k.signals, l.Signal)
	k.signals[sig] = add(k.signals[sig], l.Count)
	key := l.Key
	if _, ok := k.keys[key]; !ok && key != OtherKey {
		if a.keys >= maxSummaryKeys {
			key = OtherKey
		} else {
			a.keys++
		}
	}
	k.keys[key] = add(k.keys[key], l.Count)
	return l.Time, true
}

// bounded returns name, or OtherKey when m already holds maxSummaryNames others.
func bounded[V any](m map[string]V, name string) string {
	if _, ok := m[name]; ok || len(m) < maxSummaryNames {
		return name
	}
	return OtherKey
}

// add adds without wrapping: a damaged file may hold huge counts.
func add(a, b int64) int64 {
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

func (a *aggregate) summary() Summary {
	s := a.s
	for _, d := range a.dests {
		s.Destinations = append(s.Destinations, *d)
	}
	slices.SortFunc(s.Destinations, func(x, y DestinationTotal) int {
		return cmp.Or(cmp.Compare(y.Batches, x.Batches), cmp.Compare(x.URL, y.URL))
	})
	s.Removed = []KindTotal{}
	for _, kind := range slices.Sorted(maps.Keys(a.kinds)) {
		k := a.kinds[kind]
		t := KindTotal{Kind: kind, Count: k.count, Signals: k.signals, Keys: make([]KeyCount, 0, len(k.keys))}
		for key, n := range k.keys {
			t.Keys = append(t.Keys, KeyCount{Key: key, Count: n})
		}
		slices.SortFunc(t.Keys, func(x, y KeyCount) int { return cmp.Or(cmp.Compare(y.Count, x.Count), cmp.Compare(x.Key, y.Key)) })
		switch kind {
		case KindTruncated:
			s.Truncated = t
		case KindDroppedRecord:
			s.Dropped = t
		default:
			s.Removed = append(s.Removed, t)
			s.RemovedValues = add(s.RemovedValues, t.Count)
		}
	}
	slices.SortStableFunc(s.Removed, func(x, y KindTotal) int { return cmp.Compare(y.Count, x.Count) })
	if s.Truncated.Kind == "" {
		s.Truncated = KindTotal{Kind: KindTruncated, Keys: []KeyCount{}, Signals: map[string]int64{}}
	}
	if s.Dropped.Kind == "" {
		s.Dropped = KindTotal{Kind: KindDroppedRecord, Keys: []KeyCount{}, Signals: map[string]int64{}}
	}
	if s.Destinations == nil {
		s.Destinations = []DestinationTotal{}
	}
	return s
}
