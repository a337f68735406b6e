package fleet

import (
	"strconv"
	"strings"
	"testing"
)

// compareVersionsByHand is the first, allocating CompareVersions, kept as the
// reference the allocation-free one must agree with.
func compareVersionsByHand(a, b string) int {
	a, b = strings.TrimPrefix(a, "v"), strings.TrimPrefix(b, "v")
	if a == b {
		return 0
	}
	ac, apre, _ := strings.Cut(strings.SplitN(a, "+", 2)[0], "-")
	bc, bpre, _ := strings.Cut(strings.SplitN(b, "+", 2)[0], "-")
	if c := compareDottedByHand(ac, bc); c != 0 {
		return c
	}
	switch {
	case apre == "" && bpre != "":
		return 1
	case apre != "" && bpre == "":
		return -1
	}
	if c := compareDottedByHand(apre, bpre); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func compareDottedByHand(a, b string) int {
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
		case xerr == nil:
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

func TestCompareVersionsAgreesWithTheReference(t *testing.T) {
	vs := []string{"", "v", "1", "1.", "1.0", "1..0", ".1", "1.0.0", "v1.0.0", "1.0.0+build.5", "1.0.0-rc.1+b", "1.0.0-rc.1", "1.0.0-rc.10",
		"1.0.0-alpha", "1.0.0-1", "1.10", "1.9", "2024.11.3", "18446744073709551615", "18446744073709551616", "99999999999999999999.1",
		"1.x", "1.x.2", "abc", "ABC", "1.0-", "1-", "-1", "1.0.0-rc..1", "01.2", "1.02"}
	for _, a := range vs {
		for _, b := range vs {
			if got, want := CompareVersions(a, b), compareVersionsByHand(a, b); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d; the reference says %d", a, b, got, want)
			}
		}
	}
}

func TestCompareVersionsDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { CompareVersions("1.10.0-rc.2+build.7", "v1.10.0-rc.x") }); n != 0 {
		t.Fatalf("CompareVersions allocates %v times per call", n)
	}
}
