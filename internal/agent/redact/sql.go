package redact

import "strings"

// SanitizeSQL replaces the literals of a database statement (db.statement, db.query.text) with
// '?' and keeps its shape, so statements that differ only in their values read the same:
//
//   - single-quoted strings, with doubled-quote and backslash escapes, and their prefixed
//     forms E'…', N'…', X'…', B'…' and MySQL's _utf8mb4'…', become ?; a PostgreSQL cast stays
//     ('x'::text becomes ?::text);
//   - dollar-quoted strings ($$…$$, $tag$…$tag$) become ?;
//   - numbers (integers, decimals, exponents, 0x… hex) become ?, with their minus sign when it
//     follows an operator, '(' or ',' (x = -5 becomes x = ?), but digits inside identifiers
//     (table1, col_2) stay;
//   - a double-quoted token right after a comparison (=, <>, !=, <, >, LIKE) and not followed
//     by '.' is taken for a MySQL string and becomes ?; anywhere else it is an identifier and
//     stays, like backtick-quoted identifiers;
//   - IN lists whose items are all literals or ? collapse to IN (?), so the statement's text
//     does not grow with the list;
//   - comments (-- … and /* … */, nested as PostgreSQL nests them) are removed, because
//     free text there is beyond any scanner's reach; each counts as one removal;
//   - keywords, identifiers, operators, NULL, TRUE, FALSE and placeholders ($1, ?, ?1, :name,
//     :1, @p1, %s) stay.
//
// removed counts the literals and comments taken out. A statement without any comes back as
// itself, without allocating. An unterminated string, dollar quote or comment is removed up to
// the end of the statement: a truncated statement must not leak its tail. SanitizeSQL never
// panics, and its output sanitised again is unchanged, with nothing removed.
func SanitizeSQL(s string) (out string, removed int) {
	w := urlWriter{s: s}
	var prev byte        // last significant byte kept, 0 at the start
	var prevIdent string // the identifier or keyword that prev ended, if it did
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
			continue
		case c == '\'':
			end := sqlScanQuoted(s, i, '\'', true)
			w.replace(i, end, "?")
			removed++
			i, prev, prevIdent = end, '?', ""
			continue
		case c == '"':
			end := sqlScanQuoted(s, i, '"', false)
			// "tbl"."col" names a column; "x".5 is not a qualified name but x then a number.
			qualified := end < len(s) && s[end] == '.' && !(end+1 < len(s) && sqlIsDigit(s[end+1]))
			if !qualified && (prev == '=' || prev == '<' || prev == '>' || strings.EqualFold(prevIdent, "like") || strings.EqualFold(prevIdent, "ilike")) {
				w.replace(i, end, "?")
				removed++
				prev = '?'
			} else {
				prev = '"'
			}
			i, prevIdent = end, ""
			continue
		case c == '`':
			i, prev, prevIdent = sqlScanQuoted(s, i, '`', false), '`', ""
			continue
		case c == '-' && i+1 < len(s) && s[i+1] == '-',
			c == '/' && i+1 < len(s) && s[i+1] == '*':
			i = sqlRemoveComment(&w, s, i)
			removed++
			continue
		case c == '$':
			if end := sqlScanDollarQuote(s, i); end > i {
				w.replace(i, end, "?")
				removed++
				i, prev, prevIdent = end, '?', ""
				continue
			}
			// A placeholder $1 or a lone '$': keep it and the digits after it.
			i = sqlSkipDigits(s, i+1)
			prev, prevIdent = '$', ""
			continue
		case c == '?' || c == ':' || c == '@':
			// Placeholders ?1, :1, @p1 and casts :: keep what follows them.
			i = sqlSkipDigits(s, i+1)
			prev, prevIdent = c, ""
			continue
		case sqlIsDigit(c) || c == '.' && i+1 < len(s) && sqlIsDigit(s[i+1]):
			end, isNumber := sqlScanNumber(s, i)
			if !isNumber { // MySQL allows identifiers such as 1st_table
				i, prev, prevIdent = end, 'a', s[i:end]
				continue
			}
			w.replace(i, end, "?")
			removed++
			i, prev, prevIdent = end, '?', ""
			continue
		case c == '-' && sqlAfterOperator(prev) && i+1 < len(s) &&
			(sqlIsDigit(s[i+1]) || s[i+1] == '.' && i+2 < len(s) && sqlIsDigit(s[i+2])):
			end, isNumber := sqlScanNumber(s, i+1)
			if isNumber {
				w.replace(i, end, "?")
				removed++
				i, prev, prevIdent = end, '?', ""
				continue
			}
		case sqlIsIdentStart(c):
			end := sqlScanIdent(s, i)
			word := s[i:end]
			if end < len(s) && s[end] == '\'' && sqlIsStringPrefix(word) {
				strEnd := sqlScanQuoted(s, end, '\'', true)
				w.replace(i, strEnd, "?")
				removed++
				i, prev, prevIdent = strEnd, '?', ""
				continue
			}
			if len(word) == 2 && strings.EqualFold(word, "in") {
				if n, next := sqlCollapseIn(&w, s, end); next > end {
					removed += n
					i, prev, prevIdent = next, ')', ""
					continue
				}
			}
			i, prev, prevIdent = end, 'a', word
			continue
		}
		// Any other byte (operators, punctuation) is kept as it is.
		i, prev, prevIdent = i+1, c, ""
	}
	return w.finish(), removed
}

