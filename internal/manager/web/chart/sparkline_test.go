package chart

import (
	"math"
	"strings"
	"testing"
)

func TestSparklineDrawsOnASharedScale(t *testing.T) {
	nan := math.NaN()
	s := Sparkline{Width: 62, Height: 20, Max: 0.5, Values: []float64{0, 0.25, nan, 0.5, 1}, Title: "2 of 10 failed", Class: "spark"}
	got := string(s.SVG())
	for _, want := range []string{
		`width="62" height="20" viewBox="0 0 62 20" class="spark"`,
		`<title>2 of 10 failed</title>`,
		// 0 on the baseline (y 19), 0.25 half way up, a gap for NaN, and 1 (above
		// Max) clipped to the top (y 1).
		`d="M1 19L16 10M46 1L61 1"`,
		`<circle class="dot" r="1.5" cx="61" cy="1"/>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	// A point alone between gaps is a dash, not nothing.
	alone := Sparkline{Width: 62, Height: 20, Max: 1, Values: []float64{nan, 0.5, nan, 0.5, 0.5}}
	if got := string(alone.SVG()); !strings.Contains(got, `d="M15 10L17 10M46 10L61 10"`) {
		t.Errorf("a lone point: %s", got)
	}
	// The same value on a scale twice as tall is drawn half as high.
	taller := Sparkline{Width: 62, Height: 20, Max: 1, Values: []float64{0.5, 0.5}}
	if got := string(taller.SVG()); !strings.Contains(got, `d="M1 10L61 10"`) {
		t.Errorf("0.5 of 1: %s", got)
	}
}

func TestSparklineWithoutDataAndEscaping(t *testing.T) {
	s := Sparkline{Width: 60, Height: 20, Max: 0.05, Values: []float64{math.NaN(), math.NaN()}, Title: `<script>alert("x")</script>`, Class: `a" onload="x`}
	got := string(s.SVG())
	if strings.Contains(got, "<path") || strings.Contains(got, "<circle") {
		t.Errorf("a series without data drew a line: %s", got)
	}
	if strings.Contains(got, "<script>") || strings.Contains(got, `" onload="`) {
		t.Errorf("title or class not escaped: %s", got)
	}
	if !strings.Contains(got, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Errorf("escaped title missing: %s", got)
	}
	// One point sits at the right edge, as a dash; a zero Max draws everything
	// on the baseline.
	one := Sparkline{Width: 60, Height: 20, Values: []float64{0.3}}
	if got := string(one.SVG()); !strings.Contains(got, `d="M58 19L60 19"`) {
		t.Errorf("one point, no scale: %s", got)
	}
}

func TestNiceMax(t *testing.T) {
	for _, tc := range []struct{ v, floor, want float64 }{
		{0, 0.05, 0.05}, {0.012, 0.05, 0.05}, {0.07, 0.05, 0.1}, {0.11, 0.05, 0.2}, {0.3, 0.05, 0.5},
		{0.5, 0.05, 0.5}, {0.51, 0.05, 1}, {1, 0.05, 1}, {math.NaN(), 0.05, 0.05}, {0.3 / 0.1 / 10, 0.05, 0.5},
	} {
		if got := NiceMax(tc.v, tc.floor); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("NiceMax(%v, %v) = %v, want %v", tc.v, tc.floor, got, tc.want)
		}
	}
}
