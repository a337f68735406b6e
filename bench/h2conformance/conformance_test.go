package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/testenv"
)

// Our gRPC server fails no h2spec case that grpc-go, serving the same OTLP services,
// passes. Both run side by side under the same h2spec.
func TestConformsAtLeastAsWellAsGRPCGo(t *testing.T) {
	h2spec := testenv.Peer(t, "h2spec")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err := runBoth(ctx, h2spec, 2)
	if err != nil {
		t.Fatal(err)
	}
	ours, other, regressions := summary(rows)
	t.Logf("%d h2spec cases: periscope fails %d, grpc-go fails %d", len(rows), ours, other)
	if len(regressions) > 0 {
		var b strings.Builder
		writeTable(&b, rows, true)
		t.Errorf("%d cases fail on our server only:\n%s", len(regressions), b.String())
	}
}

// The report reader numbers cases within their section, as h2spec does.
func TestParseJUnitNumbersCasesBySection(t *testing.T) {
	const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="6.5.2. Defined SETTINGS Parameters" package="http2/6.5.2" id="6.5.2" tests="2" skipped="0" failures="1" errors="0">
    <testcase package="http2/6.5.2" classname="SETTINGS_ENABLE_PUSH (0x2): Sends the value other than 0 or 1" time="0.0010">
      <failure>Expect:
GOAWAY Frame (Error Code: PROTOCOL_ERROR)
Actual:
Timeout</failure>
    </testcase>
    <testcase package="http2/6.5.2" classname="SETTINGS_INITIAL_WINDOW_SIZE (0x4): Sends the value above the maximum flow control window size" time="0.0010"></testcase>
  </testsuite>
  <testsuite name="5.1.2. Stream Concurrency" package="http2/5.1.2" id="5.1.2" tests="1" skipped="1" failures="0" errors="0">
    <testcase package="http2/5.1.2" classname="Sends HEADERS frames that causes their advertised concurrent stream limit to be exceeded" time="0.0000">
      <skipped></skipped>
    </testcase>
  </testsuite>
</testsuites>`
	cases, err := parseJUnit(strings.NewReader(report))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id      string
		outcome Outcome
	}{{"http2/6.5.2/1", Failed}, {"http2/6.5.2/2", Passed}, {"http2/5.1.2/1", Skipped}}
	if len(cases) != len(want) {
		t.Fatalf("%d cases, want %d: %+v", len(cases), len(want), cases)
	}
	for i, w := range want {
		if cases[i].ID != w.id || cases[i].Outcome != w.outcome {
			t.Errorf("case %d: %s %s, want %s %s", i, cases[i].ID, cases[i].Outcome, w.id, w.outcome)
		}
	}
	rows := compare(cases, []Case{{ID: "http2/6.5.2/1", Outcome: Passed}})
	if !rows[0].Regression() || rows[1].Regression() {
		t.Errorf("regressions: %v %v, want only the first", rows[0].Regression(), rows[1].Regression())
	}
}
