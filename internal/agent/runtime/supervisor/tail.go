package supervisor

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Bounds on what a replica's stderr leaves in the agent's memory.
const (
	// TailLines is how many of its last stderr lines a replica keeps.
	TailLines = 20
	// MaxLineBytes bounds one kept line; the rest of a longer line is dropped.
	MaxLineBytes = 512
)

// tail keeps the last TailLines lines written to it, each cut to MaxLineBytes,
// so a workload writing without end holds at most TailLines·MaxLineBytes bytes
// of the agent's memory. It is not safe for concurrent use.
type tail struct {
	lines [TailLines]string
	n     int // lines kept
	next  int // where the next line goes
	// cur is the line being written, cut at MaxLineBytes; long marks that it was.
	cur  []byte
	long bool
}

// Write takes p whole, keeping what the bounds allow.
func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		room := MaxLineBytes - len(t.cur)
		if len(chunk) > room {
			t.long = true
		}
		t.cur = append(t.cur, chunk[:min(max(room, 0), len(chunk))]...)
		if i < 0 {
			break
		}
		t.endLine()
		p = p[i+1:]
	}
	return n, nil
}

// flush ends a last line written without a newline.
func (t *tail) flush() {
	if len(t.cur) > 0 {
		t.endLine()
	}
}

func (t *tail) endLine() {
	line := strings.TrimRight(strings.ToValidUTF8(string(t.cur), "\uFFFD"), "\r \t")
	if t.long {
		// Cut on a rune boundary and mark the cut.
		for len(line) > MaxLineBytes-len("…") {
			_, size := utf8.DecodeLastRuneInString(line)
			line = line[:len(line)-size]
		}
		line += "…"
	}
	t.cur, t.long = t.cur[:0], false
	if strings.TrimSpace(line) == "" {
		return
	}
	t.lines[t.next] = line
	t.next = (t.next + 1) % TailLines
	t.n = min(t.n+1, TailLines)
}

// Lines returns the kept lines, oldest first.
func (t *tail) Lines() []string {
	out := make([]string, 0, t.n)
	for i := range t.n {
		out = append(out, t.lines[(t.next-t.n+i+TailLines)%TailLines])
	}
	return out
}
