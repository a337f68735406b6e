package otlp

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// nestedLog is a logs request whose one record's body is an array value nested
// n deep.
func nestedLog(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":`)
	b.WriteString(strings.Repeat(`{"arrayValue":{"values":[`, n))
	b.WriteString(`{"stringValue":"x"}`)
	b.WriteString(strings.Repeat(`]}}`, n))
	b.WriteString(`}]}]}]}`)
	return []byte(b.String())
}

// deepJSON is the request of issue 17: half a million levels, 14 MB.
func deepJSON() []byte { return nestedLog(500_000) }

func TestJSONToProtoRefusesDeepNestingBeforeDecoding(t *testing.T) {
	data := deepJSON()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := JSONToProto(Logs, data)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("a %d MB request nested 500,000 deep: got %v, want ErrMalformed", len(data)>>20, err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes nested 500,000 deep refused after allocating %d bytes", len(data), alloc)
	if alloc > 64<<10 {
		t.Fatalf("refusing a deep request allocated %d bytes; the depth check must run before decoding", alloc)
	}
}

func TestJSONToProtoKeepsWhatTagAccepts(t *testing.T) {
	// The deepest body Tag accepts converts; one level more is Tag's to refuse.
	deepest := maxDepth/2 - 1
	for n, tagOK := range map[int]bool{deepest: true, deepest + 1: false} {
		pb, err := JSONToProto(Logs, nestedLog(n))
		if err != nil {
			t.Fatalf("nested %d deep: %v", n, err)
		}
		if _, _, err := NewTagger(Context{}).Tag(Logs, nil, pb); (err == nil) != tagOK {
			t.Fatalf("nested %d deep: Tag gave %v, want ok=%v", n, err, tagOK)
		}
	}
	// Brackets in strings, escaped quotes among them, are not nesting.
	s := `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\"` + strings.Repeat("[{", 1000) + `"}}]}]}]}`
	if _, err := JSONToProto(Logs, []byte(s)); err != nil {
		t.Fatalf("brackets inside a string: %v", err)
	}
}

func TestCheckJSONDepth(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		ok   bool
	}{
		{"flat", `{"a":[1,2,{"b":3}]}`, true},
		{"at the bound", strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth), true},
		{"one past", strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1), false},
		{"unclosed, past", strings.Repeat("{", MaxJSONDepth+1), false},
		{"in a string", `"` + strings.Repeat("[", 2*MaxJSONDepth) + `"`, true},
		{"after an escaped quote", `"\"` + strings.Repeat("[", 2*MaxJSONDepth) + `"`, true},
		{"after an escaped backslash", `["\\"` + strings.Repeat("[", MaxJSONDepth) + `]`, false},
	} {
		err := checkJSONDepth([]byte(tc.data))
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Errorf("%s: got %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func BenchmarkCheckJSONDepth(b *testing.B) {
	data := nestedLog(20)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_ = checkJSONDepth(data)
	}
}
