package chart

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"time"
)

// Point is one value of a series at a time. A NaN value is a gap (no data in
// that step): the line breaks there instead of dropping to zero.
type Point struct {
	T time.Time
	V float64
}

// Series is one line of a time chart. Release, when set, says which release the
// figures belong to; the page's read-out and legend group series by it.
type Series struct {
	// Name labels the series in the legend and the read-out.
	Name string
	// Release is the release the series belongs to ("" when not split by release).
	Release string
	// Colour picks the palette slot (0-based, taken modulo the palette size), so
	// every chart on a page draws one release in one colour.
	Colour int
	// Dash draws the line dashed (the second and third of p50/p95/p99).
	Dash   int
	Points []Point
}

// Marker is a labelled vertical line at a time: a release change, drawn the way
// Grafana annotations mark deploys.
type Marker struct {
	At    time.Time
	Label string
	// Kind goes into data-marker ("release").
	Kind string
}

// Palette is how many series colours the stylesheet defines (--series-1..5).
const Palette = 5

// TimeSeries is a time chart: series over one time range with markers, drawn
// as SVG with every figure in a data attribute and a <title>.
type TimeSeries struct {
	// ID names the chart in data-chart ("error-rate", "throughput", …).
	ID string
	// Title is the chart's accessible name.
	Title string
	// Since and Until are the time axis; every chart on a page shares them.
	Since, Until time.Time
	Series       []Series
	Markers      []Marker
	// Format writes a value with its unit ("12%", "350 ms"); plain numbers when nil.
	Format func(float64) string
	// Width and Height are the SVG's viewBox in pixels (default 420×170).
	Width, Height int
}

// Plot margins inside the viewBox: room for y labels on the left, the legend
// on top and the time labels below.
const (
	marginLeft   = 52
	marginRight  = 10
	marginTop    = 22
	marginBottom = 20
)

// LinearScale maps a domain [D0, D1] onto a range [R0, R1].
type LinearScale struct{ D0, D1, R0, R1 float64 }

// Map returns where v falls in the range; the middle of it for an empty domain.
func (s LinearScale) Map(v float64) float64 {
	if s.D1 == s.D0 {
		return (s.R0 + s.R1) / 2
	}
	return s.R0 + (v-s.D0)/(s.D1-s.D0)*(s.R1-s.R0)
}

// NiceTicks returns about n round tick values (1, 2 or 5 times a power of ten)
// from 0 to at least max; max <= 0 gives the ticks of [0, 1].
func NiceTicks(max float64, n int) []float64 {
	if n < 1 {
		n = 1
	}
	if !(max > 0) || math.IsInf(max, 0) {
		max = 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for i := 0; ; i++ {
		v := float64(i) * step
		out = append(out, v)
		if v >= max*(1-1e-9) {
			break
		}
	}
	return out
}

// timeSteps are the spacings the time axis chooses from.
var timeSteps = []time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
	2 * 24 * time.Hour, 7 * 24 * time.Hour}

// TimeTicks returns round times (whole minutes, hours, days in UTC) between
// since and until, at most about n of them.
func TimeTicks(since, until time.Time, n int) []time.Time {
	span := until.Sub(since)
	if span <= 0 || n < 1 {
		return nil
	}
	step := timeSteps[len(timeSteps)-1]
	for _, s := range timeSteps {
		if span/s <= time.Duration(n) {
			step = s
			break
		}
	}
	var out []time.Time
	for t := since.UTC().Truncate(step); !t.After(until); t = t.Add(step) {
		if !t.Before(since) {
			out = append(out, t)
		}
	}
	return out
}

// timeLabel formats a tick: the time of day, with the date at midnight or when
// the range spans days.
func timeLabel(t time.Time, span time.Duration) string {
	t = t.UTC()
	if span > 36*time.Hour || (t.Hour() == 0 && t.Minute() == 0) {
		return t.Format("Jan 2 15:04")
	}
	return t.Format("15:04")
}

