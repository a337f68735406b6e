package redact

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitizeURL(t *testing.T) {
	tests := []struct {
		in, want string
		removed  int
	}{
		// Query values go, keys and their order stay.
		{"https://shop.example.com/pay?card=4111111111111111&cvv=123", "https://shop.example.com/pay?card=REDACTED&cvv=REDACTED", 2},
		{"https://api.example.com:8443/v1/users?email=jane%40example.com&page=2", "https://api.example.com:8443/v1/users?email=REDACTED&page=2", 1},
		{"/pay?card=4111111111111111", "/pay?card=REDACTED", 1},
		{"/search?q=john+smith&limit=50&offset=100", "/search?q=REDACTED&limit=50&offset=100", 1},
		{"/search?q=john smith", "/search?q=REDACTED", 1},
		// Empty values stay empty, keys without '=' stay.
		{"/a?x=&y&z=1", "/a?x=&y&z=REDACTED", 1},
		{"/a?", "/a?", 0},
		{"/a?&&", "/a?&&", 0},
		// Repeated keys and ';' separators.
		{"/a?id=1&id=2;id=3", "/a?id=REDACTED&id=REDACTED;id=REDACTED", 3},
		// A value holding '=' goes whole.
		{"/a?token=abc==&x=a=b", "/a?token=REDACTED&x=REDACTED", 2},
		// Percent-encoded keys match the allow-list; encoded delimiters are not delimiters.
		{"/a?pag%65=3&Page=4&q=a%26b%3Dc", "/a?pag%65=3&Page=4&q=REDACTED", 1},
		// Userinfo.
		{"https://user:pass@host.example.com/x", "https://REDACTED:REDACTED@host.example.com/x", 1},
		{"https://token@host.example.com", "https://REDACTED@host.example.com", 1},
		{"postgres://app:p@ss@db.internal:5432/orders?sslmode=require", "postgres://REDACTED:REDACTED@db.internal:5432/orders?sslmode=REDACTED", 2},
		{"//user:pw@cdn.example.com/a.js", "//REDACTED:REDACTED@cdn.example.com/a.js", 1},
		{"https://@host/", "https://@host/", 0},
		{"https://u:p#1?x@host/a?b=c", "https://REDACTED:REDACTED@REDACTED", 2},
		// The price of the above: a query with an '@' right after the host takes it all.
		{"https://host?mail@b.com", "https://REDACTED@REDACTED", 2},
		{"https://host?mail=a@b.com", "https://host?mail=REDACTED", 1},
		{"https://host?a@b=secret", "https://REDACTED@REDACTED", 2},
		{"//#=/&@0", "//#=REDACTED&@0", 1},
		{"https://host?a@/x=secret&y", "https://REDACTED@REDACTED", 2},
		{"https://u:p?x@host/path", "https://REDACTED:REDACTED@REDACTED", 2},
		// An '@' in the path or query is not userinfo.
		{"https://registry.npmjs.org/@types/node", "https://registry.npmjs.org/@types/node", 0},
		{"https://host/u?mail=a@b.com", "https://host/u?mail=REDACTED", 1},
		// Fragments: key=value pairs are treated like a query, others stay.
		{"https://app.example.com/cb#access_token=eyJhbGciOi&token_type=bearer", "https://app.example.com/cb#access_token=REDACTED&token_type=REDACTED", 2},
		{"https://docs.example.com/guide#section-2", "https://docs.example.com/guide#section-2", 0},
		{"https://x.example.com/?a=1#frag", "https://x.example.com/?a=REDACTED#frag", 1},
		{"https://x.example.com/#/orders?id=42", "https://x.example.com/#/orders?id=REDACTED", 1},
		// Already redacted: unchanged and not counted.
		{"https://REDACTED:REDACTED@h/?a=REDACTED", "https://REDACTED:REDACTED@h/?a=REDACTED", 0},
		// Not URLs, or nothing to remove.
		{"", "", 0},
		{"https://example.com/a/b", "https://example.com/a/b", 0},
		{"what? a=b", "what? a=b", 0},
		{"GET /pay?card=4111", "GET /pay?card=4111", 0},
		{"contact jane@example.com", "contact jane@example.com", 0},
		{"mailto:jane@example.com", "mailto:jane@example.com", 0},
		// Malformed input is handled, not rejected.
		{"http://[::1?x=1", "http://[::1?x=REDACTED", 1},
		{"https://h/%zz?%zz=%", "https://h/%zz?%zz=REDACTED", 1},
		{"?=x", "?=REDACTED", 1},
		{"://@", "://@", 0},
	}
	for _, tt := range tests {
		got, n := SanitizeURL(tt.in)
		if got != tt.want || n != tt.removed {
			t.Errorf("SanitizeURL(%q) = %q, %d; want %q, %d", tt.in, got, n, tt.want, tt.removed)
		}
		again, n2 := SanitizeURL(got)
		if again != got || n2 != 0 {
			t.Errorf("SanitizeURL(%q) again = %q, %d; want it unchanged", got, again, n2)
		}
	}
}

