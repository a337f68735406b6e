package agentcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/agent/record"
	"github.com/periscope-dev/periscope/internal/clock"
)

// writeRecord records what an agent with data directory dataDir sent and removed.
func writeRecord(t *testing.T, dataDir string, c clock.Clock, sent func(r *record.Record)) {
	t.Helper()
	r, err := record.Open(record.Options{Dir: record.Dir(dataDir), Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	sent(r)
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func runReport(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := New()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(append([]string{"report"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

// `periscope-agent report` reads the files the agent's record wrote and says what it
// sent and removed in the range asked, as words or as JSON, finding the data
// directory from --data-dir or from the agent's config file.
func TestReportVerb(t *testing.T) {
	unsetenv(t, "PERISCOPE_DATA_DIR")
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	c := clock.NewFake(t0)
	dataDir := t.TempDir()
	writeRecord(t, dataDir, c, func(r *record.Record) {
		for range 4 {
			r.Sent("logs", 250, 30_000, "https://manager.example")
			c.Advance(time.Minute)
		}
		r.Sent("traces", 12, 4_000, "https://manager.example")
		r.Removed("logs", []record.Removal{{Kind: "email", Key: "user.email", Count: 7}, {Kind: "bearer", Key: "http.request.header.authorization", Count: 1}})
		if err := r.Flush(); err != nil { // as the agent's flush loop does every interval
			t.Fatal(err)
		}
		c.Advance(2 * time.Hour)
		r.Sent("logs", 1, 100, "https://manager.example") // outside the range asked below
	})

	out, err := runReport(t, "--data-dir", dataDir, "--from", "2026-12-05T10:00:00Z", "--to", "2026-12-05T11:00:00Z")
	want := "From 2026-12-05 10:00 to 11:00 UTC this agent sent 1,000 log records and 12 spans in 5 batches (124.0 kB) to https://manager.example.\n" +
		"It removed 8 values before sending: 7 e-mail addresses (user.email 7), 1 bearer token (http.request.header.authorization 1).\n" +
		"It never records the removed values themselves.\n"
	if err != nil || out != want {
		t.Errorf("report: %v\n%s\nwant:\n%s", err, out, want)
	}

	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte("data_dir: "+dataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runReport(t, "--config", cfg, "--from", "2026-12-05T10:00:00Z", "--json")
	var s record.Summary
	if err == nil {
		err = json.Unmarshal([]byte(out), &s)
	}
	if err != nil || s.Batches != 6 || s.Records["logs"] != 1001 || s.RemovedValues != 8 || s.Destinations[0].URL != "https://manager.example" {
		t.Errorf("report --config --json: %v, %+v", err, s)
	}
}

// --since counts back from now, so a record written just now is in the last hour.
func TestReportSince(t *testing.T) {
	dataDir := t.TempDir()
	writeRecord(t, dataDir, clock.Real{}, func(r *record.Record) { r.Sent("metrics", 40, 900, "https://manager.example") })
	out, err := runReport(t, "--data-dir", dataDir, "--since", "1h")
	if err != nil || !strings.Contains(out, "this agent sent 40 metric points in 1 batch (900 bytes)") {
		t.Errorf("report --since 1h: %v\n%s", err, out)
	}
}

// A wrong directory or range is an error that says what to give instead.
func TestReportErrors(t *testing.T) {
	unsetenv(t, "PERISCOPE_DATA_DIR")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", filepath.Join(t.TempDir(), "nothing")}, "no record in"},
		{[]string{"--data-dir", t.TempDir(), "--since", "soon"}, "since"},
		{[]string{"--data-dir", t.TempDir(), "--since", "1h", "--from", "2026-12-05T10:00:00Z"}, "since"},
		{[]string{"--data-dir", t.TempDir(), "--from", "2026-12-05T10:00:00Z", "--to", "2026-12-05T09:00:00Z"}, "before"},
		{[]string{"--config", "x.yaml", "--data-dir", t.TempDir()}, "config"},
	} {
		if _, err := runReport(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("report %v: err = %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

// unsetenv removes a variable for the test, restoring it after: an empty
// PERISCOPE_DATA_DIR would override the config file.
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "")
	os.Unsetenv(name)
}
