package otlp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzStatusRoundTrip: a status the manager writes reads back with the same message
// (made valid UTF-8) in both encodings, and any body a peer sends as a status parses
// without panicking to a message no longer than the body.
func FuzzStatusRoundTrip(f *testing.F) {
	f.Add(int32(3), "bad request", []byte{0x08, 0x03, 0x12, 0x01, 'x'}, true)
	f.Add(int32(0), "", []byte(`{"code":8,"message":"full"}`), false)
	f.Add(int32(-1), "\xff\xfe", []byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f}, true)
	f.Add(int32(13), "a\x00b", []byte(`{"message":"`), false)
	f.Fuzz(func(t *testing.T, code int32, msg string, body []byte, proto bool) {
		ct := ContentTypeJSON
		if proto {
			ct = ContentTypeProto
		}
		want := strings.ToValidUTF8(msg, "\uFFFD")
		b := Status{Code: code, Message: msg}.Marshal(ct)
		if got := ParseStatusMessage(ct, b); want != "" && got != want {
			t.Errorf("message %q came back as %q", want, got)
		}
		got := ParseStatusMessage(ct, body)
		if len(got) > len(body) && utf8.Valid(body) {
			t.Errorf("message of %d bytes from a body of %d", len(got), len(body))
		}
	})
}