func TestURLSanitizerKeepParams(t *testing.T) {
	z := URLSanitizer{KeepParams: append(DefaultURLKeepParams(), "region")}
	got, n := z.Sanitize("/v1/items?region=eu-west-1&page=3&user=42")
	if want := "/v1/items?region=eu-west-1&page=3&user=REDACTED"; got != want || n != 1 {
		t.Errorf("got %q, %d; want %q, 1", got, n, want)
	}
	// The zero value keeps nothing.
	got, n = URLSanitizer{}.Sanitize("/v1/items?page=3")
	if got != "/v1/items?page=REDACTED" || n != 1 {
		t.Errorf("zero value: got %q, %d", got, n)
	}
	// DefaultURLKeepParams hands out copies.
	DefaultURLKeepParams()[0] = "card"
	if got, _ := SanitizeURL("/a?card=1"); got != "/a?card=REDACTED" {
		t.Errorf("defaults were modified through DefaultURLKeepParams: %q", got)
	}
}

func TestSanitizeURLCleanDoesNotAllocate(t *testing.T) {
	for _, s := range []string{
		"https://api.example.com/v1/orders/12345",
		"/v1/orders?page=2&limit=10",
		"https://registry.npmjs.org/@types/node",
		"https://REDACTED@h/?a=REDACTED",
	} {
		if n := testing.AllocsPerRun(100, func() { SanitizeURL(s) }); n != 0 {
			t.Errorf("SanitizeURL(%q) allocates %v times", s, n)
		}
	}
}

// urlFuzzSecret is planted in fuzzed URLs; it must never come out.
const urlFuzzSecret = "Pl4ntedS3cret"

func FuzzSanitizeURL(f *testing.F) {
	f.Add("https://u:p@h:1/a", "q", "/x?y=1;z#f")
	f.Add("/pay", "card", "")
	f.Add("", "a%20b", "#x=1")
	f.Add("http://[::1", "", "&&;=")
	f.Fuzz(func(t *testing.T, prefix, key, suffix string) {
		// Any input: no panic, valid UTF-8 stays valid, idempotent.
		for _, s := range []string{prefix, key, suffix, prefix + key + suffix} {
			out, _ := SanitizeURL(s)
			if utf8.ValidString(s) && !utf8.ValidString(out) {
				t.Fatalf("SanitizeURL(%q) = %q, not valid UTF-8", s, out)
			}
			if again, n := SanitizeURL(out); again != out || n != 0 {
				t.Fatalf("not idempotent: %q -> %q -> %q (%d)", s, out, again, n)
			}
		}
		// A planted query value never survives in a URL: the pieces around it may not
		// contain the secret themselves, nor whitespace (which makes a sentence, not a URL),
		// and the key may not be one whose value is kept.
		if strings.Contains(prefix+key+suffix, urlFuzzSecret[:4]) || urlHasSpaceOrControl(prefix+key) ||
			(URLSanitizer{KeepParams: urlDefaultKeep}).keep(key) {
			return
		}
		for _, s := range []string{
			"https://" + prefix + "?" + key + "=" + urlFuzzSecret + suffix,
			"/" + prefix + "?" + key + "=" + urlFuzzSecret + "&" + suffix,
		} {
			if out, _ := SanitizeURL(s); strings.Contains(out, urlFuzzSecret) {
				t.Fatalf("SanitizeURL(%q) = %q leaks the planted value", s, out)
			}
		}
		// A planted password never survives, unless the user name holds a raw '/', which ends
		// the authority as RFC 3986 reads it, or a raw '=', '&' or ';' after a '?' or '#',
		// which makes it a query (the connection-string detector covers those).
		if strings.ContainsAny(key, "/=&;") {
			return
		}
		for _, s := range []string{
			"https://" + key + ":" + urlFuzzSecret + "@" + prefix,
			"//" + key + ":" + urlFuzzSecret + "@" + prefix + suffix,
		} {
			if out, _ := SanitizeURL(s); strings.Contains(out, urlFuzzSecret) {
				t.Fatalf("SanitizeURL(%q) = %q leaks the planted value", s, out)
			}
		}
	})
}

