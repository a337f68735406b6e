package commands

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/statefile"
	"github.com/periscope-dev/periscope/internal/command"
)

// Journal bounds: how many invocation ids, and for how long, the journal
// remembers, so a re-delivered id is recognised yet the file does not grow
// for ever.
const (
	DefaultJournalIDs = 10000
	DefaultJournalAge = 7 * 24 * time.Hour
	// maxJournalLine bounds one line read back: a final update with the
	// largest output, every byte escaped, and room for the rest.
	maxJournalLine = 6*command.MaxOutputLimit + 64<<10
	// maxUnacked bounds the final updates kept with their output until the
	// manager acks them (at most maxUnacked × command.MaxOutputLimit bytes in
	// memory); past it the oldest lose their output and are no longer resent.
	maxUnacked = 64
)

const journalName = "journal.jsonl"

// Journal operations.
const (
	opStarted = "started"
	opFinal   = "final"
	opAcked   = "acked"
)

// journalLine is one line of the journal.
type journalLine struct {
	Op     string          `json:"op"`
	ID     string          `json:"id"`
	At     time.Time       `json:"at"`
	Update *command.Update `json:"update,omitempty"`
	// Invocation, on a started line, is what ran, so the customer's record can
	// name an invocation the agent died running.
	Invocation *command.Invocation `json:"invocation,omitempty"`
}

// entry is what the journal knows of one invocation id.
type entry struct {
	id      string
	first   time.Time // when the id was first journaled, for the age bound
	started bool
	final   *command.Update // nil until the invocation ended
	acked   bool
	inv     *command.Invocation // what started, when known
}

// invocation is what the entry knows of its invocation: at least its id.
func (e *entry) invocation() command.Invocation {
	if e.inv != nil {
		return *e.inv
	}
	return command.Invocation{ID: e.id}
}

// journal is the append-only record of invocation ids that makes execution
// at-most-once across restarts: "started" is written and synced before a
// handler runs, so an id is never run twice whatever happens after.
type journal struct {
	dir     string
	f       *os.File
	lines   int
	entries map[string]*entry
	maxIDs  int
	maxAge  time.Duration
	// torn says the file ends in a line a crash cut short: the next append
	// ends it first, so the new line stays whole.
	torn bool
}

// openJournal reads the journal in dir (created 0700) and returns it with
// every id it remembers. A torn or damaged line (a crash mid-write) is
// skipped.
func openJournal(dir string, maxIDs int, maxAge time.Duration) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("commands journal: create %s: %w", dir, err)
	}
	j := &journal{dir: dir, entries: map[string]*entry{}, maxIDs: maxIDs, maxAge: maxAge}
	path := filepath.Join(dir, journalName)
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("commands journal: %w", err)
	default:
		err = j.read(f)
		if st, serr := f.Stat(); err == nil && serr == nil && st.Size() > 0 {
			last := make([]byte, 1)
			if _, rerr := f.ReadAt(last, st.Size()-1); rerr == nil {
				j.torn = last[0] != '\n'
			}
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("commands journal %s: %w", path, err)
		}
	}
	return j, nil
}

func (j *journal) read(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		b, err := readLine(br, maxJournalLine)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil && !errors.Is(err, errLongLine) {
			return err
		}
		var l journalLine
		if err != nil || json.Unmarshal(b, &l) != nil || l.ID == "" {
			continue // damaged: torn by a crash, or longer than any written
		}
		j.apply(l)
		j.lines++
	}
}

var errLongLine = errors.New("line over its bound")

// readLine reads one newline-terminated line of at most limit bytes; a last
// line without its newline was torn by a crash and reads as io.EOF.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		b, err := br.ReadSlice('\n')
		if len(line)+len(b) <= limit {
			line = append(line, b...)
		} else {
			line = line[:0]
			limit = -1 // keep reading to the end of the line, then refuse it
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			return nil, err
		case limit < 0:
			return nil, errLongLine
		}
		return line, nil
	}
}

