package record

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzSummarise feeds arbitrary file contents to Summarise as both streams: a
// corrupt or hostile file must not crash the report, and whatever it accepts stays
// within the bounds the writer keeps.
func FuzzSummarise(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-05T10:00:00Z","signal":"logs","records":3,"bytes":10,"batches":1,"destination":"https://m.example"}` + "\n"))
	f.Add([]byte(`{"time":"2026-12-05T10:00:00Z","signal":"logs","kind":"email","key":"user.email","count":4}` + "\n" + `{"time":"2026-12-05T10:0`))
	f.Add([]byte(`{"time":"2026-12-05T10:00:00Z","signal":"logs","records":9223372036854775807,"bytes":1,"batches":1}` + "\n" +
		`{"time":"2026-12-05T10:00:01Z","signal":"logs","records":9223372036854775807,"bytes":1,"batches":1}` + "\n"))
	f.Add([]byte("\n\n{}\n[]\nnull\n"))
	dir := f.TempDir() // one per fuzzing process, whose inputs run one at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{fileName(sentPrefix, 1), fileName(removedPrefix, 1)} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Summarise(dir, time.Time{}.Add(time.Nanosecond), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		if s.Batches < 0 || s.Bytes < 0 || s.RemovedValues < 0 || s.DamagedLines < 0 {
			t.Fatalf("negative totals from a file: %+v", s)
		}
		for _, k := range s.Removed {
			if len(k.Kind) > maxKindLen {
				t.Fatalf("kind of %d bytes kept", len(k.Kind))
			}
			for _, key := range k.Keys {
				if len(key.Key) > maxKeyLen || key.Count < 1 {
					t.Fatalf("key %q with count %d kept", key.Key, key.Count)
				}
			}
		}
		if err := s.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatal(err)
		}
	})
}

// Lines the writer never writes (overlong, not JSON, negative counts, no time) are
// skipped and counted, and the lines after them still count.
func TestDamagedLinesAreSkipped(t *testing.T) {
	dir := t.TempDir()
	good := `{"time":"2026-12-05T10:00:00Z","signal":"logs","records":3,"bytes":10,"batches":1,"destination":"https://m.example"}` + "\n"
	data := `{"time":"2026-12-05T10:00:00Z","signal":"logs","destination":"` + strings.Repeat("x", 3*maxLineLen) + `"}` + "\n" +
		"not json\n" +
		`{"time":"2026-12-05T10:00:00Z","signal":"logs","records":-3,"bytes":10,"batches":1}` + "\n" +
		`{"signal":"logs","records":3,"bytes":10,"batches":1}` + "\n" +
		good + good
	if err := os.WriteFile(filepath.Join(dir, fileName(sentPrefix, 1)), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Summarise(dir, t0, t0.Add(time.Hour))
	if err != nil || s.DamagedLines != 4 || s.Batches != 2 || s.Records["logs"] != 6 {
		t.Errorf("Summarise = %v, %d damaged, %d batches, %d records; want 4 damaged, 2 batches, 6 records", err, s.DamagedLines, s.Batches, s.Records["logs"])
	}
}

// A file ending in more unbroken bytes than the tail a reader looks at is read
// whole rather than trusted or crashed on.
func TestLongTornTail(t *testing.T) {
	dir := t.TempDir()
	good := `{"time":"2026-12-05T10:00:00Z","signal":"logs","records":3,"bytes":10,"batches":1,"destination":"https://m.example"}` + "\n"
	data := good + strings.Repeat("x", 2*edgeBytes)
	if err := os.WriteFile(filepath.Join(dir, fileName(sentPrefix, 1)), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Summarise(dir, t0, t0.Add(time.Hour))
	if err != nil || s.DamagedLines != 1 || s.Batches != 1 {
		t.Errorf("Summarise = %v, %d damaged, %d batches; want 1 damaged, 1 batch", err, s.DamagedLines, s.Batches)
	}
	r, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after a long torn tail: %v", err)
	}
	_ = r.Shutdown(t.Context())
}
