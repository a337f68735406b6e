package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strings"
)

// Kind names what a detector finds.
type Kind uint8

// The detectors' kinds. The order is the priority when two matches overlap: the merged
// match keeps the kind listed first.
const (
	KindPassword Kind = iota // a password in a URL's userinfo or a key=value string
	KindAPIKey               // an API key of a common provider or a PEM private key
	KindJWT                  // a JSON Web Token
	KindBearer               // a bearer token or an Authorization header's credential
	KindEmail                // an e-mail address
	KindCard                 // a payment card number that passes the Luhn check
	KindIP                   // a valid IPv4 or IPv6 address
	KindCustom               // a match of a custom regular expression from configuration
	numKinds
)

var kindNames = [numKinds]string{"password", "api_key", "jwt", "bearer", "email", "card", "ip", "custom"}

// String returns the kind's name as used in configuration and in markers.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// ParseKind returns the built-in kind named name ("email", "card", ...).
func ParseKind(name string) (Kind, bool) {
	for k, n := range kindNames {
		if n == name {
			return Kind(k), true
		}
	}
	return 0, false
}

// Kinds returns every built-in detector's kind except KindCustom, which comes from
// patterns rather than a switch.
func Kinds() []Kind {
	return []Kind{KindEmail, KindCard, KindIP, KindBearer, KindAPIKey, KindJWT, KindPassword}
}

// span is a match: s[start:end] is replaced. pat is the custom pattern's index.
type span struct {
	start, end int
	kind       Kind
	pat        int
}

// Byte classes, looked up in one table so each scanner's inner loop is one load.
const (
	cDigit = 1 << iota
	cUpper
	cLower
	cHex
	cLocal // e-mail local part
	cToken // bearer token and base64url
)

var class = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] |= cDigit | cHex | cLocal | cToken
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] |= cUpper | cLocal | cToken
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] |= cLower | cLocal | cToken
	}
	for _, c := range "abcdefABCDEF" {
		t[c] |= cHex
	}
	for _, c := range "._%+-" {
		t[c] |= cLocal
	}
	for _, c := range "-._~+/=" {
		t[c] |= cToken
	}
	return t
}()

func isDigit(c byte) bool { return class[c]&cDigit != 0 }
func isAlnum(c byte) bool { return class[c]&(cDigit|cUpper|cLower) != 0 }
func isHex(c byte) bool   { return class[c]&cHex != 0 }

// boundaryBefore reports whether a match may start at i: not inside a word.
func boundaryBefore(s string, i int) bool { return i == 0 || !isAlnum(s[i-1]) }

// boundaryAfter reports whether a match may end at i: not inside a word.
func boundaryAfter(s string, i int) bool { return i >= len(s) || !isAlnum(s[i]) }

// scanEmail finds e-mail addresses: a local part, '@', and a domain whose last label is
// at least two letters. Only '@' triggers work, and "%40": access logs carry addresses
// percent-encoded in query strings ("email=alice%40example.com").
func scanEmail(s string, spans []span) []span {
	return scanEmailAt(s, scanEmailAt(s, spans, "@"), "%40")
}

// scanEmailAt finds the e-mail addresses whose '@' is spelt sign.
func scanEmailAt(s string, spans []span, sign string) []span {
	from := 0
	for {
		at := strings.Index(s[from:], sign)
		if at < 0 {
			return spans
		}
		at += from
		from = at + len(sign)
		start := at
		for start > 0 && class[s[start-1]]&cLocal != 0 {
			start--
		}
		for start < at && s[start] == '.' {
			start++
		}
		if start == at {
			continue
		}
		// "scheme://user:pass@host" is the password detector's; the host is not personal.
		if start > 0 && s[start-1] == ':' && inURLAuthority(s, start-1) {
			continue
		}
		end := domainEnd(s, at+len(sign))
		if end < 0 {
			continue
		}
		spans = append(spans, span{start: start, end: end, kind: KindEmail})
		from = end
	}
}

// inURLAuthority reports whether s[i] is preceded, within the same token, by "://".
func inURLAuthority(s string, i int) bool {
	// Bounded, so a long run of ":a@" stays linear; a scheme and user are short.
	for j := i; j >= 2 && j > i-256; j-- {
		switch s[j] {
		case ' ', '\t', '\n', '"', '\'', '/':
			return s[j] == '/' && s[j-1] == '/' && s[j-2] == ':'
		}
	}
	return false
}

