package redact

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// Reason is why part of a record was removed: a detector's [Kind], or a rule of the
// policy. Its name is what counts and count attributes are called.
type Reason uint8

// The reasons beyond the detectors' kinds, which come first with the same values.
const (
	// ReasonURL is a query value or userinfo taken out of a URL attribute.
	ReasonURL Reason = Reason(numKinds) + iota
	// ReasonSQL is a literal or comment taken out of a database statement.
	ReasonSQL
	// ReasonSecret is the whole value of a secret-named key (password, token, cookie…).
	ReasonSecret
	// ReasonAttribute is an attribute removed by the allow-list or the deny-list.
	ReasonAttribute
	// ReasonTruncated is a log body cut to the policy's length.
	ReasonTruncated
	// ReasonDropped is a log record dropped because its body matched a drop pattern.
	ReasonDropped
	// NumReasons is the number of reasons.
	NumReasons
)

var reasonNames = [...]string{"url", "sql", "secret", "attribute", "truncated", "dropped_record"}

// String returns the reason's name ("email", "url", "attribute", …).
func (r Reason) String() string {
	if r < Reason(numKinds) {
		return Kind(r).String()
	}
	if r < NumReasons {
		return reasonNames[r-Reason(numKinds)]
	}
	return "unknown"
}

// CountAttributePrefix starts the name of the attribute a record that lost something
// carries for each reason: "periscope.redacted.email" = 2.
const CountAttributePrefix = "periscope.redacted."

// secretMarker replaces the whole value of a secret-named key.
const secretMarker = "[REDACTED:secret]"

// Removal is how many parts one key lost for one reason in one request. Key is the
// attribute key, or "log.body", "span.name", "span.event.name" or "span.status.message".
type Removal struct {
	Reason Reason
	Key    string
	Count  int
}

// Stats is what one request lost.
type Stats struct {
	// Reasons counts removals by reason.
	Reasons [NumReasons]int
	// Records is the number of records (log records, spans, data points) that lost
	// something; resources and scopes that lost attributes are not records.
	Records int
	// Dropped is the number of log records dropped by a drop pattern.
	Dropped int
	// Removals details the counts by reason and key, at most maxRemovals entries;
	// the rest are counted under the key "(other)".
	Removals []Removal
}

// Total returns the number of removals of every reason.
func (s *Stats) Total() int {
	t := 0
	for _, n := range s.Reasons {
		t += n
	}
	return t
}

const (
	// maxRemovals bounds Stats.Removals, since keys come from the application.
	maxRemovals = 64
	// maxKeyCache bounds the per-walker cache of key decisions.
	maxKeyCache = 4096
	// maxDepth bounds nesting: OTLP's own levels (about ten) plus the values' arrays
	// and maps, which request validation already bounds at 32.
	maxDepth = 48
	// maxKeyLen bounds a key kept in Stats.
	maxKeyLen = 256
)

// Policy is an effective redaction policy compiled for the agent's hot path. It is
// immutable and safe for concurrent use.
type Policy struct {
	eff        redactpolicy.Effective
	off        bool
	r          *Redactor
	url        URLSanitizer
	alwaysKept map[string]bool
	context    map[string]bool
	urlKeys    map[string]bool
	sqlKeys    map[string]bool
	drop       []*regexp.Regexp
	walkers    sync.Pool // *walker
}