// ms is a time as Unix milliseconds, the unit the read-out script works in.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// esc escapes text for an SVG text node or a double-quoted attribute.
func esc(s string) string { return html.EscapeString(s) }

// format writes v with the chart's formatter.
func (c *TimeSeries) format(v float64) string {
	if c.Format != nil {
		return c.Format(v)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Empty reports whether no series has a single value to draw.
func (c *TimeSeries) Empty() bool {
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !math.IsNaN(p.V) {
				return false
			}
		}
	}
	return true
}

// max is the largest value drawn (markers do not count).
func (c *TimeSeries) max() float64 {
	m := 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !math.IsNaN(p.V) && !math.IsInf(p.V, 0) && p.V > m {
				m = p.V
			}
		}
	}
	return m
}

// Scales returns the chart's x scale (Unix milliseconds to pixels), its y scale
// (values to pixels, 0 at the bottom) and the y ticks.
func (c *TimeSeries) Scales() (x, y LinearScale, ticks []float64) {
	w, h := c.size()
	ticks = NiceTicks(c.max(), 3)
	x = LinearScale{float64(c.Since.UnixMilli()), float64(c.Until.UnixMilli()), marginLeft, float64(w - marginRight)}
	y = LinearScale{0, ticks[len(ticks)-1], float64(h - marginBottom), marginTop}
	return x, y, ticks
}

func (c *TimeSeries) size() (int, int) {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 420
	}
	if h <= 0 {
		h = 170
	}
	return w, h
}

// SVG draws the chart. Every string from outside (series names, releases,
// marker labels) is escaped. A chart with no values still draws its axes and
// says "no data" in the plot, so the small multiples stay aligned.
func (c *TimeSeries) SVG() string {
	w, h := c.size()
	x, y, ticks := c.Scales()
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" data-chart="%s" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-title" data-since="%s" data-until="%s" data-x0="%d" data-x1="%d" data-y0="%d" data-y1="%d" data-ymax="%s" data-h="%d">`,
		esc(c.ID), w, h, esc(c.ID), ms(c.Since), ms(c.Until), marginLeft, w-marginRight, marginTop, h-marginBottom,
		strconv.FormatFloat(ticks[len(ticks)-1], 'g', -1, 64), h)
	fmt.Fprintf(&b, `<title id="%s-title">%s</title>`, esc(c.ID), esc(c.summary()))
	// Grid and y labels.
	b.WriteString(`<g class="axis">`)
	for _, t := range ticks {
		py := y.Map(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%s" y2="%s"/>`, marginLeft, w-marginRight, num(py), num(py))
		fmt.Fprintf(&b, `<text class="ylabel" x="%d" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`, marginLeft-4, num(py), esc(c.format(t)))
	}
	span := c.Until.Sub(c.Since)
	for _, t := range TimeTicks(c.Since, c.Until, 5) {
		px := x.Map(float64(t.UnixMilli()))
		fmt.Fprintf(&b, `<line class="tick" x1="%s" x2="%s" y1="%d" y2="%d"/>`, num(px), num(px), h-marginBottom, h-marginBottom+3)
		fmt.Fprintf(&b, `<text class="xlabel" x="%s" y="%d" text-anchor="middle">%s</text>`, num(px), h-4, esc(timeLabel(t, span)))
	}
	b.WriteString(`</g>`)
	if c.Empty() {
		fmt.Fprintf(&b, `<text class="nodata" x="%s" y="%s" text-anchor="middle">no data in this range</text>`,
			num(float64(marginLeft+w-marginRight)/2), num(float64(marginTop+h-marginBottom)/2))
	}
	// Series.
	for _, s := range c.Series {
		c.series(&b, s, x, y)
	}
	// Markers over the series, so a release change is never hidden.
	for _, m := range c.Markers {
		if m.At.Before(c.Since) || m.At.After(c.Until) {
			continue
		}
		px := num(x.Map(float64(m.At.UnixMilli())))
		kind := m.Kind
		if kind == "" {
			kind = "release"
		}
		fmt.Fprintf(&b, `<g class="marker" data-marker="%s" data-at="%s" data-label="%s"><title>%s</title>`,
			esc(kind), ms(m.At), esc(m.Label), esc(m.Label+" at "+m.At.UTC().Format(time.RFC3339)))
		fmt.Fprintf(&b, `<line x1="%s" x2="%s" y1="%d" y2="%d"/>`, px, px, marginTop-4, h-marginBottom)
		fmt.Fprintf(&b, `<text x="%s" y="%d" text-anchor="start">%s</text></g>`, px, marginTop-6, esc(m.Label))
	}
	// The crosshair and read-out the script moves; hidden until it does.
	fmt.Fprintf(&b, `<line class="crosshair" x1="0" x2="0" y1="%d" y2="%d" visibility="hidden"/>`, marginTop, h-marginBottom)
	fmt.Fprintf(&b, `<rect class="brush" x="0" y="%d" width="0" height="%d" visibility="hidden"/>`, marginTop, h-marginTop-marginBottom)
	b.WriteString(`</svg>`)
	return b.String()
}

