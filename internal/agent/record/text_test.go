package record

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
)

// The customer reads the record in sentences with the real figures, the most
// removed first, keys named with their counts.
func TestWriteTextWording(t *testing.T) {
	c := clock.NewFake(t0)
	dir := t.TempDir()
	r := open(t, Options{Dir: dir, Clock: c})
	for i := range 37 {
		switch {
		case i < 20:
			r.Sent("logs", 617, 40_000, "https://manager.example")
		case i < 30:
			r.Sent("traces", 200, 30_000, "https://manager.example")
		default:
			r.Sent("metrics", 114, 14_286, "https://manager.example")
		}
	}
	r.Sent("logs", 5, 98, "https://manager.example")
	r.Removed("logs", []Removal{{"email", "user.email", 400}, {"email", "log.body", 200}, {"card", "payment.card", 20},
		{"custom:order-ref", "log.body", 1}, {"dropped_record", "log.body", 3}, {"truncated", "log.body", 12}})
	r.Removed("traces", []Removal{{"ip", "client.address", 5}, {"ip", "server.address", 4}, {"ip", "net.peer.ip", 3},
		{"ip", "network.peer.address", 2}, {"ip", "http.client_ip", 1}, {"dropped_record", "span.name", 1}})
	flush(t, r)
	s := summarise(t, dir, t0, t0.Add(time.Hour))
	var b bytes.Buffer
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "From 2026-12-05 10:00 to 11:00 UTC this agent sent 12,345 log records, 2,000 spans and 798 metric points in 38 batches (1.2 MB) to https://manager.example.\n" +
		"It removed 636 values before sending: 600 e-mail addresses (user.email 400, log.body 200), 20 payment card numbers (payment.card 20), " +
		"15 IP addresses (client.address 5, server.address 4, net.peer.ip 3, 2 other keys 3), 1 match of the custom pattern order-ref (log.body 1).\n" +
		"It shortened 12 values over the length limit (log.body 12).\n" +
		"It dropped 3 log records and 1 span matching a drop pattern.\n" +
		"It never records the removed values themselves.\n"
	if b.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", b.String(), want)
	}
}

// An empty range says so plainly, and a range reaching before the record says where
// the record begins; dates are written out when the range crosses midnight.
func TestWriteTextEmptyAndPartial(t *testing.T) {
	var b bytes.Buffer
	_ = Summary{From: t0, To: t0.Add(time.Hour)}.WriteText(&b)
	want := "From 2026-12-05 10:00 to 11:00 UTC this agent sent nothing.\nIt removed nothing before sending.\n" +
		"It never records the removed values themselves.\nThe record is empty: nothing has been written to it yet.\n"
	if b.String() != want {
		t.Errorf("empty summary:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	s := Summary{From: t0.Add(-12 * time.Hour), To: t0.Add(30 * time.Second), RecordStarts: t0.Add(-time.Hour),
		Batches: 1, Bytes: 999, Records: map[string]int64{"logs": 1},
		Destinations: []DestinationTotal{{URL: "https://a.example", Batches: 1}, {URL: "https://b.example/x y"}}}
	_ = s.WriteText(&b)
	want = "From 2026-12-04 22:00:00 to 2026-12-05 10:00:30 UTC this agent sent 1 log record in 1 batch (999 bytes) to https://a.example and \"https://b.example/x y\".\n" +
		"It removed nothing before sending.\nIt never records the removed values themselves.\n" +
		"The record begins at 2026-12-05 09:00 UTC; nothing before that is known.\n"
	if b.String() != want {
		t.Errorf("partial summary:\n%s\nwant:\n%s", b.String(), want)
	}
}

// A key an application chose cannot put control characters on the customer's
// terminal.
func TestWriteTextQuotesHostileKeys(t *testing.T) {
	s := Summary{From: t0, To: t0.Add(time.Hour), RemovedValues: 1,
		Removed: []KindTotal{{Kind: "email", Count: 1, Keys: []KeyCount{{"\x1b[2Jevil", 1}}}}}
	var b bytes.Buffer
	_ = s.WriteText(&b)
	if bytes.ContainsRune(b.Bytes(), 0x1b) || !bytes.Contains(b.Bytes(), []byte(`"\x1b[2Jevil" 1`)) {
		t.Errorf("a key with an escape sequence is written as %q", b.String())
	}
}

func TestNumbers(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 12345: "12,345", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{1: "1 byte", 999: "999 bytes", 1000: "1.0 kB", 1_234_567: "1.2 MB", 999_960: "1.0 MB", 5e12: "5.0 TB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
	if got := fmt.Sprint(list([]string{"a", "b", "c"})); got != "a, b and c" {
		t.Errorf("list = %q", got)
	}
}
