package redact

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func hashAll(key []byte) Config {
	c := Default()
	for i := range c.Rules {
		c.Rules[i].Action = Hash
	}
	c.HashKey = key
	return c
}

func TestHashIsKeyedAndJoinable(t *testing.T) {
	r1, err := New(hashAll([]byte("key-1")))
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := New(hashAll([]byte("key-2")))
	a, _ := r1.String("from alice@example.com")
	b, _ := r1.String("to alice@example.com!")
	c, _ := r2.String("from alice@example.com")
	marker := regexp.MustCompile(`^from \[email:[0-9a-f]{12}\]$`)
	if !marker.MatchString(a) {
		t.Fatalf("hash marker %q", a)
	}
	if a[5:] != b[3:len(b)-1] {
		t.Errorf("equal values hash differently: %q, %q", a, b)
	}
	if a == c {
		t.Errorf("different keys give the same hash %q", a)
	}
	if d, _ := r1.String("from bob@example.com"); d == a {
		t.Errorf("different values give the same hash %q", d)
	}
}

func TestMixedActionsAndDisabledKinds(t *testing.T) {
	r, err := New(Config{
		Rules:   []Rule{{Kind: KindEmail, Action: Hash}, {Kind: KindCard, Action: Mask}},
		HashKey: []byte("k"),
	})
	if err != nil {
		t.Fatal(err)
	}
	out, counts := r.String("a@example.com paid 4111111111111111 from 10.0.0.1")
	if !strings.HasPrefix(out, "[email:") || !strings.Contains(out, " paid [REDACTED:card] from 10.0.0.1") {
		t.Errorf("got %q", out)
	}
	if counts[KindEmail] != 1 || counts[KindCard] != 1 || counts[KindIP] != 0 || counts.Total() != 2 {
		t.Errorf("counts %v", counts)
	}
}

func TestCustomPatterns(t *testing.T) {
	cfg := Default()
	cfg.Custom = []Pattern{
		{Name: "employee", Regexp: `EMP-[0-9]{6}`},
		{Name: "ssn", Regexp: `\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b`, Action: Hash},
	}
	cfg.HashKey = []byte("k")
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, counts := r.String("EMP-123456 ssn 123-45-6789 ok")
	if !regexp.MustCompile(`^\[REDACTED:custom:employee\] ssn \[custom:ssn:[0-9a-f]{12}\] ok$`).MatchString(out) {
		t.Errorf("got %q", out)
	}
	if counts[KindCustom] != 2 {
		t.Errorf("counts %v", counts)
	}
	if again, _ := r.String(out); again != out {
		t.Errorf("not idempotent: %q -> %q", out, again)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	err := Config{
		Rules:  []Rule{{Kind: KindEmail, Action: Hash}, {Kind: KindEmail}, {Kind: KindCustom}, {Kind: KindIP, Action: 9}},
		Custom: []Pattern{{Name: "", Regexp: "("}, {Name: "a", Regexp: "x*"}, {Name: "a", Regexp: "y"}},
	}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"listed twice", "not a built-in", "unknown action", "name \"\"",
		"missing closing", "empty string", "used twice", "hash_key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := New(Config{Rules: []Rule{{Kind: KindEmail, Action: Hash}}}); err == nil {
		t.Error("New accepted hash without a key")
	}
}

func TestOverlapsMergeWithoutLeaving(t *testing.T) {
	r := mustDefault(t)
	// The JWT is also a bearer token; the e-mail-like userinfo is a password.
	out, counts := r.String("Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.sig")
	if out != "Authorization: Bearer [REDACTED:jwt]" || counts.Total() != 1 {
		t.Errorf("got %q %v", out, counts)
	}
	out, _ = r.String("smtp://mailer:pw@smtp.example.com")
	if out != "smtp://mailer:[REDACTED:password]@smtp.example.com" {
		t.Errorf("got %q", out)
	}
}

func TestMarkersAreNotMistakenForSecrets(t *testing.T) {
	r := mustDefault(t)
	for _, in := range []string{"[REDACTED:4111 1111 1111 1111]", "[REDACTED:x alice@example.com]", "[card:4111111111111111]"} {
		if out, _ := r.String(in); out == in {
			t.Errorf("%q passed as a marker", in)
		}
	}
}

func BenchmarkString(b *testing.B) {
	r := mustDefault(b)
	for _, bc := range []struct{ name, s string }{
		{"clean100", cleanLine100},
		{"clean1K", cleanLine1K},
		{"email", "2026-12-05T18:46:11Z INFO signup from alice@example.com accepted route=/api/v1/users"},
		{"card", "2026-12-05T18:46:11Z WARN charge 4111 1111 1111 1111 declined route=/api/v1/pay"},
		{"jwt", "2026-12-05T18:46:11Z DEBUG token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.s)))
			for b.Loop() {
				r.String(bc.s)
			}
		})
	}
}

func ExampleRedactor_String() {
	r, err := New(Default())
	if err != nil {
		panic(err)
	}
	out, counts := r.String("charge 4111 1111 1111 1111 for alice@example.com from 10.0.0.7, order 1234567890123456")
	fmt.Println(out)
	fmt.Println(counts[KindCard], counts[KindEmail], counts[KindIP], counts.Total())
	// Output:
	// charge [REDACTED:card] for [REDACTED:email] from [REDACTED:ip], order 1234567890123456
	// 1 1 1 3
}