// apply adds one line's fact to the entries.
func (j *journal) apply(l journalLine) {
	e := j.entries[l.ID]
	if e == nil {
		e = &entry{id: l.ID, first: l.At}
		j.entries[l.ID] = e
	}
	switch l.Op {
	case opStarted:
		e.started = true
		e.inv = l.Invocation
	case opFinal:
		if l.Update != nil && l.Update.State.Final() {
			u := *l.Update
			e.final, e.inv = &u, nil // the invocation was needed only while unfinished
		}
	case opAcked:
		e.acked = true
		if e.final != nil && e.final.Result != nil {
			r := *e.final.Result
			r.Output = "" // the manager has it: keep only what identifies it
			e.final.Result = &r
		}
	}
}

// get returns what the journal knows of id (nil when nothing).
func (j *journal) get(id string) *entry { return j.entries[id] }

// write appends one line and syncs it: when write returns nil the fact
// survives a crash.
func (j *journal) write(l journalLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("commands journal: %w", err)
	}
	if j.f == nil {
		f, err := os.OpenFile(filepath.Join(j.dir, journalName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("commands journal: %w", err)
		}
		j.f = f
	}
	line := append(b, '\n')
	if j.torn {
		line = append([]byte{'\n'}, line...)
	}
	if _, err := j.f.Write(line); err != nil {
		return fmt.Errorf("commands journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("commands journal: %w", err)
	}
	j.torn = false
	j.apply(l)
	j.lines++
	return nil
}

// unacked returns the final updates the manager has not acked, oldest first.
func (j *journal) unacked() []command.Update {
	var out []command.Update
	for _, e := range j.entries {
		if e.final != nil && !e.acked {
			out = append(out, *e.final)
		}
	}
	slices.SortFunc(out, func(a, b command.Update) int { return a.At.Compare(b.At) })
	return out
}

// compactIfDue rewrites the journal when it holds many more lines than ids,
// or more ids than its bound: ids past the bound or older than the age limit
// are forgotten (an unfinished one is never forgotten: it is still running),
// and acked results lose their output.
func (j *journal) compactIfDue(now time.Time, running func(id string) bool) error {
	unacked := 0
	for _, e := range j.entries {
		if e.final != nil && !e.acked {
			unacked++
		}
	}
	if j.lines <= 2*len(j.entries)+1000 && len(j.entries) <= j.maxIDs && unacked <= maxUnacked {
		return nil
	}
	keep := make([]*entry, 0, len(j.entries))
	for _, e := range j.entries {
		if running(e.id) || (e.started && e.final == nil) {
			keep = append(keep, e)
			continue
		}
		if now.Sub(e.first) <= j.maxAge {
			keep = append(keep, e)
		}
	}
	slices.SortFunc(keep, func(a, b *entry) int { return a.first.Compare(b.first) })
	if n := len(keep) - j.maxIDs; n > 0 {
		var kept []*entry
		for _, e := range keep {
			if n > 0 && e.final != nil {
				n--
				continue
			}
			kept = append(kept, e)
		}
		keep = kept
	}
	unacked = 0
	for i := len(keep) - 1; i >= 0; i-- {
		if e := keep[i]; e.final != nil && !e.acked {
			if unacked++; unacked > maxUnacked {
				j.apply(journalLine{Op: opAcked, ID: e.id}) // too many waiting: drop its output
			}
		}
	}
	var buf []byte
	entries := make(map[string]*entry, len(keep))
	lines := 0
	for _, e := range keep {
		entries[e.id] = e
		add := func(l journalLine) {
			b, _ := json.Marshal(l) // plain data cannot fail to marshal
			buf = append(append(buf, b...), '\n')
			lines++
		}
		if e.started {
			l := journalLine{Op: opStarted, ID: e.id, At: e.first}
			if e.final == nil {
				l.Invocation = e.inv // only an unfinished one still needs it
			}
			add(l)
		}
		if e.final != nil {
			add(journalLine{Op: opFinal, ID: e.id, At: e.first, Update: e.final})
		}
		if e.acked {
			add(journalLine{Op: opAcked, ID: e.id, At: e.first})
		}
	}
	if err := statefile.Write(j.dir, journalName, buf); err != nil {
		return fmt.Errorf("commands journal: compact: %w", err)
	}
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	j.entries, j.lines = entries, lines
	return nil
}

func (j *journal) close() error {
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
