package redact

import "strings"

// urlRedacted replaces a removed query value or userinfo part. It is the word the OpenTelemetry
// semantic conventions prescribe for url.full, so a backend that knows them reads it as
// "something was here" rather than as data.
const urlRedacted = "REDACTED"

// urlDefaultKeep lists the query keys whose values SanitizeURL keeps: paging and ordering
// parameters that support engineers need to reproduce a slow request and that carry no
// personal data. It is never modified; DefaultURLKeepParams hands out copies.
var urlDefaultKeep = []string{"page", "per_page", "page_size", "limit", "offset", "sort", "order", "format"}

// DefaultURLKeepParams returns a fresh copy of the query keys whose values SanitizeURL keeps
// (paging and ordering keys such as page and limit), for building a URLSanitizer that extends them.
func DefaultURLKeepParams() []string {
	return append([]string(nil), urlDefaultKeep...)
}

// URLSanitizer removes the values of query parameters and the userinfo of URLs, keeping their
// shape. The zero value keeps no query value. It is safe for concurrent use once built; do not
// modify KeepParams while it is in use.
type URLSanitizer struct {
	// KeepParams lists the query keys whose values are kept, compared case-insensitively after
	// percent-decoding the key (so "Page" and "pag%65" match "page").
	KeepParams []string
}

// SanitizeURL applies URLSanitizer.Sanitize with DefaultURLKeepParams.
func SanitizeURL(s string) (out string, removed int) {
	return URLSanitizer{KeepParams: urlDefaultKeep}.Sanitize(s)
}

// Sanitize removes from a full URL (url.full, http.url) or a request target (http.target, a
// url.path followed by its query) everything that can carry a customer's data while keeping
// what an engineer needs to recognise the request:
//
//   - every query value becomes REDACTED, unless its key is in KeepParams; keys, their order,
//     repeated keys, '&' and ';' separators and empty values stay as they were;
//   - userinfo becomes REDACTED (or REDACTED:REDACTED when it had a password), as the
//     semantic conventions ask for url.full; it is replaced rather than dropped so the reader
//     still sees that the caller sent credentials; a raw '?' or '#' in a password does not
//     end it, and when such a userinfo makes the rest ambiguous the rest becomes REDACTED;
//   - a fragment that holds key=value pairs (OAuth's #access_token=…, a single-page app's
//     #/route?id=…) is treated like a query; any other fragment (#section-2) is kept;
//   - scheme, host, port and path are kept byte for byte, percent-encoding included.
//
// It returns the string unchanged, without allocating, when there is nothing to remove, and
// when the string is not a URL: one that has ASCII whitespace or control characters and does
// not start with "scheme://" or "/" (a log line, a sentence). removed counts the values and
// userinfo parts replaced; values that already read REDACTED are not counted again, so
// sanitising the output again changes nothing and removes nothing.
//
// Sanitize is a byte scanner: it never panics and never decodes the URL, so malformed
// percent-escapes, raw spaces and invalid UTF-8 pass through unharmed.
func (z URLSanitizer) Sanitize(s string) (out string, removed int) {
	// The common case, a URL without query, userinfo or fragment, costs one byte scan.
	// Three vectorised IndexByte scans beat one ContainsAny byte loop several times over.
	if strings.IndexByte(s, '?') < 0 && strings.IndexByte(s, '@') < 0 && strings.IndexByte(s, '#') < 0 {
		return s, 0
	}
	w := urlWriter{s: s}
	rest := 0 // where the part after the authority starts
	authority := false
	if n := urlSchemeLen(s); n > 0 && strings.HasPrefix(s[n:], "//") {
		rest, authority = n+2, true
	} else if strings.HasPrefix(s, "//") {
		rest, authority = 2, true
	} else if s == "" || (s[0] != '/' && urlHasSpaceOrControl(s)) {
		return s, 0
	}
	if authority {
		// RFC 3986 ends the userinfo at the last '@' before the first '/', '?' or '#'. But an
		// unescaped '?' or '#' inside a password is common enough (user:p#1@host) that
		// stopping there would leak the password's tail as query or fragment, so when the
		// authority ends there the search goes on up to the first '/', '=', '&' or ';': all
		// bytes that sanitising keeps, so a second pass searches the same bytes. The price is
		// that https://host?mail@b.com, with no path, loses all but its scheme; a leak is worse.
		authEnd := rest + strings.IndexAny(s[rest:], "/?#")
		if authEnd < rest {
			authEnd = len(s)
		}
		searchEnd := authEnd
		if authEnd < len(s) && s[authEnd] != '/' {
			searchEnd = authEnd + strings.IndexAny(s[authEnd:], "/=&;")
			if searchEnd < authEnd {
				searchEnd = len(s)
			}
		}
		at := strings.LastIndexByte(s[rest:searchEnd], '@')
		hostStart := rest
		if at >= 0 {
			info := s[rest : rest+at]
			repl := urlRedacted
			if strings.IndexByte(info, ':') >= 0 {
				repl = urlRedacted + ":" + urlRedacted
			}
			if info != repl && info != "" {
				w.replace(rest, rest+at, repl)
				removed++
			}
			hostStart = rest + at + 1
		}
		end := hostStart + strings.IndexAny(s[hostStart:], "/?#")
		if end < hostStart {
			end = len(s)
		}
		// When the userinfo holds a '?' or '#', the '@' may as well have been in a query
		// (https://host?a@b=secret), and the rest is no longer host, path and query in any
		// reading a second pass would share: it all goes.
		if strings.IndexByte(s[rest:hostStart], '?') >= 0 || strings.IndexByte(s[rest:hostStart], '#') >= 0 {
			if hostStart < len(s) {
				w.replace(hostStart, len(s), urlRedacted)
				removed++
			}
			return w.finish(), removed
		}
		rest = end
	}
	q := rest
	for q < len(s) && s[q] != '?' && s[q] != '#' {
		q++
	}
	if q == len(s) {
		return w.finish(), removed
	}
	if s[q] == '?' {
		end := q + 1 + strings.IndexByte(s[q+1:], '#')
		if end <= q {
			end = len(s)
		}
		removed += z.sanitizeParams(&w, q+1, end)
		q = end
	}
	if q < len(s) { // s[q] == '#'
		if strings.IndexByte(s[q+1:], '=') >= 0 {
			removed += z.sanitizeParams(&w, q+1, len(s))
		}
	}
	return w.finish(), removed
}