// domainEnd returns the end of a domain starting at i, or -1: labels of letters, digits
// and '-', at least two, the last one alphabetic and at least two long.
func domainEnd(s string, i int) int {
	end := i
	for end < len(s) && (isAlnum(s[end]) || s[end] == '.' || s[end] == '-') {
		end++
	}
	for end > i {
		for end > i && (s[end-1] == '.' || s[end-1] == '-') {
			end--
		}
		dot := strings.LastIndexByte(s[i:end], '.')
		if dot <= 0 {
			return -1
		}
		tld := s[i+dot+1 : end]
		ok := len(tld) >= 2
		for j := 0; ok && j < len(tld); j++ {
			ok = class[tld[j]]&(cUpper|cLower) != 0
		}
		if ok {
			return end
		}
		end = i + dot
	}
	return -1
}

// scanCard finds payment card numbers: 13 to 19 digits starting with 2–6 (the card
// networks' ranges), in groups separated by one kind of separator (space or dash), not
// inside a longer word or digit run, passing the Luhn check.
func scanCard(s string, spans []span) []span {
	if len(s) < 13 { // the shortest card number
		return spans
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		if !boundaryBefore(s, i) {
			for i < len(s) && isAlnum(s[i]) {
				i++
			}
			continue
		}
		end, next := cardAt(s, i)
		if end > 0 {
			spans = append(spans, span{start: i, end: end, kind: KindCard})
			i = end - 1
			continue
		}
		i = next - 1
	}
	return spans
}

// cardAt tries a card number starting at the group that starts at i. It returns the
// match's end (0 if none) and where the next group starts, to try from there.
func cardAt(s string, i int) (end, next int) {
	var digits [19]byte
	var ends [19]int // ends[n-1]: where a candidate with n digits ends, 0 if none
	n := 0
	var sep byte
	pos := i
	next = -1
groups:
	for {
		for pos < len(s) && isDigit(s[pos]) {
			if n == len(digits) {
				// Too long for a card from here: an id, or a card before more digits.
				if next < 0 {
					return 0, skipDigits(s, pos)
				}
				break groups
			}
			digits[n] = s[pos]
			n++
			pos++
		}
		if next < 0 {
			next = pos
		}
		// A group running into a word ends no candidate.
		if n >= 13 && boundaryAfter(s, pos) {
			ends[n-1] = pos
		}
		if pos+1 < len(s) && (s[pos] == ' ' || s[pos] == '-') && isDigit(s[pos+1]) && (sep == 0 || sep == s[pos]) {
			sep = s[pos]
			pos++
			continue
		}
		break
	}
	for m := n; m >= 13; m-- {
		if ends[m-1] > 0 && cardPrefix(digits[:m]) && luhn(digits[:m]) {
			return ends[m-1], next
		}
	}
	return 0, next
}

// cardPrefix reports whether a number of this length may be a card of the networks'
// ranges: 13 digits only for old Visa (4), 14 only for Diners (3), others in the ranges
// below. Compact timestamps (20261205184611...) and Unix times (17...) are not cards.
func cardPrefix(d []byte) bool {
	switch len(d) {
	case 13:
		return d[0] == '4'
	case 14:
		return d[0] == '3'
	}
	switch d[0] {
	case '2': // Mastercard's 2-series is 2221–2720; 2026... dates are not in it.
		p := int(d[1]-'0')*100 + int(d[2]-'0')*10 + int(d[3]-'0')
		return p >= 221 && p <= 720
	case '3': // Amex 34/37, JCB 35, Diners 30/36/38/39
		return d[1] != '1' && d[1] != '2' && d[1] != '3'
	}
	return d[0] >= '4' && d[0] <= '6'
}

func skipDigits(s string, i int) int {
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// luhn reports whether the digits pass the Luhn check.
func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// scanIP finds valid IPv4 addresses (four decimal octets, not part of a longer dotted
// run like the version 1.2.3.4.5) and valid IPv6 addresses (at least two colons, checked
// by netip, so times like 18:46:11 are not addresses), except loopback and unspecified.
func scanIP(s string, spans []span) []span {
	// An IPv4 address has dots and an IPv6 one colons: most strings have neither, and
	// two vectorised scans cost less than one byte loop.
	if strings.IndexByte(s, '.') < 0 && strings.IndexByte(s, ':') < 0 {
		return spans
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '.' || s[i-1] == ':') || !isHex(c) && c != ':' {
			if isAlnum(c) {
				// Nothing starts inside a word: skip it whole.
				i = wordEnd(s, i) - 1
			}
			continue
		}
		// A maximal run of address characters.
		end, colons := i, 0
		for end < len(s) && (isHex(s[end]) || s[end] == ':' || s[end] == '.') {
			if s[end] == ':' {
				colons++
			}
			end++
		}
		if end == i {
			continue
		}
		if e := ipv6End(s, i, end, colons); e > 0 {
			spans = append(spans, span{start: i, end: e, kind: KindIP})
			i = e - 1
			continue
		}
		if e := ipv4End(s, i); e > 0 {
			spans = append(spans, span{start: i, end: e, kind: KindIP})
			i = e - 1
			continue
		}
		i = end - 1
	}
	return spans
}

