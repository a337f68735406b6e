package runtime

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Bounds on what a watched component's output (a replica's stderr, a
// container's log) leaves in the agent's memory.
const (
	// TailLines is how many of its last lines a component keeps.
	TailLines = 20
	// MaxLineBytes bounds one kept line; the rest of a longer line is dropped.
	MaxLineBytes = 512
)

// Tail keeps the last TailLines lines written to it, each cut to MaxLineBytes,
// so a component writing without end holds at most TailLines·MaxLineBytes bytes
// of the agent's memory. Its zero value is ready; it is not safe for
// concurrent use.
type Tail struct {
	lines [TailLines]string
	n     int // lines kept
	next  int // where the next line goes
	// cur is the line being written, cut at MaxLineBytes; long marks that it was.
	cur  []byte
	long bool
}

// Write takes p whole, keeping what the bounds allow.
func (t *Tail) Write(p []byte) (int, error) {
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

// Flush ends a last line written without a newline.
func (t *Tail) Flush() {
	if len(t.cur) > 0 {
		t.endLine()
	}
}

func (t *Tail) endLine() {
	line := strings.TrimRight(strings.ToValidUTF8(string(t.cur), "\uFFFD"), "\r \t")
	// Each invalid byte becomes a three-byte U+FFFD, so a line that fitted
	// can outgrow the bound here: cut it as a long one.
	if t.long || len(line) > MaxLineBytes {
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
func (t *Tail) Lines() []string {
	out := make([]string, 0, t.n)
	for i := range t.n {
		out = append(out, t.lines[(t.next-t.n+i+TailLines)%TailLines])
	}
	return out
}

// LastError is a component's last error: the exit reason with its last output
// lines joined by " | ", within max bytes: the reason whole (cut only past
// half the bound), then as much of the end of the lines as fits, since the
// last line is what the operator needs.
func LastError(reason string, lines []string, max int) string {
	reason = Bounded(reason, max/2)
	if len(lines) == 0 {
		return reason
	}
	joined := strings.Join(lines, " | ")
	if room := max - len(reason) - len(": "); len(joined) > room {
		cut := len(joined) - (room - len("…"))
		for cut < len(joined) && !utf8.RuneStart(joined[cut]) {
			cut++
		}
		joined = "…" + joined[cut:]
	}
	return reason + ": " + joined
}
