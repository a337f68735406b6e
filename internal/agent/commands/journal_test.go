package commands

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/command"
)

// The journal stays bounded: past its count or age it forgets the oldest
// finished ids, never one still unfinished, and what it keeps survives a
// reopen; a torn last line (a crash mid-write) is skipped.
func TestJournalIsBoundedAndSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	j, err := openJournal(dir, 100, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	old := now.Add(-48 * time.Hour)
	if err := j.write(journalLine{Op: opStarted, ID: "unfinished", At: old}); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		id := fmt.Sprintf("id-%03d", i)
		at := now.Add(time.Duration(i) * time.Second)
		if i < 50 {
			at = old
		}
		u := command.Update{ID: id, State: command.StateSucceeded, At: at, Result: &command.Result{Output: "out"}}
		for _, l := range []journalLine{{Op: opStarted, ID: id, At: at}, {Op: opFinal, ID: id, At: at, Update: &u}, {Op: opAcked, ID: id, At: at}} {
			if err := j.write(l); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.compactIfDue(now.Add(time.Hour), func(string) bool { return false }); err != nil {
			t.Fatal(err)
		}
	}
	if len(j.entries) > 101 {
		t.Errorf("the journal remembers %d ids, want at most 100 and the unfinished one", len(j.entries))
	}
	if j.get("unfinished") == nil || j.get("id-299") == nil || j.get("id-000") != nil {
		t.Error("compaction kept the wrong ids")
	}
	if e := j.get("id-299"); e.final == nil || e.final.Result.Output != "" {
		t.Errorf("an acked outcome keeps its output: %+v", e.final)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, `{"op":"started","id":"torn"`)
	f.Close()
	if fi, err := os.Stat(filepath.Join(dir, journalName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("journal file: %v %v, want 0600", fi, err)
	}
	j2, err := openJournal(dir, 100, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(j2.entries) != len(j.entries) || j2.get("torn") != nil || j2.get("unfinished") == nil {
		t.Errorf("reopened with %d ids (want %d), torn %v", len(j2.entries), len(j.entries), j2.get("torn"))
	}
	// What is written after the torn line is whole.
	if err := j2.write(journalLine{Op: opStarted, ID: "after", At: now}); err != nil {
		t.Fatal(err)
	}
	j2.close()
	j3, err := openJournal(dir, 100, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer j3.close()
	if e := j3.get("after"); e == nil || !e.started {
		t.Error("the line written after a torn one was lost")
	}
}
