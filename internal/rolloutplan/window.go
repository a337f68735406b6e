package rolloutplan

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxWindowText bounds the text of one window, which arrives from config files
// and the API.
const maxWindowText = 128

// Window is a customer's update window: on the named days (of the week, in the
// window's time zone), from Start to End local time. A window whose End is not
// after its Start runs across midnight into the next day; the days name the day
// it starts. It is written as one string, "Sat 02:00-06:00 Europe/Berlin",
// "Mon-Fri 22:00-04:00 America/New_York", "Sat,Sun 00:00-24:00 UTC" or
// "Daily 01:00-03:00 Asia/Tokyo" (an en dash works as well as a hyphen).
//
// Local times follow the zone's daylight saving rules: a wall time the zone
// skips (02:30 on the night clocks jump from 02:00 to 03:00) is the moment the
// clock jumps, and a wall time the zone repeats (the autumn night's second
// 02:30) is its first pass. A window wholly inside the skipped hour does not
// happen that night.
type Window struct {
	// Days has bit d set for time.Weekday d.
	Days uint8
	// Start and End are minutes after local midnight; End may be 1440 (24:00).
	Start, End int
	// Loc is the window's time zone.
	Loc *time.Location

	text string
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow reads a window in Window's form, loading its time zone with
// time.LoadLocation.
func ParseWindow(s string) (Window, error) {
	if len(s) > maxWindowText {
		return Window{}, fmt.Errorf("update window longer than %d characters", maxWindowText)
	}
	f := strings.Fields(strings.ReplaceAll(s, "–", "-"))
	if len(f) != 3 {
		return Window{}, fmt.Errorf("update window %q: want days, times and a time zone, like \"Sat 02:00-06:00 Europe/Berlin\"", s)
	}
	days, err := parseDays(f[0])
	if err != nil {
		return Window{}, fmt.Errorf("update window %q: %w", s, err)
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return Window{}, fmt.Errorf("update window %q: %q is not a time range like 02:00-06:00", s, f[1])
	}
	start, err := parseClock(from, false)
	if err != nil {
		return Window{}, fmt.Errorf("update window %q: %w", s, err)
	}
	end, err := parseClock(to, true)
	if err != nil {
		return Window{}, fmt.Errorf("update window %q: %w", s, err)
	}
	if start == end || (start == 0 && end == 0) {
		return Window{}, fmt.Errorf("update window %q: it starts when it ends; for a whole day write 00:00-24:00", s)
	}
	loc, err := loadLocation(f[2])
	if err != nil {
		return Window{}, fmt.Errorf("update window %q: %w", s, err)
	}
	return Window{Days: days, Start: start, End: end, Loc: loc, text: strings.Join(f, " ")}, nil
}

// loadLocation loads a zone by its IANA name. "Local" is refused: the manager's
// own zone is not the customer's, and would change with the host it runs on.
func loadLocation(name string) (*time.Location, error) {
	if name == "Local" || name == "" {
		return nil, fmt.Errorf("name a time zone like Europe/Berlin or UTC, not %q", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (want an IANA name like Europe/Berlin or UTC)", name)
	}
	return loc, nil
}

func parseDays(s string) (uint8, error) {
	if l := strings.ToLower(s); l == "daily" || l == "*" {
		return 0x7f, nil
	}
	var days uint8
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, ok := dayNames[strings.ToLower(lo)]
		if !ok {
			return 0, fmt.Errorf("%q is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun, a range like Mon-Fri, a list like Sat,Sun, or Daily)", lo)
		}
		b := a
		if isRange {
			if b, ok = dayNames[strings.ToLower(hi)]; !ok {
				return 0, fmt.Errorf("%q is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)", hi)
			}
		}
		// A range wraps past Sunday: Fri-Mon is Fri, Sat, Sun, Mon.
		for d := a; ; d = (d + 1) % 7 {
			days |= 1 << d
			if d == b {
				break
			}
		}
	}
	return days, nil
}

func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("%q is not a time like 02:00 (24:00 only ends a window)", s)
	}
	return hh*60 + mm, nil
}

// String returns the window in the form ParseWindow reads.
func (w Window) String() string { return w.text }