// sqlScanQuoted returns the end of the quoted token that starts at s[i] == q: after its closing
// quote, where a doubled quote does not close it, nor, with backslash set, an escaped one. An
// unterminated token ends at the end of s.
func sqlScanQuoted(s string, i int, q byte, backslash bool) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if backslash {
				j++
			}
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(s)
}

// sqlScanDollarQuote returns the end of the dollar-quoted string that starts at s[i] == '$'
// ($$…$$ or $tag$…$tag$), or i when s[i] starts none (a placeholder $1, a lone '$'). An
// unterminated string ends at the end of s.
func sqlScanDollarQuote(s string, i int) int {
	j := i + 1
	if j < len(s) && sqlIsIdentStart(s[j]) {
		for j < len(s) && (sqlIsIdentStart(s[j]) || sqlIsDigit(s[j])) {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return i
	}
	tag := s[i : j+1]
	if k := strings.Index(s[j+1:], tag); k >= 0 {
		return j + 1 + k + len(tag)
	}
	return len(s)
}

// sqlScanNumber returns the end of the number that starts at s[i] (a digit, or '.' then a
// digit) and whether it is one: digits glued to letters other than an exponent (1st_table) make
// an identifier instead, whose end is returned.
func sqlScanNumber(s string, i int) (end int, isNumber bool) {
	j := i
	if s[j] == '0' && j+2 < len(s) && (s[j+1] == 'x' || s[j+1] == 'X') && urlIsHex(s[j+2]) {
		for j += 2; j < len(s) && urlIsHex(s[j]); j++ {
		}
	} else {
		j = sqlSkipDigits(s, j)
		if j < len(s) && s[j] == '.' {
			j = sqlSkipDigits(s, j+1)
		}
		if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
			k := j + 1
			if k < len(s) && (s[k] == '+' || s[k] == '-') {
				k++
			}
			if k < len(s) && sqlIsDigit(s[k]) {
				j = sqlSkipDigits(s, k)
			}
		}
	}
	if j < len(s) && sqlIsIdentStart(s[j]) {
		return sqlScanIdent(s, j), false
	}
	return j, true
}

