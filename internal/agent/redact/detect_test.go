package redact

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func mustDefault(t testing.TB) *Redactor {
	t.Helper()
	r, err := New(Default())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDetectorsReplaceOnlyTheMatch(t *testing.T) {
	r := mustDefault(t)
	for _, tc := range []struct{ in, want string }{
		{"mail alice@example.com now", "mail [REDACTED:email] now"},
		{"<bob.smith+x@mail.example.co.uk>.", "<[REDACTED:email]>."},
		{"mailto:alice@example.com", "mailto:[REDACTED:email]"},
		{"GET /unsubscribe?email=carol.j%40example.org&list=2 200", "GET /unsubscribe?email=[REDACTED:email]&list=2 200"},
		{"card 4111 1111 1111 1111 declined", "card [REDACTED:card] declined"},
		{"card=4111-1111-1111-1111;", "card=[REDACTED:card];"},
		{"pan:378282246310005.", "pan:[REDACTED:card]."},
		{"qty 12 4111111111111111 end", "qty 12 [REDACTED:card] end"},
		{"4111 1111 1111 1111 12ab", "[REDACTED:card] 12ab"},
		{"from 192.168.1.23:8080 to 10.0.0.1.", "from [REDACTED:ip]:8080 to [REDACTED:ip]."},
		{"peer [2001:db8::1]:443", "peer [[REDACTED:ip]]:443"},
		{"addr fe80::1ff:fe23:4567:890a, ok", "addr [REDACTED:ip], ok"},
		{"src=::ffff:192.0.2.128 dst=::1", "src=[REDACTED:ip] dst=::1"},
		{"Authorization: Bearer 4f8e2c1a9b7d6e5f3a2b", "Authorization: Bearer [REDACTED:bearer]"},
		{`{"authorization": "Basic dXNlcjpwYXNz"}`, `{"authorization": "Basic [REDACTED:bearer]"}`},
		{"key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED:api_key] used"},
		{"token=ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", "token=[REDACTED:api_key]"},
		{"slack xoxb-1234567890-abcdefghij", "slack [REDACTED:api_key]"},
		{"POST https://hooks.slack.com/services/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 failed",
			"POST https://hooks.slack.com/services/[REDACTED:api_key] failed"},
		{"stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc!", "stripe [REDACTED:api_key]!"},
		{"g AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "g [REDACTED:api_key]"},
		{"openai sk-proj-abcDEF123456ghiJKL789012", "openai [REDACTED:api_key]"},
		{"k -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY----- x", "k [REDACTED:api_key] x"},
		{"cut -----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN", "cut [REDACTED:api_key]"},
		{"jwt eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9. ok", "jwt [REDACTED:jwt] ok"},
		{"postgres://app:s3cr3t@db:5432/x", "postgres://app:[REDACTED:password]@db:5432/x"},
		{"https://u:p%40ss@example.com/a", "https://u:[REDACTED:password]@example.com/a"},
		{"Server=db;Password=Tr0ub&3x;Encrypt=true", "Server=db;Password=[REDACTED:password];Encrypt=true"},
		{`{"password": "a b,c"}`, `{"password": "[REDACTED:password]"}`},
		{"PWD=hunter2 next", "PWD=[REDACTED:password] next"},
		{"GET /cb?access_token=Zq8Wx7Vc6Bn5&state=1 200", "GET /cb?access_token=[REDACTED:password] 200"},
		{`{"refresh_token":"1//0gLk9x-ZqT2"}`, `{"refresh_token":"[REDACTED:password]"}`},
		{"X-Api-Key: 3f1c9a7e5b2d, next", "X-Api-Key: [REDACTED:password], next"},
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key = [REDACTED:password]"},
		{"client_secret: 4d6e1a7b token=x", "client_secret: [REDACTED:password] token=[REDACTED:password]"},
		{"api_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key=[REDACTED:api_key]"},
	} {
		got, counts := r.String(tc.in)
		if got != tc.want {
			t.Errorf("String(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
		if counts.Total() == 0 {
			t.Errorf("String(%q): no counts", tc.in)
		}
	}
}

func TestDetectorsLeaveOperationalStrings(t *testing.T) {
	r := mustDefault(t)
	for _, s := range []string{
		"", "plain text", "1.2.3", "1.2.3.4.5", "v1.2.3.4", "256.1.1.1", "01.2.3.4",
		"18:46:11", "2026-12-05T18:46:11.123Z", "00:1a:2b:3c:4d:5e", "std::vector", "Foo::Bar",
		"4111111111111112", "1234567890123456", "41111111111111111111", "x4111111111111111",
		"550e8400-e29b-41d4-a716-446655440000", "user@localhost", "a@b.c",
		"Bearer of bad news", "Bearer authentication", "password reset", "password_hash=abc",
		"AKIA", "AKIAIOSFODNN7EXAMPLEX", "sk-short", "max_tokens=512", "token_count=3", "tokens: 4096",
		"secret_name=db-creds", "token expired", "https://hooks.slack.com/services/", "hooks.slack.com/help", "100%40 percent", "a%40b", "x%40y.1", "/v1/payments?token=REDACTED&limit=10", "api_key_id=k-42", "eyJub3QiOiJhIGp3dCJ9", "aGVsbG8.d29ybGQ.Zm9v",
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
		"https://example.com/path?q=1",
	} {
		if got, counts := r.String(s); got != s || counts.Total() != 0 {
			t.Errorf("String(%q) = %q, %v; want unchanged", s, got, counts)
		}
	}
}

type personal struct{ kind, value, secret string }

func readPersonal(t testing.TB) []personal {
	t.Helper()
	var out []personal
	for _, line := range readLines(t, "testdata/personal.txt") {
		f := strings.Split(line, "\t")
		p := personal{kind: f[0], value: unescape(f[1]), secret: unescape(f[1])}
		if len(f) > 2 {
			p.secret = unescape(f[2])
		}
		out = append(out, p)
	}
	return out
}

func unescape(s string) string { return strings.ReplaceAll(s, `\n`, "\n") }

func readLines(t testing.TB, name string) []string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sentences embed a value the way applications log it.
var sentences = []string{
	"%s",
	"user %s signed in from the web app",
	"failed to charge %s: card_declined (retry 2/3)",
	`{"level":"error","msg":"request failed","value":"%s","status":502}`,
	"level=warn msg=\"lookup failed\" input=%s duration=12ms",
	"ERROR [checkout-7d9f8b6c5d-x2k4p] processing (%s) at 2026-12-05T18:46:11Z",
	"java.lang.IllegalStateException: bad input '%s'\n\tat com.example.Service.handle(Service.java:42)",
	"value=%s, order=ORD-20261205-000123",
}

func TestPersonalCorpusLeaksNothing(t *testing.T) {
	r := mustDefault(t)
	leaks, total := map[string]int{}, map[string]int{}
	for _, p := range readPersonal(t) {
		kind, ok := ParseKind(p.kind)
		if !ok {
			t.Fatalf("corpus: unknown kind %q", p.kind)
		}
		for _, tmpl := range sentences {
			in := strings.Replace(tmpl, "%s", p.value, 1)
			out, counts := r.String(in)
			total[p.kind]++
			if strings.Contains(out, p.secret) {
				leaks[p.kind]++
				t.Errorf("leak of %s: %q -> %q", p.kind, in, out)
			} else if counts[kind] == 0 {
				// Caught under another kind: no leak, but the count would mislead.
				t.Errorf("%s counted as %v: %q -> %q", p.kind, counts, in, out)
			}
		}
	}
	for _, k := range Kinds() {
		t.Logf("personal corpus %-8s leaks %d of %d", k, leaks[k.String()], total[k.String()])
	}
}

func TestOperationalCorpusFalsePositives(t *testing.T) {
	r := mustDefault(t)
	lines := readLines(t, "testdata/operational.txt")
	fp := 0
	for _, l := range lines {
		if out, _ := r.String(l); out != l {
			fp++
			t.Logf("false positive: %q -> %q", l, out)
		}
	}
	rate := float64(fp) / float64(len(lines))
	t.Logf("operational corpus: %d false positives of %d strings (%.2f%%)", fp, len(lines), 100*rate)
	if rate >= 0.01 {
		t.Errorf("false-positive rate %.2f%% is not under 1%%", 100*rate)
	}
}

func TestCleanStringsDoNotAllocate(t *testing.T) {
	r := mustDefault(t)
	for _, s := range []string{
		cleanLine100,
		cleanLine1K,
		"GET /api/v1/orders/12345 200 12ms 10.0.0.300 v1.2.3.4.5 2026-12-05T18:46:11Z",
		"eyJub3QiOiJhIGp3dCJ9 aGVsbG8.d29ybGQ.Zm9v Bearer of news password reset",
	} {
		if n := testing.AllocsPerRun(100, func() { r.String(s) }); n != 0 {
			t.Errorf("String(%.40q...) allocates %v times", s, n)
		}
	}
}

func FuzzRedactString(f *testing.F) {
	for _, s := range []string{"", "alice@example.com", "4111 1111 1111 1111", "10.0.0.1", "::1",
		"Bearer abcdefgh12345678", "postgres://a:b@c/d", "password=x", cleanLine100,
		"[REDACTED:email]", "[email:0123456789ab]"} {
		f.Add(s, s)
	}
	r := mustDefault(f)
	planted := readPersonal(f)
	hashed, err := New(hashAll([]byte("k")))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, red := range []*Redactor{r, hashed} {
			out, _ := red.String(a)
			if utf8.ValidString(a) && !utf8.ValidString(out) {
				t.Fatalf("invalid UTF-8 out of %q: %q", a, out)
			}
			if again, c := red.String(out); again != out {
				t.Fatalf("not idempotent: %q -> %q -> %q (%v)", a, out, again, c)
			}
			// A secret planted between spaces never survives, whatever surrounds it.
			p := planted[len(a)%len(planted)]
			in := a + " " + p.value + " " + b
			if out, _ := red.String(in); strings.Contains(out, p.secret) {
				t.Fatalf("planted %s leaked: %q -> %q", p.kind, in, out)
			}
		}
	})
}

const cleanLine100 = `2026-12-05T18:46:11.123Z INFO checkout served GET /api/v1/orders/{id} status=200 dur=12ms v1.4.2`

var cleanLine1K = strings.Repeat(`level=info ts=2026-12-05T18:46:11Z route=/api/v1/orders status=200 took=12.5ms trace=4bf92f3577b34da6 `, 11)[:1024]

// TestPathologicalInputsFinish runs repetitive inputs of 1 MB that a rescan-per-match
// scanner would take minutes over; a quadratic regression shows up as a test timeout.
func TestPathologicalInputsFinish(t *testing.T) {
	r := mustDefault(t)
	h, err := New(hashAll([]byte("k")))
	if err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"eyJ-", "pwd=", "authorization:", ":a@", "x@a.1", "1 ", "1.1.", "::1 ", "a@b.io ",
		"Bearer ", "://a:", "[", "4111111111111111 ", "-----BEGIN PRIVATE KEY-----"} {
		s := strings.Repeat(unit, (1<<20)/len(unit))
		for _, red := range []*Redactor{r, h} {
			out, _ := red.String(s)
			if again, _ := red.String(out); again != out {
				t.Errorf("%q repeated: not idempotent", unit)
			}
		}
	}
}
