package docker

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers"
	"github.com/periscope-dev/periscope/internal/config"
)

// FuzzDemux feeds the log demultiplexer and the tail behind it hostile
// streams: it must neither panic nor keep more than the tail's bounds.
func FuzzDemux(f *testing.F) {
	f.Add(append(frame(1, "out\n"), frame(2, "err\n")...))
	f.Add(frame(2, strings.Repeat("x", 3000)))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 'a'})
	f.Add([]byte{9, 0, 0, 0, 0, 0, 0, 1, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tl runtime.Tail
		_ = Demux(bytes.NewReader(b), &tl)
		tl.Flush()
		lines := tl.Lines()
		if len(lines) > runtime.TailLines {
			t.Fatalf("%d lines", len(lines))
		}
		for _, l := range lines {
			if len(l) > runtime.MaxLineBytes || !utf8.ValidString(l) {
				t.Fatalf("line out of bounds: %q", l)
			}
		}
	})
}

// FuzzDecode feeds the list and inspect decoders hostile JSON: no panic, only
// hex ids (they go into request paths), and a component whose text is
// bounded.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"list.json", "inspect-shop-worker.json", "inspect-shop-api.json", "inspect-shop-search.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Id":"ab","Name":"/` + strings.Repeat("é", 400) + `","State":{"Status":"exited","Error":"` + strings.Repeat("e", 900) + `"}}`))
	f.Add([]byte(`[{"Id":"../../x"},{"Id":"0f"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if list, err := decodeList(b); err == nil {
			for _, c := range list {
				if !validID(c.ID) {
					t.Fatalf("kept id %q", c.ID)
				}
			}
		}
		st, err := decodeInspect(b)
		if err != nil {
			return
		}
		if !validID(st.ID) || len(st.Name) > config.MaxAttrLen || len(st.Image) > config.MaxAttrLen || len(st.Status) > config.MaxAttrLen {
			t.Fatalf("state out of bounds: %+v", st)
		}
		c := st.Component(time.Now())
		if len(c.LastError) > containers.MaxLastError || !utf8.ValidString(c.LastError) || !utf8.ValidString(c.Name) {
			t.Fatalf("component out of bounds: %+v", c)
		}
	})
}
