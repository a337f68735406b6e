package redactpolicy

import (
	"slices"
	"strings"
	"testing"
)

func TestUnsetPolicyIsTheSafeDefault(t *testing.T) {
	e := Resolve(Policy{})
	if e.Off {
		t.Fatal("an empty policy must not be off")
	}
	for _, d := range Detectors {
		if e.Detectors[d] != ActionMask {
			t.Errorf("detector %s = %q by default, want mask", d, e.Detectors[d])
		}
	}
	for _, k := range []string{"url.full", "http.target", "http.url"} {
		if !slices.Contains(e.URLKeys, k) {
			t.Errorf("URL sanitising does not cover %s by default", k)
		}
	}
	if !slices.Contains(e.SQLKeys, "db.statement") || !slices.Contains(e.SQLKeys, "db.query.text") {
		t.Errorf("statement sanitising keys = %v", e.SQLKeys)
	}
	if !MatchAny(e.SecretKeys, "user.password") || !MatchAny(e.SecretKeys, "http.request.header.authorization") {
		t.Errorf("secret keys %v miss the obvious ones", e.SecretKeys)
	}
}

func TestOffOnlyWhenBothSidesSayIt(t *testing.T) {
	off := Policy{Mode: ModeOff}
	if e := Merge(off, Policy{}); e.Off || e.Detectors["email"] != ActionMask {
		t.Errorf("vendor off, customer silent: %+v, want the default", e)
	}
	if e := Merge(Policy{}, off); e.Off || e.Detectors["card"] != ActionMask {
		t.Errorf("customer off, vendor silent: %+v, want the default", e)
	}
	if e := Merge(off, off); !e.Off {
		t.Error("both off must be off")
	}
}

// The customer's policy makes a looser vendor policy stricter, and the vendor's
// tightens a looser customer policy: whoever asks for more gets it.
func TestMergeKeepsTheStricterOfEach(t *testing.T) {
	vendor := Policy{
		Detectors:  map[string]string{"ip": ActionOff, "email": ActionHash},
		Attributes: Attributes{Allow: []string{"http.*", "user.id", "tenant"}, Deny: []string{"user.name"}},
		URL:        URLRules{KeepParams: []string{"page", "region"}},
		Body:       BodyRules{MaxBytes: 4096, DropPatterns: []string{"^DEBUG dump"}},
		Custom:     []Pattern{{Name: "order", Regexp: `ORD-\d+`, Action: ActionHash}},
	}
	customer := Policy{
		Detectors:  map[string]string{"ip": ActionHash, "jwt": ActionOff},
		Attributes: Attributes{Allow: []string{"http.request.method", "tenant", "user.*"}, Deny: []string{"user.address"}},
		URL:        URLRules{KeepParams: []string{"page"}, Off: true},
		SQL:        SQLRules{Off: true},
		Body:       BodyRules{MaxBytes: 1024},
		Custom:     []Pattern{{Name: "order", Regexp: `ORDER-\d+`}, {Name: "iban", Regexp: `DE\d{20}`}},
	}
	e := Merge(vendor, customer)
	want := map[string]string{"ip": ActionHash, "email": ActionMask, "jwt": ActionMask, "card": ActionMask}
	for d, a := range want {
		if e.Detectors[d] != a {
			t.Errorf("detector %s = %s, want %s", d, e.Detectors[d], a)
		}
	}
	if !e.AllowOnly || strings.Join(e.Allow, ",") != "http.request.method,tenant,user.id" {
		t.Errorf("allow = %v (only %v), want the keys both allow", e.Allow, e.AllowOnly)
	}
	if strings.Join(e.Deny, ",") != "user.address,user.name" {
		t.Errorf("deny = %v, want both lists", e.Deny)
	}
	// The customer turned URL sanitising off, the vendor did not: it stays on, with
	// the vendor's kept parameters. SQL: the vendor left it on.
	if !slices.Contains(e.URLKeys, "url.full") || strings.Join(e.KeepParams, ",") != "page,region" {
		t.Errorf("URL keys %v keep %v", e.URLKeys, e.KeepParams)
	}
	if !slices.Contains(e.SQLKeys, "db.statement") {
		t.Errorf("SQL keys %v", e.SQLKeys)
	}
	if e.BodyMaxBytes != 1024 || strings.Join(e.DropPatterns, ",") != "^DEBUG dump" {
		t.Errorf("body max %d drop %v", e.BodyMaxBytes, e.DropPatterns)
	}
	var names []string
	for _, c := range e.Custom {
		names = append(names, c.Name+"="+c.Action)
	}
	if strings.Join(names, ",") != "iban=mask,local-order=mask,order=hash" {
		t.Errorf("custom = %v", names)
	}
	// Swapping the sides changes nothing but who a renamed pattern belongs to.
	if r := Merge(customer, vendor); r.Detectors["ip"] != ActionHash || r.BodyMaxBytes != 1024 || !slices.Equal(r.Deny, e.Deny) {
		t.Errorf("merge is not symmetric in strictness: %+v", r)
	}
}