func ipv6End(s string, i, end, colons int) int {
	if colons < 2 {
		return -1
	}
	// Trailing punctuation is the sentence's, not the address's.
	for end > i && s[end-1] == '.' {
		end--
	}
	if end-i >= 2 && s[end-1] == ':' && s[end-2] != ':' {
		end--
	}
	if !boundaryAfter(s, end) {
		return -1
	}
	cand := s[i:end]
	hasHex := false
	for j := 0; j < len(cand); j++ {
		if isHex(cand[j]) {
			hasHex = true
			break
		}
	}
	if !hasHex {
		return -1
	}
	a, err := netip.ParseAddr(cand)
	if err != nil || !a.Is6() || anonymous(a) {
		return -1
	}
	return end
}

// anonymous reports whether an address identifies no host of anyone's: loopback and
// unspecified addresses ("listening on 0.0.0.0:4317", "dial 127.0.0.1:5432") stay
// readable because they are operational, not personal.
func anonymous(a netip.Addr) bool {
	return a.Unmap().IsLoopback() || a.IsUnspecified()
}

func ipv4End(s string, i int) int {
	pos := i
	var octets [4]byte
	for octet := 0; octet < 4; octet++ {
		if octet > 0 {
			if pos >= len(s) || s[pos] != '.' {
				return -1
			}
			pos++
		}
		start, v := pos, 0
		for pos < len(s) && isDigit(s[pos]) && pos-start < 4 {
			v = v*10 + int(s[pos]-'0')
			pos++
		}
		n := pos - start
		if n == 0 || n > 3 || v > 255 || (n > 1 && s[start] == '0') {
			return -1
		}
		octets[octet] = byte(v)
	}
	if anonymous(netip.AddrFrom4(octets)) {
		return -1
	}
	if pos < len(s) && (isAlnum(s[pos]) || (s[pos] == '.' && pos+1 < len(s) && isAlnum(s[pos+1]))) {
		return -1
	}
	return pos
}

// scanWords finds everything that starts with a keyword or a provider's prefix at a
// word boundary: bearer tokens, Authorization values, API keys, JWTs, PEM private keys
// and key=value passwords. One pass dispatches on the first byte.
func scanWords(s string, spans []span, on *[numKinds]bool) []span {
	var valueOf span // the last secret key's value, scanned again
	for i := 0; i < len(s); {
		c := s[i]
		if !isAlnum(c) && c != '-' {
			i++
			continue
		}
		// s[i] starts a word (or is a dash): the previous byte is not alphanumeric.
		rest := s[i:]
		var sp span
		switch c {
		case 'e':
			if on[KindJWT] && strings.HasPrefix(rest, "eyJ") {
				n, run := jwtLen(rest)
				if n == 0 {
					// No later "eyJ" in this run has two dots after it either.
					i += run
					continue
				}
				sp = span{i, i + n, KindJWT, 0}
			}
		case 'b', 'B':
			if on[KindBearer] && hasPrefixFold(rest, "bearer") {
				sp = bearerAt(s, i+len("bearer"))
			}
		case 'a', 'A':
			if on[KindBearer] && hasPrefixFold(rest, "authorization") {
				sp = authorizationAt(s, i+len("authorization"))
			} else if c == 'A' && on[KindAPIKey] {
				sp = span{i, i + apiKeyLen(rest), KindAPIKey, 0}
			}
		case 'p', 'P':
			if on[KindPassword] {
				sp = passwordValueAt(s, i)
			}
		case 'g', 'x', 's', 'r', '-':
			if on[KindAPIKey] {
				sp = span{i, i + apiKeyLen(rest), KindAPIKey, 0}
			}
		case 'h':
			if on[KindAPIKey] {
				sp = slackWebhookAt(s, i)
			}
		}
		secret := false
		if sp.end == sp.start && on[KindPassword] {
			sp = secretValueAt(s, i)
			secret = true
		}
		if sp.end > sp.start {
			if last := len(spans) - 1; !secret && last >= 0 && spans[last] == valueOf {
				// The secret key's value is a token of a known kind as a whole:
				// count it as that kind.
				if sp.end >= valueOf.end {
					spans = spans[:last]
				}
			}
			spans = append(spans, sp)
			// A bearer's token may itself be a JWT, and a secret key's value an API
			// key that should be counted as one: look at them again. Every other
			// match is skipped whole, which keeps the scan linear.
			if secret {
				valueOf = sp
				i = sp.start
				continue
			}
			if sp.kind != KindBearer || c|0x20 == 'a' {
				i = sp.end
				continue
			}
		}
		if c == '-' {
			i++ // a word may follow a dash: "X-Api-Key"
			continue
		}
		i = wordEnd(s, i)
	}
	return spans
}