func BenchmarkSanitizeURL(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"clean", "https://api.example.com/v1/customers/cus_123/orders/ord_456/items"},
		{"clean-query", "/v1/customers/cus_123/orders?page=2&limit=50&sort=created"},
		{"dirty", "https://jane:hunter2@api.example.com/v1/pay?card=4111111111111111&email=jane%40example.com&page=2"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				SanitizeURL(bc.in)
			}
		})
	}
}

func ExampleSanitizeURL() {
	out, removed := SanitizeURL("https://jane:hunter2@api.example.com/v1/pay?card=4111111111111111&page=2")
	fmt.Println(out, removed)
	// Output: https://REDACTED:REDACTED@api.example.com/v1/pay?card=REDACTED&page=2 2
}

func ExampleURLSanitizer_Sanitize() {
	z := URLSanitizer{KeepParams: append(DefaultURLKeepParams(), "region")}
	out, removed := z.Sanitize("/v1/items?region=eu-west-1&user=42")
	fmt.Println(out, removed)
	// Output: /v1/items?region=eu-west-1&user=REDACTED 1
}

// TestSanitizeURLCorpus plants customers' values in realistic URLs and targets and counts what
// survives (leaks) and which clean URLs changed (false positives).
func TestSanitizeURLCorpus(t *testing.T) {
	secrets := []string{"jane.doe%40example.com", "4111111111111111", "hunter2", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "%2B442079460958"}
	templates := []string{
		"https://api.example.com/v1/users?email=%s",
		"https://api.example.com/v1/pay?amount=10&card=%s&page=1",
		"/v1/pay?card=%s",
		"/v1/search?q=%s;lang=en",
		"https://app.example.com/callback#access_token=%s&expires_in=3600",
		"https://admin:%s@db.example.com:5432/app",
		"postgres://app:%s@db.internal/app?sslmode=disable",
		"https://api.example.com/v1/x?token=%s&token=%s",
		"//cdn.example.com/a.js?sig=%s",
		"https://h.example.com/?a=1&b=%s#frag",
	}
	clean := []string{
		"https://api.example.com/v1/orders/ord_8f14e45f/items",
		"/v1/orders?page=2&limit=50&sort=created_at&order=desc",
		"https://registry.npmjs.org/@babel/core",
		"https://docs.example.com/guide/install#step-3",
		"http://[2001:db8::1]:8080/healthz",
		"grpc://collector:4317",
		"/healthz",
		"https://storage.example.com/bucket/2024/05/01/report.pdf",
	}
	plant := func(tmpl, secret string) (in, value string) {
		return strings.ReplaceAll(tmpl, "%s", secret), secret
	}
	urlSQLCheckCorpus(t, "SanitizeURL", SanitizeURL, templates, secrets, plant, clean)
}

// urlSQLCheckCorpus plants every secret in every template with plant, which returns the input
// and the value that must not survive sanitize, runs sanitize over clean inputs, which must
// come back unchanged, and logs the leak and false-positive counts.
func urlSQLCheckCorpus(t *testing.T, name string, sanitize func(string) (string, int),
	templates, secrets []string, plant func(tmpl, secret string) (in, value string), clean []string) {
	t.Helper()
	leaks := 0
	for _, tmpl := range templates {
		for _, secret := range secrets {
			in, value := plant(tmpl, secret)
			if out, _ := sanitize(in); strings.Contains(out, value) {
				leaks++
				t.Errorf("leak: %s(%q) = %q", name, in, out)
			}
		}
	}
	changed := 0
	for _, s := range clean {
		if out, n := sanitize(s); out != s || n != 0 {
			changed++
			t.Errorf("false positive: %s(%q) = %q, %d", name, s, out, n)
		}
	}
	t.Logf("%s corpus: %d leaks in %d inputs with planted values; %d of %d clean inputs changed",
		name, leaks, len(templates)*len(secrets), changed, len(clean))
}
