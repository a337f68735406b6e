package pgtel

import (
	"strings"
	"testing"
)

// FuzzFixValues: whatever text a sender's records carry, the values handed to
// COPY hold no NUL byte (PostgreSQL's text refuses one, which would refuse the
// batch on every resend) and the JSON columns no escaped NUL (jsonb refuses
// one, which would fail every attribute query); text without either is
// untouched.
func FuzzFixValues(f *testing.F) {
	for _, s := range []string{"plain", "a\x00b", `{"k":"v\u0000"}`, `{"k":"\\u0000"}`, "\x00\x00", ""} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, text, json string) {
		row := []any{text, json, int64(7), nil}
		fixValues(row, []int{1})
		got, gotJSON := row[0].(string), row[1].(string)
		if strings.IndexByte(got, 0) >= 0 || strings.IndexByte(gotJSON, 0) >= 0 || strings.Contains(gotJSON, `\u0000`) {
			t.Fatalf("fixed %q, %q into %q, %q", text, json, got, gotJSON)
		}
		if !strings.Contains(text, "\x00") && got != text {
			t.Fatalf("changed text without a NUL: %q into %q", text, got)
		}
		if row[2] != int64(7) || row[3] != nil {
			t.Fatalf("changed values that are not text: %v", row[2:])
		}
	})
}