// sqlRemoveComment removes the comment that starts at s[i] together with the blanks around it,
// writing one space where it separated two tokens, and returns where scanning resumes.
func sqlRemoveComment(w *urlWriter, s string, i int) int {
	end := len(s)
	if s[i] == '-' {
		if k := strings.IndexByte(s[i:], '\n'); k >= 0 {
			end = i + k
		}
	} else {
		depth := 0
		for j := i; j+1 < len(s); j++ {
			if s[j] == '/' && s[j+1] == '*' {
				depth++
				j++
			} else if s[j] == '*' && s[j+1] == '/' {
				depth--
				j++
				if depth == 0 {
					end = j + 1
					break
				}
			}
		}
	}
	start := i
	for start > w.last && sqlIsBlank(s[start-1]) {
		start--
	}
	for end < len(s) && sqlIsBlank(s[end]) {
		end++
	}
	sep := " "
	if start == 0 || end == len(s) || strings.IndexByte("(.", s[start-1]) >= 0 || strings.IndexByte("),;.", s[end]) >= 0 {
		sep = ""
	}
	w.replace(start, end, sep)
	return end
}

// sqlCollapseIn looks at what follows the keyword IN ending at s[i]. When it is a parenthesised
// list of literals and ? placeholders holding at least one literal, it writes "(?)" in place of
// the list and returns how many literals went and where scanning resumes; otherwise it returns
// next == i and leaves the list to the main scan.
func sqlCollapseIn(w *urlWriter, s string, i int) (removed, next int) {
	j := i
	for j < len(s) && sqlIsBlank(s[j]) {
		j++
	}
	if j >= len(s) || s[j] != '(' {
		return 0, i
	}
	open := j
	for j++; ; j++ {
		for j < len(s) && sqlIsBlank(s[j]) {
			j++
		}
		if j >= len(s) {
			return 0, i
		}
		switch c := s[j]; {
		case c == '?':
			j++
		case c == '\'':
			j = sqlScanQuoted(s, j, '\'', true)
			removed++
		case c == '$':
			end := sqlScanDollarQuote(s, j)
			if end == j {
				return 0, i
			}
			j = end
			removed++
		case c == '-' || sqlIsDigit(c) || c == '.':
			k := j
			if c == '-' {
				k++
			}
			if k >= len(s) || !(sqlIsDigit(s[k]) || s[k] == '.' && k+1 < len(s) && sqlIsDigit(s[k+1])) {
				return 0, i
			}
			end, isNumber := sqlScanNumber(s, k)
			if !isNumber {
				return 0, i
			}
			j = end
			removed++
		default:
			return 0, i
		}
		for j < len(s) && sqlIsBlank(s[j]) {
			j++
		}
		if j >= len(s) {
			return 0, i
		}
		if s[j] == ')' {
			break
		}
		if s[j] != ',' {
			return 0, i
		}
	}
	if removed == 0 {
		return 0, i
	}
	w.replace(open, j+1, "(?)")
	return removed, j + 1
}

// sqlAfterOperator reports whether a '-' after the significant byte prev is a sign rather than
// a subtraction.
func sqlAfterOperator(prev byte) bool {
	return prev == 0 || strings.IndexByte("=<>!(,+-*/%^|&~", prev) >= 0
}

// sqlIsStringPrefix reports whether word, glued to a quote, makes a prefixed string literal:
// E'…' (escapes), N'…' (national), X'…' (hex), B'…' (bits) or a MySQL charset introducer.
func sqlIsStringPrefix(word string) bool {
	if len(word) == 1 {
		switch word[0] | 0x20 {
		case 'e', 'n', 'x', 'b':
			return true
		}
	}
	return len(word) > 1 && word[0] == '_'
}

func sqlScanIdent(s string, i int) int {
	for i < len(s) && (sqlIsIdentStart(s[i]) || sqlIsDigit(s[i]) || s[i] == '$') {
		i++
	}
	return i
}

func sqlSkipDigits(s string, i int) int {
	for i < len(s) && sqlIsDigit(s[i]) {
		i++
	}
	return i
}

// sqlIsIdentStart accepts any byte of a multi-byte UTF-8 sequence, so identifiers in other
// scripts stay whole and the output stays valid UTF-8.
func sqlIsIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func sqlIsDigit(c byte) bool { return '0' <= c && c <= '9' }

func sqlIsBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}