// Compile builds the agent's redaction from an effective policy. hashKey keys the hash
// action; it is required when any detector hashes.
func Compile(e redactpolicy.Effective, hashKey []byte) (*Policy, error) {
	p := &Policy{eff: e, off: e.Off}
	var cfg Config
	for _, name := range redactpolicy.Detectors {
		k, ok := ParseKind(name)
		if !ok {
			return nil, fmt.Errorf("redaction: detector %q is not built in", name)
		}
		switch e.Detectors[name] {
		case redactpolicy.ActionOff:
		case redactpolicy.ActionHash:
			cfg.Rules = append(cfg.Rules, Rule{Kind: k, Action: Hash})
		default:
			cfg.Rules = append(cfg.Rules, Rule{Kind: k, Action: Mask})
		}
	}
	for _, c := range e.Custom {
		a := Mask
		if c.Action == redactpolicy.ActionHash {
			a = Hash
		}
		cfg.Custom = append(cfg.Custom, Pattern{Name: c.Name, Regexp: c.Regexp, Action: a})
	}
	cfg.HashKey = hashKey
	r, err := New(cfg)
	if err != nil {
		return nil, err
	}
	p.r = r
	for _, expr := range e.DropPatterns {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("redaction: drop pattern %q: %w", expr, err)
		}
		p.drop = append(p.drop, re)
	}
	p.url = URLSanitizer{KeepParams: e.KeepParams}
	p.alwaysKept = set(e.AlwaysKept)
	p.context = set(otlp.ContextKeys[:])
	p.urlKeys, p.sqlKeys = set(e.URLKeys), set(e.SQLKeys)
	p.walkers.New = func() any {
		return &walker{p: p, keys: map[string]keyClass{}, counts: make([][NumReasons]uint32, maxDepth+1)}
	}
	return p, nil
}

func set(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// Effective returns the policy Compile was given.
func (p *Policy) Effective() redactpolicy.Effective { return p.eff }

// Off reports whether the policy removes nothing.
func (p *Policy) Off() bool { return p.off }

// ErrMalformed is wrapped by the errors of Request: the request is not OTLP.
var ErrMalformed = otlp.ErrMalformed

// Request applies the policy to an encoded export request of sig. When the request
// loses nothing it returns req itself and allocates nothing; otherwise it appends the
// rewritten request to dst and returns that. st, when not nil, receives what was
// removed. Every record that lost something carries a "periscope.redacted.<reason>"
// count attribute per reason, and so do resources and scopes that lost attributes.
func (p *Policy) Request(sig otlp.Signal, dst, req []byte, st *Stats) ([]byte, error) {
	if p.off || len(req) == 0 {
		return req, nil
	}
	var root kind
	switch sig {
	case otlp.Logs:
		root = kLogsRequest
	case otlp.Traces:
		root = kTracesRequest
	case otlp.Metrics:
		root = kMetricsRequest
	default:
		return req, fmt.Errorf("redact: %v", sig)
	}
	w := p.walkers.Get().(*walker)
	defer p.walkers.Put(w)
	if st == nil {
		st = &Stats{}
	}
	w.st = st
	w.cur = nil
	out, changed, err := w.rewrite(0, root, req)
	w.st = nil
	if err != nil {
		return req, err
	}
	if !changed {
		return req, nil
	}
	return append(dst, out...), nil
}

// kind is the OTLP message a walker is rewriting.
type kind uint8

const (
	kLogsRequest kind = iota
	kTracesRequest
	kMetricsRequest
	kResourceLogs
	kResourceSpans
	kResourceMetrics
	kResource
	kScopeLogs
	kScopeSpans
	kScopeMetrics
	kScope
	kLog
	kSpan
	kEvent
	kLink
	kStatus
	kMetric
	kNumberData
	kHistogramData
	kExpData
	kSummaryData
	kNumberPoint
	kHistogramPoint
	kExpPoint
	kSummaryPoint
	kExemplar
	kArray  // ArrayValue inside an attribute or body
	kKVList // KeyValueList inside an attribute or body
)

// countField is the attributes field of the messages that carry count attributes,
// 0 for the others.
var countField = [...]protowire.Number{
	kResource: 1, kScope: 3, kLog: 6, kSpan: 9, kNumberPoint: 7, kHistogramPoint: 9, kExpPoint: 1, kSummaryPoint: 7,
	kKVList: 0,
}

// isRecord reports whether k is a record for Stats.Records.
func isRecord(k kind) bool {
	return k == kLog || k == kSpan || k == kNumberPoint || k == kHistogramPoint || k == kExpPoint || k == kSummaryPoint
}

// keyClass is what the policy does with an attribute key.
type keyClass uint8

const (
	classPlain   keyClass = iota // detectors over its value
	classContext                 // deployment context written by the agent: untouched
	classDrop                    // removed by the allow-list or deny-list
	classSecret                  // value masked whole
	classURL                     // sanitised as a URL, then the detectors
	classSQL                     // sanitised as a statement, then the detectors
)

// mode says how a value's strings are treated.
type mode uint8

const (
	modePlain mode = iota
	modeURL
	modeSQL
	modeBody
)

// walker rewrites one request at a time; pooled per Policy.
type walker struct {
	p    *Policy
	st   *Stats
	bufs [][]byte // one output buffer per depth, reused: a child's output is copied into its parent's at once
	keys map[string]keyClass
	// cur counts the removals of the record (or resource, scope) being rewritten;
	// nil outside one.
	cur    *[NumReasons]uint32
	counts [][NumReasons]uint32 // by depth, maxDepth+1 of them; see rewrite
	drop   bool                 // the log record being rewritten matched a drop pattern
}

var errDepth = fmt.Errorf("%w: values nested deeper than %d levels", otlp.ErrMalformed, maxDepth)

// rewrite rebuilds msg, a message of kind k at depth d, returning msg itself when
// nothing in it changed.
func (w *walker) rewrite(d int, k kind, msg []byte) ([]byte, bool, error) {
	if d > maxDepth {
		return nil, false, errDepth
	}
	// The counts live in the walker, one set per depth: a local array whose address
	// w.cur holds would be allocated on every record.
	counts := &w.counts[d]
	saved := w.cur
	if countField[k] != 0 || isRecord(k) {
		*counts = [NumReasons]uint32{}
		w.cur = counts
		defer func() { w.cur = saved }()
	}
	e := edit{d: d, msg: msg}
	for i := 0; i < len(msg); {
		num, typ, v, n, err := otlp.NextField(msg[i:])
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", otlp.ErrMalformed, err)
		}
		if typ != protowire.BytesType {
			i += n
			continue
		}
		nv, changed, drop, err := w.field(d, k, num, v)
		if err != nil {
			return nil, false, err
		}
		if w.drop && k == kLog {
			return nil, false, nil // the record goes whole: nothing else in it matters
		}
		if changed || drop {
			e.replace(w, i, n, num, nv, drop)
		}
		i += n
	}
	if w.cur == counts && countTotal(counts) > 0 {
		if isRecord(k) {
			w.st.Records++
		}
		e.replace(w, len(msg), 0, 0, nil, true)
		e.out = appendCounts(e.out, countField[k], counts)
	}
	out, changed := e.finish(w)
	return out, changed, nil
}

// edit rebuilds a message at depth d field by field, copying only once something
// changes, in the walker's buffer for that depth.
type edit struct {
	d       int
	msg     []byte
	out     []byte
	started bool
	copied  int // msg[:copied] is in out or was replaced
}

// replace puts nv (or nothing, when drop) in place of the field msg[i:i+n] numbered num.
func (e *edit) replace(w *walker, i, n int, num protowire.Number, nv []byte, drop bool) {
	if !e.started {
		e.out, e.started = w.buf(e.d), true
	}
	e.out = append(e.out, e.msg[e.copied:i]...)
	if !drop {
		e.out = protowire.AppendTag(e.out, num, protowire.BytesType)
		e.out = protowire.AppendBytes(e.out, nv)
	}
	e.copied = i + n
}

// finish returns the rebuilt message, or msg itself when nothing changed.
func (e *edit) finish(w *walker) ([]byte, bool) {
	if !e.started {
		return e.msg, false
	}
	e.out = append(e.out, e.msg[e.copied:]...)
	w.bufs[e.d] = e.out
	return e.out, true
}

func countTotal(c *[NumReasons]uint32) uint32 {
	var t uint32
	for _, n := range c {
		t += n
	}
	return t
}

// appendCounts appends a count attribute per reason with removals.
func appendCounts(b []byte, field protowire.Number, c *[NumReasons]uint32) []byte {
	for r, n := range c {
		if n == 0 || Reason(r) == ReasonDropped {
			continue
		}
		var any []byte
		any = protowire.AppendTag(any, 3, protowire.VarintType) // AnyValue.int_value
		any = protowire.AppendVarint(any, uint64(n))
		key := CountAttributePrefix + Reason(r).String()
		size := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(len(any))
		b = protowire.AppendTag(b, field, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, key)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, any)
	}
	return b
}

// buf returns depth d's output buffer, emptied.
func (w *walker) buf(d int) []byte {
	for len(w.bufs) <= d {
		w.bufs = append(w.bufs, nil)
	}
	return w.bufs[d][:0]
}

// field rewrites one length-delimited field of a message of kind k. drop removes it.
func (w *walker) field(d int, k kind, num protowire.Number, v []byte) (nv []byte, changed, drop bool, err error) {
	sub := func(c kind) ([]byte, bool, bool, error) {
		nv, changed, err := w.rewrite(d+1, c, v)
		return nv, changed, false, err
	}
	switch k {
	case kLogsRequest, kTracesRequest, kMetricsRequest:
		if num == 1 {
			return sub(kResourceLogs + (k - kLogsRequest))
		}
	case kResourceLogs, kResourceSpans, kResourceMetrics:
		switch num {
		case 1:
			return sub(kResource)
		case 2, 1000: // scope groups, and their deprecated form
			return sub(kScopeLogs + (k - kResourceLogs))
		}
	case kResource:
		if num == 1 {
			return w.attr(d+1, v)
		}
	case kScopeLogs, kScopeSpans, kScopeMetrics:
		switch num {
		case 1:
			return sub(kScope)
		case 2:
			switch k {
			case kScopeLogs:
				w.drop = false
				nv, changed, err := w.rewrite(d+1, kLog, v)
				if w.drop {
					w.drop = false
					w.st.Dropped++
					w.st.Reasons[ReasonDropped]++
					w.note(ReasonDropped, "log.body", 1)
					return nil, false, true, err
				}
				return nv, changed, false, err
			case kScopeSpans:
				return sub(kSpan)
			default:
				return sub(kMetric)
			}
		}
	case kScope:
		if num == 3 {
			return w.attr(d+1, v)
		}
	case kLog:
		switch num {
		case 5:
			if w.dropMatch(v, 0) {
				w.drop = true
				return nil, false, false, nil
			}
			return w.value(d+1, v, modeBody, "log.body")
		case 6:
			return w.attr(d+1, v)
		}
	case kSpan:
		switch num {
		case 5:
			return w.str(v, modePlain, "span.name")
		case 9:
			return w.attr(d+1, v)
		case 11:
			return sub(kEvent)
		case 13:
			return sub(kLink)
		case 15:
			return sub(kStatus)
		}
	case kEvent:
		switch num {
		case 2:
			return w.str(v, modePlain, "span.event.name")
		case 3:
			return w.attr(d+1, v)
		}
	case kLink:
		if num == 4 {
			return w.attr(d+1, v)
		}
	case kStatus:
		if num == 2 {
			return w.str(v, modePlain, "span.status.message")
		}
	case kMetric:
		switch num {
		case 5, 7:
			return sub(kNumberData)
		case 9:
			return sub(kHistogramData)
		case 10:
			return sub(kExpData)
		case 11:
			return sub(kSummaryData)
		case 12:
			return w.attr(d+1, v)
		}
	case kNumberData, kHistogramData, kExpData, kSummaryData:
		if num == 1 {
			return sub(kNumberPoint + (k - kNumberData))
		}
	case kNumberPoint, kHistogramPoint, kExpPoint, kSummaryPoint:
		if num == countField[k] {
			return w.attr(d+1, v)
		}
		if (k == kNumberPoint && num == 5) || (k == kHistogramPoint && num == 8) || (k == kExpPoint && num == 11) {
			return sub(kExemplar)
		}
	case kExemplar:
		if num == 7 {
			return w.attr(d+1, v)
		}
	}
	return v, false, false, nil
}

// attr rewrites one KeyValue attribute.
func (w *walker) attr(d int, kv []byte) (nv []byte, changed, drop bool, err error) {
	key, val, err := splitKV(kv)
	if err != nil {
		return nil, false, false, err
	}
	switch w.class(key) {
	case classContext:
		return kv, false, false, nil
	case classDrop:
		w.count(ReasonAttribute, 1)
		w.note(ReasonAttribute, string(key), 1)
		return nil, false, true, nil
	case classSecret:
		if isEmptyOrMasked(val) {
			return kv, false, false, nil
		}
		w.count(ReasonSecret, 1)
		w.note(ReasonSecret, string(key), 1)
		return w.buildKV(d, key, secretValue()), true, false, nil
	case classURL:
		return w.kvValue(d, kv, key, val, modeURL)
	case classSQL:
		return w.kvValue(d, kv, key, val, modeSQL)
	}
	return w.kvValue(d, kv, key, val, modePlain)
}

// kvValue rewrites the value of a KeyValue whose key stays.
func (w *walker) kvValue(d int, kv, key, val []byte, m mode) ([]byte, bool, bool, error) {
	if val == nil {
		return kv, false, false, nil
	}
	nv, changed, _, err := w.value(d+1, val, m, unsafeString(key))
	if err != nil || !changed {
		return kv, false, false, err
	}
	return w.buildKV(d, key, nv), true, false, nil
}

// buildKV encodes a KeyValue in depth d's buffer.
func (w *walker) buildKV(d int, key, val []byte) []byte {
	b := w.buf(d)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, val)
	w.bufs[d] = b
	return b
}

// secretValue is the AnyValue that replaces a secret.
func secretValue() []byte {
	return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), secretMarker)
}

// isEmptyOrMasked reports whether an AnyValue holds nothing worth masking: no value,
// an empty string, or the secret marker already.
func isEmptyOrMasked(val []byte) bool {
	if len(val) == 0 {
		return true
	}
	num, typ, v, n, err := otlp.NextField(val)
	return err == nil && n == len(val) && num == 1 && typ == protowire.BytesType && (len(v) == 0 || string(v) == secretMarker)
}

// splitKV returns a KeyValue's key and encoded value (nil when absent).
func splitKV(kv []byte) (key, val []byte, err error) {
	for len(kv) > 0 {
		num, typ, v, n, err := otlp.NextField(kv)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: attribute: %v", otlp.ErrMalformed, err)
		}
		if typ == protowire.BytesType {
			switch num {
			case 1:
				key = v
			case 2:
				val = v
			}
		}
		kv = kv[n:]
	}
	return key, val, nil
}

// value rewrites an AnyValue: strings by mode, arrays and maps element by element.
// key names where the value sits, for Stats.
func (w *walker) value(d int, v []byte, m mode, key string) ([]byte, bool, bool, error) {
	if d > maxDepth {
		return nil, false, false, errDepth
	}
	e := edit{d: d, msg: v}
	for i := 0; i < len(v); {
		num, typ, fv, n, err := otlp.NextField(v[i:])
		if err != nil {
			return nil, false, false, fmt.Errorf("%w: value: %v", otlp.ErrMalformed, err)
		}
		var nv []byte
		changed := false
		if typ == protowire.BytesType {
			switch num {
			case 1: // string_value
				nv, changed, _, err = w.str(fv, m, key)
			case 5: // array_value
				nv, changed, err = w.list(d+1, fv, kArray, m, key)
			case 6: // kvlist_value
				nv, changed, err = w.list(d+1, fv, kKVList, m, key)
			}
			if err != nil {
				return nil, false, false, err
			}
		}
		if changed {
			e.replace(w, i, n, num, nv, false)
		}
		i += n
	}
	out, changed := e.finish(w)
	return out, changed, false, nil
}

