package fleet

import (
	"math"
	"strings"
)

// CompareVersions orders release versions the way people read them: "v" prefixes
// are ignored, dot-separated numeric parts compare as numbers ("1.10" > "1.9"), a
// pre-release ("1.8.0-rc.1") sorts before its release, and anything unparsable
// falls back to string order. It returns -1, 0 or +1.
func CompareVersions(a, b string) int {
	a, b = strings.TrimPrefix(a, "v"), strings.TrimPrefix(b, "v")
	if a == b {
		return 0
	}
	// Build metadata ("+...") does not order versions.
	am, _, _ := strings.Cut(a, "+")
	bm, _, _ := strings.Cut(b, "+")
	ac, apre, _ := strings.Cut(am, "-")
	bc, bpre, _ := strings.Cut(bm, "-")
	if c := compareDotted(ac, bc); c != 0 {
		return c
	}
	switch {
	case apre == "" && bpre != "":
		return 1
	case apre != "" && bpre == "":
		return -1
	}
	if c := compareDotted(apre, bpre); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// compareDotted compares dot-separated identifiers one by one, without
// allocating: the fleet page evaluates every deployment, and so compares
// versions, several hundred thousand times per request at 100,000 deployments.
func compareDotted(a, b string) int {
	for a != "" || b != "" {
		var x, y string
		x, a, _ = strings.Cut(a, ".")
		y, b, _ = strings.Cut(b, ".")
		xn, xok := parseNumber(x)
		yn, yok := parseNumber(y)
		switch {
		case xok && yok:
			if xn != yn {
				if xn < yn {
					return -1
				}
				return 1
			}
		case x == "" && y != "":
			return -1
		case x != "" && y == "":
			return 1
		case xok: // numeric identifiers sort before alphanumeric ones
			return -1
		case yok:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return 0
}

// parseNumber reads a decimal number that fits in 64 bits, as
// strconv.ParseUint(s, 10, 64) would, without allocating an error.
func parseNumber(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// Latest returns the newest version among releases of stack, or "" when there is none.
func Latest(releases []Release, stack string) string {
	latest := ""
	for _, r := range releases {
		if r.Stack == stack && (latest == "" || CompareVersions(r.Version, latest) > 0) {
			latest = r.Version
		}
	}
	return latest
}
