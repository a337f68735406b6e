package chart

import (
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// Sparkline is a small line chart of one series, without axes, for a table
// cell. Rows that must compare at a glance share one Max.
type Sparkline struct {
	// Width and Height are the chart's size in CSS pixels.
	Width, Height float64
	// Max is the top of the y-scale; the bottom is 0. Values above it are
	// drawn at the top.
	Max float64
	// Values are the points, evenly spaced, oldest first; NaN is a point
	// without data, drawn as a gap.
	Values []float64
	// Title states the figures in words; it becomes the chart's <title>, which
	// screen readers read and browsers show on hover.
	Title string
	// Class is the <svg>'s class attribute.
	Class string
}

// SVG draws the sparkline: a baseline, the series as a line broken where it
// has no data (a point alone between gaps is a short dash), and a dot on the
// last point with data. Text is escaped.
func (s Sparkline) SVG() template.HTML {
	var b strings.Builder
	b.Grow(256 + 14*len(s.Values))
	w, h := num(s.Width), num(s.Height)
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" role="img" width="` + w + `" height="` + h + `" viewBox="0 0 ` + w + " " + h + `"`)
	if s.Class != "" {
		b.WriteString(` class="` + html.EscapeString(s.Class) + `"`)
	}
	b.WriteString(`><title>` + html.EscapeString(s.Title) + `</title>`)
	// The baseline is zero: a flat line on it reads as "no errors".
	base := s.Height - 1
	b.WriteString(`<line class="base" x1="0" y1="` + num(base) + `" x2="` + w + `" y2="` + num(base) + `"/>`)
	var path strings.Builder
	lastX, lastY, last := 0.0, 0.0, false
	pen := false
	for i, v := range s.Values {
		if math.IsNaN(v) {
			pen = false
			continue
		}
		x, y := s.x(i), s.y(v)
		switch {
		case pen:
			path.WriteString("L" + num(x) + " " + num(y))
		case i+1 < len(s.Values) && !math.IsNaN(s.Values[i+1]):
			path.WriteString("M" + num(x) + " " + num(y))
		default:
			// A point alone between gaps would draw nothing: a short dash.
			path.WriteString("M" + num(x-1) + " " + num(y) + "L" + num(x+1) + " " + num(y))
		}
		pen, lastX, lastY, last = true, x, y, true
	}
	if path.Len() > 0 {
		b.WriteString(`<path class="line" fill="none" d="` + path.String() + `"/>`)
	}
	if last {
		b.WriteString(`<circle class="dot" r="1.5" cx="` + num(lastX) + `" cy="` + num(lastY) + `"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// x places point i of the series; a single point sits at the right edge.
func (s Sparkline) x(i int) float64 {
	if len(s.Values) < 2 {
		return s.Width - 1
	}
	return 1 + float64(i)*(s.Width-2)/float64(len(s.Values)-1)
}

// y places value v: 0 on the baseline, Max one pixel below the top.
func (s Sparkline) y(v float64) float64 {
	if s.Max <= 0 || v <= 0 {
		return s.Height - 1
	}
	return s.Height - 1 - min(v/s.Max, 1)*(s.Height-2)
}

// NiceMax rounds v up to 1, 2 or 5 times a power of ten, and to at least
// floor: a scale people read without thinking ("0–5%").
func NiceMax(v, floor float64) float64 {
	v = max(v, floor)
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return floor
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		// The tolerance keeps 0.3/0.1 (2.9999…) from rounding up to the next step.
		if v <= m*p*(1+1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// num formats a coordinate with at most one decimal.
func num(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }
