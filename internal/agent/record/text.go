package record

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// How many keys a sentence names per kind, and destinations per summary, before
// saying how many others there are: the JSON form lists them all.
const (
	textKeys  = 3
	textDests = 3
)

// noun is a countable thing a summary names, singular and plural.
type noun struct{ one, many string }

func (n noun) of(c int64) string {
	if c == 1 {
		return "1 " + n.one
	}
	return thousands(c) + " " + n.many
}

// signalNouns names a signal's records.
var signalNouns = map[string]noun{
	"logs":    {"log record", "log records"},
	"traces":  {"span", "spans"},
	"metrics": {"metric point", "metric points"},
}

// signalOrder is the order a sentence names the signals in.
var signalOrder = []string{"logs", "traces", "metrics"}

// kindNouns names what each kind of removal took out.
var kindNouns = map[string]noun{
	"email":     {"e-mail address", "e-mail addresses"},
	"card":      {"payment card number", "payment card numbers"},
	"ip":        {"IP address", "IP addresses"},
	"bearer":    {"bearer token", "bearer tokens"},
	"api_key":   {"API key", "API keys"},
	"jwt":       {"JSON Web Token", "JSON Web Tokens"},
	"password":  {"password", "passwords"},
	"url":       {"URL query value or credential", "URL query values and credentials"},
	"sql":       {"database statement literal", "database statement literals"},
	"attribute": {"attribute the policy does not allow", "attributes the policy does not allow"},
	"secret":    {"value of a key named like a secret", "values of keys named like secrets"},
	"custom":    {"match of a custom pattern", "matches of custom patterns"},
}

func kindNoun(kind string) noun {
	if n, ok := kindNouns[kind]; ok {
		return n
	}
	if name, ok := strings.CutPrefix(kind, "custom:"); ok {
		return noun{"match of the custom pattern " + quoteIfOdd(name), "matches of the custom pattern " + quoteIfOdd(name)}
	}
	return noun{"value of kind " + quoteIfOdd(kind), "values of kind " + quoteIfOdd(kind)}
}

func signalNoun(signal string) noun {
	if n, ok := signalNouns[signal]; ok {
		return n
	}
	return noun{quoteIfOdd(signal) + " record", quoteIfOdd(signal) + " records"}
}

// WriteText says the summary in plain words, for the customer whose cloud the agent
// runs in. Keys and names from the files are quoted when they hold anything but
// printable characters, so a hostile key cannot write to the terminal.
func (s Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	b.WriteString(period(s.From, s.To))
	b.WriteString(" this agent ")
	if s.Batches == 0 {
		b.WriteString("sent nothing.\n")
	} else {
		fmt.Fprintf(&b, "sent %s in %s (%s) to %s.\n", list(s.recordPhrases()), noun{"batch", "batches"}.of(s.Batches),
			bytesText(s.Bytes), list(s.destinationPhrases()))
	}
	if s.RemovedValues == 0 {
		b.WriteString("It removed nothing before sending.\n")
	} else {
		parts := make([]string, 0, len(s.Removed))
		for _, k := range s.Removed {
			parts = append(parts, kindNoun(k.Kind).of(k.Count)+" ("+keysText(k.Keys)+")")
		}
		fmt.Fprintf(&b, "It removed %s before sending: %s.\n", noun{"value", "values"}.of(s.RemovedValues), strings.Join(parts, ", "))
	}
	if s.Truncated.Count > 0 {
		fmt.Fprintf(&b, "It shortened %s over the length limit (%s).\n", noun{"value", "values"}.of(s.Truncated.Count), keysText(s.Truncated.Keys))
	}
	if s.Dropped.Count > 0 {
		var parts []string
		for _, sig := range orderedSignals(s.Dropped.Signals) {
			parts = append(parts, signalNoun(sig).of(s.Dropped.Signals[sig]))
		}
		fmt.Fprintf(&b, "It dropped %s matching a drop pattern.\n", list(parts))
	}
	b.WriteString("It never records the removed values themselves.\n")
	s.Commands.writeText(&b)
	switch {
	case s.RecordStarts.IsZero():
		b.WriteString("The record is empty: nothing has been written to it yet.\n")
	case s.RecordStarts.After(s.From):
		fmt.Fprintf(&b, "The record begins at %s UTC; nothing before that is known.\n", s.RecordStarts.UTC().Format(timeLayout(s.RecordStarts)))
	}
	if s.DamagedLines > 0 {
		verb := "were"
		if s.DamagedLines == 1 {
			verb = "was"
		}
		fmt.Fprintf(&b, "%s of the record could not be read and %s skipped (a crash mid-write leaves one).\n",
			noun{"line", "lines"}.of(s.DamagedLines), verb)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (s Summary) recordPhrases() []string {
	var parts []string
	for _, sig := range orderedSignals(s.Records) {
		parts = append(parts, signalNoun(sig).of(s.Records[sig]))
	}
	return parts
}

func (s Summary) destinationPhrases() []string {
	var parts []string
	for i, d := range s.Destinations {
		if i == textDests && len(s.Destinations) > textDests+1 {
			parts = append(parts, noun{"other destination", "other destinations"}.of(int64(len(s.Destinations)-i)))
			break
		}
		parts = append(parts, quoteIfOdd(d.URL))
	}
	return parts
}

// orderedSignals returns m's signals with records, the agent's own first.
func orderedSignals(m map[string]int64) []string {
	var sigs, others []string
	for _, sig := range signalOrder {
		if m[sig] > 0 {
			sigs = append(sigs, sig)
		}
	}
	for sig, n := range m {
		if _, known := signalNouns[sig]; !known && n > 0 {
			others = append(others, sig)
		}
	}
	slices.Sort(others)
	return append(sigs, others...)
}

// keysText names the keys a kind removed values from, the most first.
func keysText(keys []KeyCount) string {
	var parts []string
	var rest, restKeys int64
	for i, k := range keys {
		if i >= textKeys && len(keys) > textKeys+1 {
			rest, restKeys = add(rest, k.Count), restKeys+1
			continue
		}
		parts = append(parts, quoteIfOdd(k.Key)+" "+thousands(k.Count))
	}
	if restKeys > 0 {
		parts = append(parts, noun{"other key", "other keys"}.of(restKeys)+" "+thousands(rest))
	}
	return strings.Join(parts, ", ")
}

// list joins phrases as a sentence does: "a", "a and b", "a, b and c".
func list(parts []string) string {
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// period says the time range, with the date once when both ends share it:
// "From 2026-12-05 10:00 to 11:00 UTC".
func period(from, to time.Time) string {
	from, to = from.UTC(), to.UTC()
	layout := timeLayout(from)
	if timeLayout(to) != layout {
		layout = "2006-01-02 15:04:05"
	}
	toText := to.Format(layout)
	if from.Format(time.DateOnly) == to.Format(time.DateOnly) {
		toText = to.Format(strings.TrimPrefix(layout, "2006-01-02 "))
	}
	return "From " + from.Format(layout) + " to " + toText + " UTC"
}

// timeLayout shows seconds only when the time has them.
func timeLayout(t time.Time) string {
	if t.Second() != 0 || t.Nanosecond() != 0 {
		return "2006-01-02 15:04:05"
	}
	return "2006-01-02 15:04"
}

// thousands writes n with comma separators: 12,345.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	start := 0
	if n < 0 {
		start = 1
	}
	var b strings.Builder
	for i, c := range s {
		if i > start && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// bytesText writes a size in decimal units: 512 bytes, 1.2 MB.
func bytesText(n int64) string {
	if n < 1000 {
		return noun{"byte", "bytes"}.of(n)
	}
	f := float64(n)
	for _, unit := range []string{"kB", "MB", "GB", "TB", "PB"} {
		f /= 1000
		if f < 999.95 || unit == "PB" {
			return strconv.FormatFloat(f, 'f', 1, 64) + " " + unit
		}
	}
	return "" // not reached: PB returns
}

// quoteIfOdd returns s as it is when it holds only printable characters other
// than spaces, quotes and commas, and Go-quoted otherwise, so a sentence stays
// readable and a hostile name cannot carry terminal escapes.
func quoteIfOdd(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == ',' || r == '\\' || r == unicode.ReplacementChar {
			return strconv.QuoteToGraphic(s)
		}
	}
	return s
}
