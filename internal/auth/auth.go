// Package auth issues and checks the manager's credentials: operator API tokens
// with roles, and per-deployment agent tokens. Tokens are random, shown once, and
// kept only as SHA-256 hashes; a high-entropy token needs no slow hash, and a
// fast one keeps every check-in cheap.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Role is what an operator token may do. Each role includes the ones below it.
type Role string

// Operator roles, weakest first.
const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RoleViewer, RoleOperator, RoleAdmin:
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q (want viewer, operator or admin)", s)
}

func (r Role) rank() int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether a token with role r may do what needs role need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && r.rank() > 0 }

// Token prefixes make a leaked token recognisable (and scannable) for what it is.
const (
	PrefixAPI        = "psk_"
	PrefixDeployment = "pdt_"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken returns a new token with the given prefix and 160 bits from r
// (crypto/rand when r is nil).
func NewToken(prefix string, r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [20]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return prefix + strings.ToLower(b32.EncodeToString(b[:])), nil
}

// Hash returns the at-rest form of a token.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Equal compares two hashes in constant time.
func Equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// BearerToken extracts the token from an "Authorization: Bearer …" header value.
func BearerToken(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// APIToken is an operator credential as stored: never the token itself.
type APIToken struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role Role   `json:"role"`
	Hash string `json:"-"`
}