// wordEnd returns the end of the alphanumeric run at i, at least i+1.
func wordEnd(s string, i int) int {
	i++
	for i < len(s) && isAlnum(s[i]) {
		i++
	}
	return i
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// jwtLen returns the length of a JWT at the start of s, or 0: three base64url parts
// (the signature may be empty for alg "none"), the header decoding to a JSON object.
// run is how far it looked when there were fewer than two dots, else 1.
func jwtLen(s string) (n, run int) {
	n = jwtParts(s)
	if n < 0 {
		return 0, -n
	}
	return n, 1
}

// jwtParts returns the JWT's length, 0 if it is none, or minus the length of a
// base64url run without two dots.
func jwtParts(s string) int {
	var dots [2]int
	n, pos := 0, 0
	for pos < len(s) {
		c := s[pos]
		if c == '.' {
			if n == 2 {
				break
			}
			dots[n] = pos
			n++
		} else if !isAlnum(c) && c != '-' && c != '_' {
			break
		}
		pos++
	}
	if n < 2 {
		return -max(pos, 1)
	}
	if dots[0] < 10 || dots[1]-dots[0] < 2 || (pos < len(s) && s[pos] == '=') {
		return 0
	}
	header := s[:dots[0]]
	var buf [384]byte
	if base64.RawURLEncoding.DecodedLen(len(header)) > len(buf) {
		return 0
	}
	m, err := base64.RawURLEncoding.Decode(buf[:], []byte(header))
	if err != nil || m < 2 || buf[0] != '{' || !json.Valid(buf[:m]) {
		return 0
	}
	return pos
}

// bearerAt matches the token after the word "bearer" ending at i: one space or more,
// then a token that looks like a credential rather than an English word.
func bearerAt(s string, i int) span {
	start := i
	for start < len(s) && s[start] == ' ' {
		start++
	}
	if start == i {
		return span{}
	}
	end := start
	digit := false
	for end < len(s) && class[s[end]]&cToken != 0 {
		digit = digit || isDigit(s[end])
		end++
	}
	if n := end - start; n < 8 || (!digit && n < 20) {
		return span{}
	}
	return span{start, end, KindBearer, 0}
}

// authorizationAt matches the value of an Authorization header or field whose key ends
// at i: the credential after a scheme word ("Basic xxx" masks xxx), or the whole value.
func authorizationAt(s string, i int) span {
	pos, quote := skipSep(s, i)
	if pos < 0 {
		return span{}
	}
	word := pos
	for word < len(s) && class[s[word]]&(cUpper|cLower) != 0 {
		word++
	}
	if word > pos && word < len(s) && s[word] == ' ' {
		if strings.EqualFold(s[pos:word], "bearer") {
			return span{} // the bearer detector sees the word itself
		}
		pos = word
		for pos < len(s) && s[pos] == ' ' {
			pos++
		}
	}
	end := valueEnd(s, pos, quote)
	if end == pos {
		return span{}
	}
	return span{pos, end, KindBearer, 0}
}

// passwordValueAt matches the value of a password key starting at i: "password=v",
// "pwd: v", "\"password\": \"v\"".
func passwordValueAt(s string, i int) span {
	k := i
	for k < len(s) && class[s[k]]&(cUpper|cLower) != 0 && k-i < 8 {
		k++
	}
	if w := s[i:k]; !strings.EqualFold(w, "password") && !strings.EqualFold(w, "passwd") && !strings.EqualFold(w, "pwd") {
		return span{}
	}
	pos, quote := skipSep(s, k)
	if pos < 0 || isHashMarker(s, i) {
		return span{}
	}
	end := valueEnd(s, pos, quote)
	if end == pos {
		return span{}
	}
	return span{pos, end, KindPassword, 0}
}

// secretKeys are the last parts of key names whose values are secrets whatever they look
// like, so that "access_token=…", "client_secret: …", "X-Api-Key: …" and
// "aws_secret_access_key = …" in a log line lose their values as "password=…" does. A
// name's last part must be one of them whole: "token_count=3" and "max_tokens=512" keep
// their values.
var secretKeys = [...]string{"token", "secret", "apikey", "api_key", "api-key", "access_key", "secret_key", "private_key"}

// secretKeyStart marks the first two bytes (lower case) of secretKeys, a cheap test
// before comparing: most words start otherwise.
var secretKeyStart = func() (m [256][256]bool) {
	for _, k := range secretKeys {
		m[k[0]][k[1]] = true
	}
	return m
}()

// secretValueAt matches the value of a secret-named key whose name's last part starts at
// i: "token=v", "refresh_token: v", "\"client_secret\": \"v\"".
func secretValueAt(s string, i int) span {
	if i+1 >= len(s) || !secretKeyStart[s[i]|0x20][s[i+1]|0x20] {
		return span{}
	}
	k := i
	for k < len(s) && k-i <= len("private_key") && (isAlnum(s[k]) || s[k] == '_' || s[k] == '-') {
		k++
	}
	name, found := s[i:k], false
	for _, key := range secretKeys {
		if strings.EqualFold(name, key) {
			found = true
			break
		}
	}
	if !found {
		return span{}
	}
	pos, quote := skipSep(s, k)
	if pos < 0 {
		return span{}
	}
	end := valueEnd(s, pos, quote)
	if end == pos || s[pos:end] == urlRedacted || strings.HasPrefix(s[pos:end], urlRedacted+"&") {
		return span{} // nothing, or what URL sanitising left in a query's place
	}
	return span{pos, end, KindPassword, 0}
}

// skipSep skips a key's closing quote, '=' or ':', spaces and the value's opening quote,
// returning where the value starts, or -1 if no separator follows the key, and the
// opening quote if any.
func skipSep(s string, i int) (int, byte) {
	if i < len(s) && (s[i] == '"' || s[i] == '\'') {
		i++
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) || (s[i] != '=' && s[i] != ':') {
		return -1, 0
	}
	i++
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i < len(s) && (s[i] == '"' || s[i] == '\'') {
		return i + 1, s[i]
	}
	return i, 0
}

// valueEnd returns where a value starting at i ends: at the closing quote (or the line's
// end) when quoted, else at whitespace, a quote, or a separator of connection strings and
// lists. '&' is not one: passwords hold it, and over-masking a query beats a leak.
func valueEnd(s string, i int, quote byte) int {
	for i < len(s) {
		c := s[i]
		if quote != 0 {
			if c == quote || c == '\n' || c == '\r' {
				return i
			}
		} else {
			switch c {
			case '"', '\'', ' ', '\t', '\r', '\n', ';', ',':
				return i
			}
		}
		i++
	}
	return i
}

// slackWebhookAt matches the secret path of a Slack webhook URL whose host starts at i:
// "hooks.slack.com/services/T…/B…/<secret>" keeps the host and the kind of hook, since
// the path is the key.
func slackWebhookAt(s string, i int) span {
	const host = "hooks.slack.com/"
	if !strings.HasPrefix(s[i:], host) {
		return span{}
	}
	start := i + len(host)
	for _, kind := range []string{"services/", "triggers/", "workflows/"} {
		if strings.HasPrefix(s[start:], kind) {
			start += len(kind)
			end := start
			for end < len(s) && (isAlnum(s[end]) || s[end] == '/' || s[end] == '_' || s[end] == '-') {
				end++
			}
			if end-start >= 20 {
				return span{start, end, KindAPIKey, 0}
			}
			return span{}
		}
	}
	return span{}
}

// apiKeyLen returns the length of a provider's API key or a PEM private key block at the
// start of s, or 0.
func apiKeyLen(s string) int {
	switch {
	case strings.HasPrefix(s, "AKIA"), strings.HasPrefix(s, "ASIA"):
		return fixedKey(s, 4, 16, cUpper|cDigit)
	case strings.HasPrefix(s, "AIza"):
		return fixedKey(s, 4, 35, cUpper|cLower|cDigit|cDash|cUnder)
	case strings.HasPrefix(s, "github_pat_"):
		return minKey(s, 11, 22, cUpper|cLower|cDigit|cUnder)
	case len(s) > 4 && s[0] == 'g' && s[1] == 'h' && s[3] == '_' && strings.IndexByte("pousr", s[2]) >= 0:
		return minKey(s, 4, 36, cUpper|cLower|cDigit)
	case len(s) > 5 && strings.HasPrefix(s, "xox") && strings.IndexByte("bpars", s[3]) >= 0 && s[4] == '-':
		return minKey(s, 5, 10, cUpper|cLower|cDigit|cDash)
	case strings.HasPrefix(s, "sk_live_"), strings.HasPrefix(s, "rk_live_"),
		strings.HasPrefix(s, "sk_test_"), strings.HasPrefix(s, "rk_test_"):
		return minKey(s, 8, 16, cUpper|cLower|cDigit)
	case strings.HasPrefix(s, "sk-"):
		return minKey(s, 3, 20, cUpper|cLower|cDigit|cDash|cUnder)
	case strings.HasPrefix(s, "-----BEGIN "):
		return pemLen(s)
	}
	return 0
}

// Extra bits for key alphabets, not in the table: keyByte tests '-' and '_' directly,
// since elsewhere they separate words.
const (
	cDash  = 1 << 6
	cUnder = 1 << 7
)

func keyByte(c byte, set uint8) bool {
	return class[c]&set&^(cDash|cUnder) != 0 || (set&cDash != 0 && c == '-') || (set&cUnder != 0 && c == '_')
}

// fixedKey matches a prefix of p bytes and exactly n key bytes, then a word boundary.
func fixedKey(s string, p, n int, set uint8) int {
	if len(s) < p+n {
		return 0
	}
	for j := p; j < p+n; j++ {
		if !keyByte(s[j], set) {
			return 0
		}
	}
	if p+n < len(s) && keyByte(s[p+n], set|cDigit|cUpper|cLower) {
		return 0
	}
	return p + n
}

// minKey matches a prefix of p bytes and at least n key bytes.
func minKey(s string, p, n int, set uint8) int {
	end := p
	for end < len(s) && keyByte(s[end], set) {
		end++
	}
	if end-p < n {
		return 0
	}
	return end
}

// pemLen matches a PEM private key block through its END line, or to the end of s when
// the block was cut off, so a truncated key never leaks.
func pemLen(s string) int {
	const begin = "-----BEGIN "
	label := s[len(begin):min(len(s), len(begin)+40)]
	dash := strings.Index(label, "-----")
	if dash < 0 || !strings.HasSuffix(label[:dash], "PRIVATE KEY") {
		return 0
	}
	body := len(begin) + dash + 5
	end := strings.Index(s[body:], "-----END ")
	if end < 0 {
		return len(s)
	}
	end += body + len("-----END ")
	if tail := strings.Index(s[end:], "-----"); tail >= 0 {
		return end + tail + 5
	}
	return len(s)
}

// scanURLPasswords finds the password of "scheme://user:password@host".
func scanURLPasswords(s string, spans []span) []span {
	from := 0
	for {
		k := strings.Index(s[from:], "://")
		if k < 0 {
			return spans
		}
		start := from + k + 3
		from = start
		colon, at := -1, -1
		for j := start; j < len(s); j++ {
			c := s[j]
			if c == '/' || c == '?' || c == '#' || c == ' ' || c == '\t' || c == '\n' || c == '"' || c == '\'' {
				break
			}
			if c == ':' && colon < 0 {
				colon = j
			}
			if c == '@' {
				at = j
			}
		}
		// "REDACTED" is what URL sanitising leaves of a password: already gone.
		if colon >= 0 && at > colon+1 && s[colon+1:at] != urlRedacted {
			spans = append(spans, span{colon + 1, at, KindPassword, 0})
		}
	}
}

// isHashMarker reports whether s[i:] continues the hash marker "[password:0123456789ab]",
// which would otherwise read as a password key and value.
func isHashMarker(s string, i int) bool {
	const n = len("password:") + 12
	if i == 0 || s[i-1] != '[' || len(s) < i+n+1 || s[i+n] != ']' {
		return false
	}
	for _, c := range []byte(s[i+len("password:") : i+n]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