// list rewrites an ArrayValue (values) or a KeyValueList (nested keys: secret-named
// ones are masked whole, the rest by mode).
func (w *walker) list(d int, v []byte, k kind, m mode, key string) ([]byte, bool, error) {
	if d > maxDepth {
		return nil, false, errDepth
	}
	e := edit{d: d, msg: v}
	for i := 0; i < len(v); {
		num, typ, fv, n, err := otlp.NextField(v[i:])
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", otlp.ErrMalformed, err)
		}
		var nv []byte
		changed := false
		if num == 1 && typ == protowire.BytesType {
			if k == kArray {
				nv, changed, _, err = w.value(d+1, fv, m, key)
			} else {
				nv, changed, err = w.nestedKV(d+1, fv, m, key)
			}
			if err != nil {
				return nil, false, err
			}
		}
		if changed {
			e.replace(w, i, n, 1, nv, false)
		}
		i += n
	}
	out, changed := e.finish(w)
	return out, changed, nil
}

// nestedKV rewrites a key/value of a map inside a value.
func (w *walker) nestedKV(d int, kv []byte, m mode, key string) ([]byte, bool, error) {
	k, val, err := splitKV(kv)
	if err != nil {
		return nil, false, err
	}
	if w.class(k) == classSecret {
		if isEmptyOrMasked(val) {
			return kv, false, nil
		}
		w.count(ReasonSecret, 1)
		w.note(ReasonSecret, key, 1)
		return w.buildKV(d, k, secretValue()), true, nil
	}
	if val == nil {
		return kv, false, nil
	}
	nv, changed, _, err := w.value(d+1, val, m, key)
	if err != nil || !changed {
		return kv, false, err
	}
	return w.buildKV(d, k, nv), true, nil
}

// str rewrites one string by mode.
func (w *walker) str(v []byte, m mode, key string) ([]byte, bool, bool, error) {
	if len(v) == 0 {
		return v, false, false, nil
	}
	s := unsafeString(v)
	changed := false
	switch m {
	case modeURL:
		if out, n := w.p.url.Sanitize(s); n > 0 {
			s, changed = out, true
			w.count(ReasonURL, n)
			w.note(ReasonURL, key, n)
		}
	case modeSQL:
		if out, n := SanitizeSQL(s); n > 0 {
			s, changed = out, true
			w.count(ReasonSQL, n)
			w.note(ReasonSQL, key, n)
		}
	}
	out, counts := w.p.r.String(s)
	if t := counts.Total(); t > 0 {
		s, changed = out, true
		for k, n := range counts {
			if n > 0 {
				w.count(Reason(k), int(n))
				w.note(Reason(k), key, int(n))
			}
		}
	}
	if m == modeBody && w.p.eff.BodyMaxBytes > 0 && len(s) > w.p.eff.BodyMaxBytes {
		// The ellipsis fits in the limit, so a truncated body is not truncated again.
		cut := max(0, w.p.eff.BodyMaxBytes-len("…"))
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s, changed = s[:cut]+"…", true
		w.count(ReasonTruncated, 1)
		w.note(ReasonTruncated, key, 1)
	}
	if !changed {
		return v, false, false, nil
	}
	return []byte(s), true, false, nil
}

