package runtime

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTailKeepsTheLastLinesBounded(t *testing.T) {
	var tl Tail
	for i := range 30 {
		// Lines arrive split across writes.
		line := strings.Repeat("x", i) + "\n"
		_, _ = tl.Write([]byte(line[:len(line)/2]))
		_, _ = tl.Write([]byte(line[len(line)/2:]))
	}
	_, _ = tl.Write([]byte(strings.Repeat("é", 1000) + "\n\n   \nlast without newline"))
	tl.Flush()
	got := tl.Lines()
	if len(got) != TailLines {
		t.Fatalf("kept %d lines, want %d", len(got), TailLines)
	}
	long := got[len(got)-2]
	if len(long) > MaxLineBytes || !utf8.ValidString(long) || !strings.HasSuffix(long, "…") {
		t.Errorf("long line kept as %d bytes %q…, want at most %d, valid, marked cut", len(long), long[:10], MaxLineBytes)
	}
	if got[len(got)-1] != "last without newline" || got[0] != strings.Repeat("x", 12) {
		t.Errorf("lines %q … %q", got[0], got[len(got)-1])
	}
}

// A line within the bound whose invalid bytes each become a three-byte
// U+FFFD grows past it when made valid: it is cut like a long one (FuzzDemux
// found it).
func TestTailBoundsALineThatGrowsWhenMadeValid(t *testing.T) {
	var tl Tail
	_, _ = tl.Write([]byte(strings.Repeat("a\xff", MaxLineBytes/2) + "\n"))
	got := tl.Lines()
	if len(got) != 1 || len(got[0]) > MaxLineBytes || !utf8.ValidString(got[0]) || !strings.HasSuffix(got[0], "…") {
		t.Fatalf("kept %d lines, the first %d bytes; want one valid line of at most %d bytes, marked cut", len(got), len(got[0]), MaxLineBytes)
	}
}

func FuzzTail(f *testing.F) {
	f.Add([]byte("a\nb\r\nc"), 3)
	f.Add([]byte(strings.Repeat("a\xff", 256)), 64)
	f.Add([]byte(strings.Repeat("\xff\xfe", 600)), 7)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var tl Tail
		for len(b) > 0 {
			n := min(max(split%64, 1), len(b))
			if w, err := tl.Write(b[:n]); w != n || err != nil {
				t.Fatalf("Write = %d, %v", w, err)
			}
			b = b[n:]
		}
		tl.Flush()
		lines := tl.Lines()
		if len(lines) > TailLines {
			t.Fatalf("%d lines", len(lines))
		}
		if slices.ContainsFunc(lines, func(l string) bool {
			return len(l) > MaxLineBytes || !utf8.ValidString(l) || strings.Contains(l, "\n") || strings.TrimSpace(l) == ""
		}) {
			t.Fatalf("a line out of bounds: %q", lines)
		}
	})
}
