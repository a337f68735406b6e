package fleet

import (
	"strconv"
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
	ac, apre, _ := strings.Cut(strings.SplitN(a, "+", 2)[0], "-")
	bc, bpre, _ := strings.Cut(strings.SplitN(b, "+", 2)[0], "-")
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

func compareDotted(a, b string) int {
	ap, bp := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(ap) || i < len(bp); i++ {
		var x, y string
		if i < len(ap) {
			x = ap[i]
		}
		if i < len(bp) {
			y = bp[i]
		}
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
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
		case xerr == nil: // numeric identifiers sort before alphanumeric ones
			return -1
		case yerr == nil:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return 0
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