// sanitizeParams replaces the values of the key=value pairs in s[start:end], separated by '&'
// or ';', and returns how many it replaced.
func (z URLSanitizer) sanitizeParams(w *urlWriter, start, end int) (removed int) {
	s := w.s
	for i := start; i < end; {
		// One pass finds the pair's '=' and its end.
		eq, j := -1, i
		for ; j < end && s[j] != '&' && s[j] != ';'; j++ {
			if s[j] == '=' && eq < 0 {
				eq = j
			}
		}
		if eq >= 0 {
			v := eq + 1
			if v < j && s[v:j] != urlRedacted && !z.keep(s[i:eq]) {
				w.replace(v, j, urlRedacted)
				removed++
			}
		}
		i = j + 1
	}
	return removed
}

// keep reports whether key, percent-decoded, is in KeepParams.
func (z URLSanitizer) keep(key string) bool {
	if len(z.KeepParams) == 0 || key == "" {
		return false
	}
	if strings.IndexByte(key, '%') >= 0 || strings.IndexByte(key, '+') >= 0 {
		key = urlUnescapeKey(key)
	}
	for _, k := range z.KeepParams {
		if len(k) == len(key) && strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// urlUnescapeKey decodes %XX escapes and '+' in a query key, leaving malformed escapes as
// they are. Keys are short and escaped keys rare, so the allocation does not matter.
func urlUnescapeKey(key string) string {
	b := make([]byte, 0, len(key))
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(key) && urlIsHex(key[i+1]) && urlIsHex(key[i+2]):
			b = append(b, urlUnhex(key[i+1])<<4|urlUnhex(key[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func urlIsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func urlUnhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// urlSchemeLen returns the length of s's "scheme:" prefix (RFC 3986: a letter, then letters,
// digits, '+', '-' or '.'), or 0 when s has none.
func urlSchemeLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i + 1
		default:
			return 0
		}
	}
	return 0
}

// urlHasSpaceOrControl reports whether s holds an ASCII space or control character, which no
// URL written by a client library holds but every sentence does.
func urlHasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// urlWriter builds the sanitised copy of s lazily: nothing is allocated until the first
// replacement, so a clean string comes back as itself.
type urlWriter struct {
	s    string
	b    strings.Builder
	last int // s[:last] has been written to b (or replaced)
}

// replace writes s[last:i] followed by repl in place of s[i:j]; calls come in increasing i.
func (w *urlWriter) replace(i, j int, repl string) {
	if w.b.Cap() == 0 {
		w.b.Grow(len(w.s) + 32)
	}
	w.b.WriteString(w.s[w.last:i])
	w.b.WriteString(repl)
	w.last = j
}

// finish returns the sanitised string: s itself when nothing was replaced.
func (w *urlWriter) finish() string {
	if w.b.Cap() == 0 {
		return w.s
	}
	w.b.WriteString(w.s[w.last:])
	return w.b.String()
}
