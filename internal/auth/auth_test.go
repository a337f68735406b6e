package auth

import (
	"bytes"
	"strings"
	"testing"
)

func TestRoleAllows(t *testing.T) {
	for _, tc := range []struct {
		have, need Role
		want       bool
	}{
		{RoleAdmin, RoleOperator, true},
		{RoleOperator, RoleOperator, true},
		{RoleViewer, RoleOperator, false},
		{RoleOperator, RoleAdmin, false},
		{Role("root"), RoleViewer, false},
	} {
		if got := tc.have.Allows(tc.need); got != tc.want {
			t.Errorf("%s.Allows(%s) = %v, want %v", tc.have, tc.need, got, tc.want)
		}
	}
}

func TestNewTokenIsRandomAndPrefixed(t *testing.T) {
	a, err := NewToken(PrefixDeployment, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken(PrefixDeployment, nil)
	if a == b || !strings.HasPrefix(a, "pdt_") || len(a) != 4+32 {
		t.Fatalf("tokens %q, %q: want distinct pdt_ tokens of 36 characters", a, b)
	}
	fixed, _ := NewToken(PrefixAPI, bytes.NewReader(make([]byte, 20)))
	if fixed != "psk_"+strings.Repeat("a", 32) {
		t.Fatalf("token from zero bytes = %q", fixed)
	}
	if h1, h2 := Hash(a), Hash(a); h1 == a || len(h1) != 64 || h1 != h2 {
		t.Fatalf("hash %q is not a stable SHA-256 hex digest", Hash(a))
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer", "", false},
		{"", "", false},
	} {
		got, ok := BearerToken(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