// at is the instant of minute min after local midnight of the day y-m-d in the
// window's zone, under the rules of Window for skipped and repeated wall
// times. time.Date does not promise which instant it picks in either case.
func (w Window) at(y int, m time.Month, d, min int) time.Time {
	return wallTime(y, m, d, min, w.Loc)
}

func wallTime(y int, m time.Month, d, min int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, min/60, min%60, 0, 0, loc)
	want := time.Date(y, m, d, min/60, min%60, 0, 0, time.UTC) // the wall clock, normalised (24:00, day 32)
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t // a zone without transitions
	}
	// The same wall time read under the previous period's offset, if it falls
	// in that period, is an earlier pass of it.
	_, prevOff := start.Add(-time.Nanosecond).Zone()
	if e := want.Add(-time.Duration(prevOff) * time.Second); e.Before(start) && sameWall(e.In(loc), want) {
		return e
	}
	if !sameWall(t, want) {
		return start // skipped: the window begins when the clock jumps
	}
	return t
}

func sameWall(t, want time.Time) bool {
	y1, m1, d1 := t.Date()
	y2, m2, d2 := want.Date()
	return y1 == y2 && m1 == m2 && d1 == d2 && t.Hour() == want.Hour() && t.Minute() == want.Minute()
}

// span returns the window occurrence that starts on the local day of day, and
// whether the window runs that day.
func (w Window) span(day time.Time) (start, end time.Time, ok bool) {
	if w.Days&(1<<day.Weekday()) == 0 {
		return time.Time{}, time.Time{}, false
	}
	y, m, d := day.Date()
	start = w.at(y, m, d, w.Start)
	if w.End > w.Start {
		end = w.at(y, m, d, w.End)
	} else {
		end = w.at(y, m, d+1, w.End)
	}
	// A window lying wholly in the hour a zone skips does not happen that day.
	return start, end, end.After(start)
}

// Open reports whether t is inside the window, and when the occurrence it is
// in ends (zero when it is not inside).
func (w Window) Open(t time.Time) (bool, time.Time) {
	local := t.In(w.Loc)
	y, m, d := local.Date()
	// The occurrence that started yesterday may run across midnight into today.
	for _, off := range []int{-1, 0} {
		day := time.Date(y, m, d+off, 12, 0, 0, 0, w.Loc)
		if s, e, ok := w.span(day); ok && !t.Before(s) && t.Before(e) {
			return true, e
		}
	}
	return false, time.Time{}
}

// Next returns the start of the first occurrence that begins after t (strictly).
func (w Window) Next(t time.Time) time.Time {
	local := t.In(w.Loc)
	y, m, d := local.Date()
	for off := 0; off <= 8; off++ {
		day := time.Date(y, m, d+off, 12, 0, 0, 0, w.Loc)
		if s, _, ok := w.span(day); ok && s.After(t) {
			return s
		}
	}
	return time.Time{} // unreachable for a parsed window: it runs at least one day a week
}

// UnmarshalYAML reads a window from its string form.
func (w *Window) UnmarshalYAML(n *yaml.Node) error {
	p, err := ParseWindow(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*w = p
	return nil
}

// MarshalYAML writes the window as its string form.
func (w Window) MarshalYAML() (any, error) { return w.text, nil }

// UnmarshalJSON reads a window from its string form.
func (w *Window) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("an update window is a string like \"Sat 02:00-06:00 Europe/Berlin\"")
	}
	p, err := ParseWindow(s)
	if err != nil {
		return err
	}
	*w = p
	return nil
}

// MarshalJSON writes the window as its string form.
func (w Window) MarshalJSON() ([]byte, error) { return json.Marshal(w.text) }

// Windows are a set of update windows; the empty set is always open.
type Windows []Window

// Open reports whether t is inside any of the windows (always, when there are
// none) and, when it is not, when the next one starts.
func (ws Windows) Open(t time.Time) (open bool, next time.Time) {
	if len(ws) == 0 {
		return true, time.Time{}
	}
	for _, w := range ws {
		if in, _ := w.Open(t); in {
			return true, time.Time{}
		}
		if n := w.Next(t); next.IsZero() || n.Before(next) {
			next = n
		}
	}
	return false, next
}
