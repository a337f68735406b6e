package otlp

import "fmt"

// MaxJSONDepth bounds how deeply arrays and objects nest in an OTLP/JSON
// request. Every message of a valid request adds at most two levels (an array
// of it and its object), and Tag accepts attribute values nested maxDepth deep
// below a record, so valid requests stay under 80 levels; the bound leaves room.
const MaxJSONDepth = 4 * maxDepth

// checkJSONDepth fails with ErrMalformed when data nests arrays or objects more
// than MaxJSONDepth deep. It scans the bytes once without allocating, so depth
// is refused before a decoder spends memory on it: pdata's decoder takes
// hundreds of bytes per level, and a few megabytes of brackets are enough to
// cost gigabytes. Brackets inside strings, escaped quotes included, do not count.
func checkJSONDepth(data []byte) error {
	depth, inString, escaped := 0, false, false
	for i, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > MaxJSONDepth {
				return fmt.Errorf("%w: JSON nested deeper than %d levels (at byte %d)", ErrMalformed, MaxJSONDepth, i)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}