func TestAllowListsThatShareNothingKeepOnlyTheProductKeys(t *testing.T) {
	e := Merge(Policy{Attributes: Attributes{Allow: []string{"a"}}}, Policy{Attributes: Attributes{Allow: []string{"b"}}})
	if !e.AllowOnly || len(e.Allow) != 0 {
		t.Errorf("allow %v only %v, want an empty allow-list in force", e.Allow, e.AllowOnly)
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, key string
		want         bool
	}{
		{"user.email", "user.email", true},
		{"user.email", "user.emails", false},
		{"http.request.header.*", "http.request.header.cookie", true},
		{"*token*", "x-auth-token-id", true},
		{"*token*", "tok", false},
		{"*.authorization", "http.request.header.authorization", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, c := range cases {
		if got := Match(c.pattern, c.key); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.pattern, c.key, got)
		}
	}
	// A hostile pattern costs at most len(pattern)*len(key) steps.
	long := strings.Repeat("a", 2000)
	if Match(strings.Repeat("*a", 500)+"b", long) {
		t.Error("matched a key without b")
	}
}

func TestValidate(t *testing.T) {
	bad := Policy{
		Mode:      "maybe",
		Detectors: map[string]string{"emial": "mask", "ip": "scramble"},
		Custom:    []Pattern{{Name: "x y", Regexp: "("}, {Name: "e", Regexp: "a*"}},
		Body:      BodyRules{MaxBytes: -1, DropPatterns: []string{"["}},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("a bad policy validated")
	}
	for _, want := range []string{"mode", "emial", "scramble", "x y", "matches the empty string", "max_bytes", "drop_patterns[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (Policy{Detectors: map[string]string{"ip": "hash"}, Custom: []Pattern{{Name: "c", Regexp: `C-\d+`}}}).Validate(); err != nil {
		t.Errorf("a good policy: %v", err)
	}
}

func TestEffectiveHashIsStable(t *testing.T) {
	a := Merge(Policy{Attributes: Attributes{Deny: []string{"b", "a"}}}, Policy{})
	b := Merge(Policy{}, Policy{Attributes: Attributes{Deny: []string{"a", "b", "a"}}})
	if a.Hash() != b.Hash() {
		t.Errorf("equal policies hash %s and %s", a.Hash(), b.Hash())
	}
	if a.Hash() == Resolve(Policy{}).Hash() {
		t.Error("a different policy has the same hash")
	}
}

func TestDefaultSecretKeysCoverHTTPHeaders(t *testing.T) {
	keys := Resolve(Policy{}).SecretKeys
	for _, k := range []string{"http.request.header.x-api-key", "http.request.header.proxy-authorization",
		"http.request.header.x-amz-access-key", "http.response.header.set-cookie", "http.request.header.x-auth-token",
		"http.request.header.authorization", "db.password", "client_secret", "app.private-key"} {
		if !MatchAny(keys, k) {
			t.Errorf("%s is not a secret key by default", k)
		}
	}
	for _, k := range []string{"http.route", "http.request.header.content-type", "http.request.header.x-request-id",
		"http.request.header.user-agent", "authorization.result", "app.detail"} {
		if MatchAny(keys, k) {
			t.Errorf("%s is a secret key by default", k)
		}
	}
}
