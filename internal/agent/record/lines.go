package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The two streams' file name prefixes.
const (
	sentPrefix    = "sent-"
	removedPrefix = "removed-"
	fileSuffix    = ".jsonl"
)

// Bounds on the strings one line holds. Keys come from the application's telemetry,
// so an attacker can choose them; the others come from the agent's own code and
// configuration and are bounded anyway, because a reader trusts no file.
const (
	maxSignalLen = 32
	maxKindLen   = 64
	maxKeyLen    = 256
	maxDestLen   = 512
	// maxLineLen bounds one line a reader accepts; a written line is far shorter
	// (the fields above plus numbers and names).
	maxLineLen = 8192
)

// OtherKey stands for the attribute keys past the bound on distinct keys, in the
// files and in a Summary.
const OtherKey = "(other)"

// Kinds with a sentence of their own in a summary rather than a place in the list
// of removed values.
const (
	KindTruncated     = "truncated"
	KindDroppedRecord = "dropped_record"
)

// sentLine is one line of the sent stream: one batch, or several alike when
// batches arrive faster than they can be written (Batches > 1).
type sentLine struct {
	Time        time.Time `json:"time"`
	Signal      string    `json:"signal"`
	Records     int64     `json:"records"`
	Bytes       int64     `json:"bytes"`
	Batches     int64     `json:"batches"`
	Destination string    `json:"destination"`
}

// removedLine is one line of the removed stream: what one flush interval removed
// under one signal, kind and key.
type removedLine struct {
	Time   time.Time `json:"time"`
	Signal string    `json:"signal"`
	Kind   string    `json:"kind"`
	Key    string    `json:"key"`
	Count  int64     `json:"count"`
}

// parseSent reads one sent line, refusing what the writer never writes.
func parseSent(b []byte) (sentLine, error) {
	var l sentLine
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("sent line: %w", err)
	}
	if l.Time.IsZero() || l.Signal == "" || l.Records < 0 || l.Bytes < 0 || l.Batches < 1 {
		return l, fmt.Errorf("sent line: missing time or signal, or a negative count")
	}
	l.Signal, l.Destination = clip(l.Signal, maxSignalLen), clip(l.Destination, maxDestLen)
	return l, nil
}

// parseRemoved reads one removed line, refusing what the writer never writes.
func parseRemoved(b []byte) (removedLine, error) {
	var l removedLine
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("removed line: %w", err)
	}
	if l.Time.IsZero() || l.Signal == "" || l.Kind == "" || l.Count < 1 {
		return l, fmt.Errorf("removed line: missing time, signal or kind, or a count below 1")
	}
	l.Signal, l.Kind, l.Key = clip(l.Signal, maxSignalLen), clip(l.Kind, maxKindLen), clip(l.Key, maxKeyLen)
	return l, nil
}

// lineTime reads only the time of a line of either stream, for skipping files.
func lineTime(b []byte) (time.Time, bool) {
	var l struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(b, &l) != nil || l.Time.IsZero() {
		return time.Time{}, false
	}
	return l.Time, true
}

// clip returns s cut to at most n bytes at a UTF-8 boundary, as its own copy: the
// caller's string may point into a request buffer that is reused after the call.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
		for len(s) > 0 && !utf8.ValidString(s[len(s)-min(len(s), utf8.UTFMax):]) {
			s = s[:len(s)-1]
		}
	}
	return strings.Clone(s)
}

// file is one file of a stream.
type file struct {
	seq  uint64
	path string
}

func fileName(prefix string, seq uint64) string {
	return fmt.Sprintf("%s%020d%s", prefix, seq, fileSuffix)
}

// listFiles returns the stream's files in dir, oldest first.
func listFiles(dir, prefix string) ([]file, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list the record in %s: %w", dir, err)
	}
	var fs []file
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		digits, ok := strings.CutSuffix(rest, fileSuffix)
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			continue
		}
		fs = append(fs, file{seq: seq, path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(fs, func(a, b file) int { return cmpUint(a.seq, b.seq) })
	return fs, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// edgeBytes is how much of a file's head or tail is read to find its first or last
// whole line: many lines' worth.
const edgeBytes = 4 * maxLineLen

// edges returns the times of the first and the last whole line of f, and whether
// the file ends in a torn line. ok is false when either line cannot be read, and
// then the file must be read whole to know what it holds.
func edges(f *os.File, size int64) (first, last time.Time, torn, ok bool) {
	if size == 0 {
		return first, last, false, false
	}
	head := make([]byte, min(size, edgeBytes))
	if _, err := f.ReadAt(head, 0); err != nil {
		return first, last, false, false
	}
	i := bytes.IndexByte(head, '\n')
	if i < 0 {
		return first, last, false, false
	}
	first, ok1 := lineTime(head[:i])
	tail := head
	off := size - int64(len(tail))
	if off > 0 {
		tail = make([]byte, edgeBytes)
		if _, err := f.ReadAt(tail, off); err != nil {
			return first, last, false, false
		}
	}
	torn = tail[len(tail)-1] != '\n'
	end := bytes.LastIndexByte(tail, '\n')
	start := bytes.LastIndexByte(tail[:max(end, 0)], '\n') + 1
	if end < 0 || (start == 0 && off > 0) {
		return first, last, torn, false // the last whole line is longer than the tail read
	}
	last, ok2 := lineTime(tail[start:end])
	return first, last, torn, ok1 && ok2
}
