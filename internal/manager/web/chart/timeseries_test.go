package chart_test

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/manager/web/chart"
)

var t0 = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)

func TestNiceTicksAreRoundAndCoverTheMaximum(t *testing.T) {
	for _, tc := range []struct {
		max  float64
		want []float64
	}{
		{0, []float64{0, 0.5, 1}},
		{0.5, []float64{0, 0.2, 0.4, 0.6}},
		{1, []float64{0, 0.5, 1}},
		{37, []float64{0, 20, 40}},
		{100, []float64{0, 50, 100}},
		{420, []float64{0, 200, 400, 600}},
		{math.NaN(), []float64{0, 0.5, 1}},
	} {
		got := chart.NiceTicks(tc.max, 3)
		if len(got) != len(tc.want) {
			t.Errorf("NiceTicks(%v) = %v, want %v", tc.max, got, tc.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-9 {
				t.Errorf("NiceTicks(%v) = %v, want %v", tc.max, got, tc.want)
				break
			}
		}
	}
}

func TestTimeTicksAreRoundTimesInsideTheRange(t *testing.T) {
	since := t0.Add(7 * time.Minute)
	got := chart.TimeTicks(since, since.Add(3*time.Hour), 5)
	if len(got) == 0 || len(got) > 6 {
		t.Fatalf("ticks over 3 h: %v", got)
	}
	for _, tk := range got {
		if tk.Before(since) || tk.After(since.Add(3*time.Hour)) || tk.Minute()%30 != 0 {
			t.Errorf("tick %v is not a round time inside the range", tk)
		}
	}
	if chart.TimeTicks(since, since, 5) != nil {
		t.Error("an empty range has ticks")
	}
}

func TestScalesMapTheRangeOntoThePlot(t *testing.T) {
	c := chart.TimeSeries{ID: "x", Since: t0, Until: t0.Add(time.Hour), Width: 400, Height: 100,
		Series: []chart.Series{{Name: "a", Points: []chart.Point{{t0, 3}, {t0.Add(time.Hour), 7}}}}}
	x, y, ticks := c.Scales()
	if ticks[len(ticks)-1] < 7 {
		t.Fatalf("y ticks %v do not cover 7", ticks)
	}
	if got := x.Map(float64(t0.UnixMilli())); got != 52 {
		t.Errorf("since maps to x=%v, want the left margin 52", got)
	}
	if got := x.Map(float64(t0.Add(time.Hour).UnixMilli())); got != 390 {
		t.Errorf("until maps to x=%v, want 390", got)
	}
	if y.Map(0) <= y.Map(7) {
		t.Errorf("y grows downwards: 0→%v, 7→%v", y.Map(0), y.Map(7))
	}
}

var seriesRE = regexp.MustCompile(`<g class="series[^"]*" data-series="([^"]*)"(?: data-release="([^"]*)")? data-label="[^"]*" data-points="([^"]*)">`)

func TestSeriesByReleaseCarryTheirFiguresAndTheMarkerIsLabelled(t *testing.T) {
	nan := math.NaN()
	c := chart.TimeSeries{ID: "error-rate", Title: "Error rate", Since: t0, Until: t0.Add(time.Hour),
		Format: formatPct,
		Series: []chart.Series{
			{Name: "1.0.0", Release: "1.0.0", Points: []chart.Point{{t0, 0.02}, {t0.Add(10 * time.Minute), 0.01}, {t0.Add(20 * time.Minute), nan}}},
			{Name: "1.1.0", Release: "1.1.0", Colour: 1, Points: []chart.Point{{t0.Add(30 * time.Minute), 0.5}, {t0.Add(40 * time.Minute), 0.4}}},
		},
		Markers: []chart.Marker{{At: t0.Add(30 * time.Minute), Label: "1.1.0", Kind: "release"}},
	}
	svg := c.SVG()
	ms := regexp.MustCompile(`data-chart="error-rate"`)
	if !ms.MatchString(svg) {
		t.Fatal("no data-chart attribute")
	}
	got := seriesRE.FindAllStringSubmatch(svg, -1)
	if len(got) != 2 || got[0][2] != "1.0.0" || got[1][2] != "1.1.0" {
		t.Fatalf("series: %q", got)
	}
	// The gap is left out of the figures, and the values are exact.
	if want := "1772362800000:0.02 1772363400000:0.01"; got[0][3] != want {
		t.Errorf("1.0.0 points %q, want %q", got[0][3], want)
	}
	if !strings.Contains(svg, `class="series s2"`) {
		t.Error("the second release does not take the second colour")
	}
	if !regexp.MustCompile(`<g class="marker" data-marker="release" data-at="1772364600000" data-label="1.1.0"><title>1.1.0 at 2026-03-01T11:30:00Z</title>`).MatchString(svg) {
		t.Errorf("no labelled release marker at 11:30:\n%s", svg)
	}
	if !strings.Contains(svg, "1.1.0: 40% at 11:40 (min 40%, max 50%, 2 points)") {
		t.Errorf("series title lacks the figures:\n%s", svg)
	}
}

func formatPct(v float64) string { return strconv.FormatFloat(v*100, 'f', -1, 64) + "%" }

func TestEmptyChartDrawsItsAxesAndSaysNoData(t *testing.T) {
	c := chart.TimeSeries{ID: "latency", Title: "Latency", Since: t0, Until: t0.Add(time.Hour),
		Series: []chart.Series{{Name: "p95", Points: []chart.Point{{t0, math.NaN()}}}}}
	if !c.Empty() {
		t.Fatal("a chart of gaps is not empty")
	}
	svg := c.SVG()
	for _, want := range []string{"no data in this range", `class="ylabel"`, `class="xlabel"`, "Latency, 2026-03-01T11:00:00Z to 2026-03-01T12:00:00Z: no data"} {
		if !strings.Contains(svg, want) {
			t.Errorf("empty chart lacks %q:\n%s", want, svg)
		}
	}
	if strings.Contains(svg, "<path") {
		t.Error("an empty chart draws a line")
	}
}

func TestMarkersOutsideTheRangeAreLeftOut(t *testing.T) {
	c := chart.TimeSeries{ID: "x", Since: t0, Until: t0.Add(time.Hour),
		Markers: []chart.Marker{{At: t0.Add(-time.Minute), Label: "old"}, {At: t0.Add(time.Minute), Label: "new"}}}
	svg := c.SVG()
	if strings.Count(svg, `data-marker="release"`) != 1 || !strings.Contains(svg, `data-label="new"`) {
		t.Errorf("markers: want only the one inside the range:\n%s", svg)
	}
}

func TestEveryOutsideStringIsEscaped(t *testing.T) {
	evil := `<script>alert(1)</script>"'&`
	c := chart.TimeSeries{ID: evil, Title: evil, Since: t0, Until: t0.Add(time.Hour),
		Series:  []chart.Series{{Name: evil, Release: evil, Points: []chart.Point{{t0, 1}}}},
		Markers: []chart.Marker{{At: t0.Add(time.Minute), Label: evil, Kind: evil}}}
	svg := c.SVG()
	if strings.Contains(svg, "<script") || strings.Contains(svg, `"'&`) {
		t.Fatalf("raw outside string in the SVG:\n%s", svg)
	}
	if !strings.Contains(svg, "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;") {
		t.Errorf("escaped string missing:\n%s", svg)
	}
}

func TestALonePointIsDrawnAsADot(t *testing.T) {
	c := chart.TimeSeries{ID: "x", Since: t0, Until: t0.Add(time.Hour),
		Series: []chart.Series{{Name: "a", Points: []chart.Point{{t0, math.NaN()}, {t0.Add(time.Minute), 1}, {t0.Add(2 * time.Minute), math.NaN()}}}}}
	if svg := c.SVG(); !strings.Contains(svg, "<circle") {
		t.Errorf("a lone point is invisible:\n%s", svg)
	}
}