// dropMatch reports whether a log body (an AnyValue) has a string a drop pattern
// matches.
func (w *walker) dropMatch(v []byte, d int) bool {
	if len(w.p.drop) == 0 || d > maxDepth {
		return false
	}
	for len(v) > 0 {
		num, typ, fv, n, err := otlp.NextField(v)
		if err != nil {
			return false
		}
		if typ == protowire.BytesType {
			switch num {
			case 1:
				s := unsafeString(fv)
				for _, re := range w.p.drop {
					if re.MatchString(s) {
						return true
					}
				}
			case 5, 6: // array or map: their elements' values
				for e := fv; len(e) > 0; {
					_, _, ev, en, err := otlp.NextField(e)
					if err != nil {
						return false
					}
					if num == 6 {
						_, ev, _ = splitKV(ev)
					}
					if w.dropMatch(ev, d+1) {
						return true
					}
					e = e[en:]
				}
			}
		}
		v = v[n:]
	}
	return false
}

// class decides what the policy does with an attribute key, caching the decision.
func (w *walker) class(key []byte) keyClass {
	if c, ok := w.keys[string(key)]; ok {
		return c
	}
	c := w.p.classify(string(key))
	if len(w.keys) < maxKeyCache {
		w.keys[string(key)] = c
	}
	return c
}

func (p *Policy) classify(key string) keyClass {
	e := &p.eff
	switch {
	case p.context[key]:
		return classContext
	case strings.HasPrefix(key, CountAttributePrefix):
		// A count this agent wrote before (a request passing twice) stays.
		return classContext
	case p.alwaysKept[key]:
	case redactpolicy.MatchAny(e.Deny, key), e.AllowOnly && !redactpolicy.MatchAny(e.Allow, key):
		return classDrop
	case redactpolicy.MatchAny(e.SecretKeys, key):
		return classSecret
	}
	switch {
	case p.urlKeys[key]:
		return classURL
	case p.sqlKeys[key]:
		return classSQL
	}
	return classPlain
}

// count adds n removals of r to the request and the current record.
func (w *walker) count(r Reason, n int) {
	w.st.Reasons[r] += n
	if w.cur != nil {
		w.cur[r] += uint32(n)
	}
}

// note adds n removals of r at key to Stats.Removals.
func (w *walker) note(r Reason, key string, n int) { w.st.note(r, key, n) }

// note adds n removals of r at key to Removals, bounded by maxRemovals.
func (s *Stats) note(r Reason, key string, n int) {
	rs := s.Removals
	for i := range rs {
		if rs[i].Reason == r && rs[i].Key == key {
			rs[i].Count += n
			return
		}
	}
	if len(rs) >= maxRemovals {
		key = "(other)"
		for i := range rs {
			if rs[i].Reason == r && rs[i].Key == key {
				rs[i].Count += n
				return
			}
		}
	}
	if len(key) > maxKeyLen {
		key = key[:maxKeyLen]
	}
	// The key may point into the request, which the caller reuses: copy it.
	s.Removals = append(rs, Removal{Reason: r, Key: strings.Clone(key), Count: n})
}

// Text applies the policy's detectors (and custom patterns) to free text that is
// not telemetry, such as a remote command's output, and returns it with every
// match masked or hashed. st, when not nil, receives the counts under key. Text
// that loses nothing is returned as itself.
func (p *Policy) Text(s, key string, st *Stats) string {
	if p.off || s == "" {
		return s
	}
	out, counts := p.r.String(s)
	if st != nil {
		for k, n := range counts {
			if n > 0 {
				st.Reasons[k] += int(n)
				st.note(Reason(k), key, int(n))
			}
		}
	}
	return out
}

// unsafeString views b as a string without copying. The redactor returns its input
// unchanged or a new string, and nothing keeps the view past the request, so the
// bytes are never seen changing.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Reasons returns every reason in order, for metrics and reports.
func Reasons() []Reason {
	out := make([]Reason, NumReasons)
	for r := range out {
		out[r] = Reason(r)
	}
	return out
}