// series draws one line, broken at gaps, with its figures in data-points
// ("unixms:value" pairs) and a summary in its <title>.
func (c *TimeSeries) series(b *strings.Builder, s Series, x, y LinearScale) {
	var d, pts strings.Builder
	pen := false
	for _, p := range s.Points {
		if math.IsNaN(p.V) {
			pen = false
			continue
		}
		if pts.Len() > 0 {
			pts.WriteByte(' ')
		}
		pts.WriteString(ms(p.T) + ":" + strconv.FormatFloat(p.V, 'g', 6, 64))
		cmd := "L"
		if !pen {
			cmd = "M"
		}
		d.WriteString(cmd + num(x.Map(float64(p.T.UnixMilli()))) + "," + num(y.Map(p.V)))
		pen = true
	}
	class := "series s" + strconv.Itoa(s.Colour%Palette+1)
	if s.Dash > 0 {
		class += " dash" + strconv.Itoa(s.Dash)
	}
	rel := ""
	if s.Release != "" {
		rel = ` data-release="` + esc(s.Release) + `"`
	}
	fmt.Fprintf(b, `<g class="%s" data-series="%s"%s data-label="%s" data-points="%s"><title>%s</title>`,
		class, esc(s.Name), rel, esc(s.Name), pts.String(), esc(c.seriesSummary(s)))
	if d.Len() > 0 {
		fmt.Fprintf(b, `<path d="%s"/>`, d.String())
	}
	// A lone point between gaps has no line: draw it as a dot.
	for i, p := range s.Points {
		if math.IsNaN(p.V) {
			continue
		}
		before := i == 0 || math.IsNaN(s.Points[i-1].V)
		after := i == len(s.Points)-1 || math.IsNaN(s.Points[i+1].V)
		if before && after {
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="2"/>`, num(x.Map(float64(p.T.UnixMilli()))), num(y.Map(p.V)))
		}
	}
	b.WriteString(`</g>`)
}

// seriesSummary is a series' <title>: its last, lowest and highest values.
func (c *TimeSeries) seriesSummary(s Series) string {
	var n int
	var last Point
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range s.Points {
		if math.IsNaN(p.V) {
			continue
		}
		n++
		last = p
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	if n == 0 {
		return s.Name + ": no data"
	}
	return fmt.Sprintf("%s: %s at %s (min %s, max %s, %d points)", s.Name, c.format(last.V),
		last.T.UTC().Format("15:04"), c.format(lo), c.format(hi), n)
}

// summary is the chart's <title>: what it shows, over what range, and the
// markers on it.
func (c *TimeSeries) summary() string {
	var b strings.Builder
	b.WriteString(c.Title)
	fmt.Fprintf(&b, ", %s to %s", c.Since.UTC().Format(time.RFC3339), c.Until.UTC().Format(time.RFC3339))
	if c.Empty() {
		b.WriteString(": no data")
	}
	for _, m := range c.Markers {
		fmt.Fprintf(&b, "; %s at %s", m.Label, m.At.UTC().Format(time.RFC3339))
	}
	return b.String()
}
