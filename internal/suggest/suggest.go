// Package suggest finds the known name a mistyped one most likely meant, so an
// error can say "did you mean heartbeat_interval?" instead of only "unknown".
package suggest

// maxLen bounds the names compared: Distance is quadratic, and a name longer
// than this is no typo of a key.
const maxLen = 256

// Distance is the Levenshtein edit distance between a and b counted in bytes:
// the fewest insertions, deletions and substitutions turning one into the other.
func Distance(a, b string) int {
	if len(a) > maxLen {
		a = a[:maxLen]
	}
	if len(b) > maxLen {
		b = b[:maxLen]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Nearest returns the candidate closest to name, and false when none is close
// enough to be a plausible typo: within a third of name's length (at least 1,
// at most 3 edits). Ties go to the earlier candidate, so callers pass a stable
// order.
func Nearest(name string, candidates []string) (string, bool) {
	limit := min(max(len(name)/3, 1), 3)
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := Distance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best, bestD <= limit
}
