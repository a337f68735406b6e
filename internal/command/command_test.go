package command

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func ptr(f float64) *float64 { return &f }

// rowCount is a declaration like the one a vendor ships: an exec handler with a
// bounded integer, an enum, a patterned string and a boolean with a default.
var rowCount = Spec{
	Name: "row-count", Description: "count rows", Timeout: Duration(10 * time.Second),
	Exec: &ExecHandler{Path: "/usr/bin/rowcount", Args: []string{"--fast"}},
	Params: []Param{
		{Name: "limit", Type: TypeInteger, Min: ptr(1), Max: ptr(1000), Required: true},
		{Name: "table", Type: TypeEnum, Values: []string{"orders", "users"}, Required: true},
		{Name: "prefix", Type: TypeString, Pattern: `[a-z]+`, MaxLength: 8},
		{Name: "exact", Type: TypeBoolean, Default: false},
		{Name: "ratio", Type: TypeNumber, Min: ptr(0), Max: ptr(1)},
	},
}

func TestValidateParamsTypesAndDefaults(t *testing.T) {
	got, err := ValidateParams(rowCount, map[string]any{"limit": "42", "table": "orders", "ratio": json.Number("0.5")})
	if err != nil {
		t.Fatal(err)
	}
	want := Params{"limit": int64(42), "table": "orders", "exact": false, "ratio": 0.5}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	// Command-line strings and JSON values read the same.
	got2, err := ValidateParams(rowCount, map[string]any{"limit": float64(42), "table": "orders", "exact": "true"})
	if err != nil || got2["limit"] != int64(42) || got2["exact"] != true {
		t.Fatalf("JSON values: %v %v", got2, err)
	}
}

func TestValidateParamsRefusesWithTheRule(t *testing.T) {
	for name, tc := range map[string]struct {
		raw  map[string]any
		want string
	}{
		"unknown":          {map[string]any{"limit": 1, "table": "orders", "drop": "yes"}, `no parameter "drop"`},
		"missing required": {map[string]any{"table": "orders"}, "parameter limit is required"},
		"above max":        {map[string]any{"limit": 1001, "table": "orders"}, "outside its bounds"},
		"below min":        {map[string]any{"limit": "0", "table": "orders"}, "outside its bounds"},
		"not an integer":   {map[string]any{"limit": 1.5, "table": "orders"}, "an integer"},
		"not a number":     {map[string]any{"limit": "many", "table": "orders"}, "an integer"},
		"enum":             {map[string]any{"limit": 1, "table": "payments"}, "one of orders, users"},
		"pattern":          {map[string]any{"limit": 1, "table": "orders", "prefix": "a;rm"}, "does not match"},
		"too long":         {map[string]any{"limit": 1, "table": "orders", "prefix": "abcdefghi"}, "at most 8"},
		"bool":             {map[string]any{"limit": 1, "table": "orders", "exact": "perhaps"}, "true or false"},
		"object":           {map[string]any{"limit": map[string]any{}, "table": "orders"}, "an object or a list"},
		"not text":         {map[string]any{"limit": 1, "table": "orders", "prefix": "\xff"}, "UTF-8"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ValidateParams(rowCount, tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestSpecValidation(t *testing.T) {
	ok := Spec{Name: "flush-cache", HTTP: &HTTPHandler{URL: "http://127.0.0.1:8080/admin/flush"}}
	if err := ValidateSpecs([]Spec{ok, rowCount}); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		s    Spec
		want string
	}{
		"no handler":      {Spec{Name: "x"}, "exactly one handler"},
		"two handlers":    {Spec{Name: "x", HTTP: ok.HTTP, Exec: rowCount.Exec}, "exactly one handler"},
		"relative path":   {Spec{Name: "x", Exec: &ExecHandler{Path: "rowcount"}}, "absolute path"},
		"shell params":    {Spec{Name: "x", Exec: &ExecHandler{Path: "/bin/x", Params: "shell"}}, `"env" or "stdin"`},
		"bad url":         {Spec{Name: "x", HTTP: &HTTPHandler{URL: "file:///etc/passwd"}}, "http or https"},
		"creds in url":    {Spec{Name: "x", HTTP: &HTTPHandler{URL: "http://u:p@h/"}}, "credentials"},
		"bad name":        {Spec{Name: "Row Count", HTTP: ok.HTTP}, "command name"},
		"timeout":         {Spec{Name: "x", HTTP: ok.HTTP, Timeout: Duration(2 * time.Hour)}, "timeout"},
		"output":          {Spec{Name: "x", HTTP: ok.HTTP, OutputLimit: MaxOutputLimit + 1}, "output_limit"},
		"bad pattern":     {Spec{Name: "x", HTTP: ok.HTTP, Params: []Param{{Name: "p", Type: TypeString, Pattern: "("}}}, "pattern"},
		"min above max":   {Spec{Name: "x", HTTP: ok.HTTP, Params: []Param{{Name: "p", Type: TypeInteger, Min: ptr(2), Max: ptr(1)}}}, "above max"},
		"bad default":     {Spec{Name: "x", HTTP: ok.HTTP, Params: []Param{{Name: "p", Type: TypeInteger, Max: ptr(1), Default: 5}}}, "default"},
		"empty enum":      {Spec{Name: "x", HTTP: ok.HTTP, Params: []Param{{Name: "p", Type: TypeEnum}}}, "enum lists"},
		"header newline":  {Spec{Name: "x", HTTP: &HTTPHandler{URL: "http://h/", Headers: map[string]string{"X": "a\r\nB: c"}}}, "header"},
		"duplicate param": {Spec{Name: "x", HTTP: ok.HTTP, Params: []Param{{Name: "p", Type: TypeBoolean}, {Name: "p", Type: TypeBoolean}}}, "twice"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
	if err := ValidateSpecs([]Spec{ok, ok}); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Fatalf("duplicate command: %v", err)
	}
}

func TestParseSpecsFile(t *testing.T) {
	yamlDoc := `
commands:
  - name: row-count
    description: Count the rows of a table
    timeout: 20s
    output_limit: 4096
    exec:
      path: /opt/app/bin/rowcount
      args: [--readonly]
      params: stdin
    params:
      - {name: table, type: enum, values: [orders, users], required: true}
  - name: flush-cache
    http: {url: "http://127.0.0.1:8080/admin/flush", method: POST}
`
	specs, err := ParseSpecs([]byte(yamlDoc))
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].EffectiveTimeout() != 20*time.Second || specs[0].Exec.Params != ParamsStdin || specs[1].EffectiveOutputLimit() != DefaultOutputMax {
		t.Fatalf("parsed %+v", specs)
	}
	// JSON is YAML too, and a list works as well as an object.
	b, _ := json.Marshal(specs)
	again, err := ParseSpecs(b)
	if err != nil || len(again) != 2 || again[0].Timeout != specs[0].Timeout {
		t.Fatalf("round trip through JSON: %+v %v", again, err)
	}
	if _, err := ParseSpecs([]byte("commands:\n  - name: x\n    tmeout: 5s\n    http: {url: 'http://h/'}\n")); err == nil || !strings.Contains(err.Error(), "tmeout") {
		t.Fatalf("a typo must be refused, got %v", err)
	}
}

func TestStatesMoveForwardOnly(t *testing.T) {
	for _, tc := range []struct {
		from, to State
		ok       bool
	}{
		{StateQueued, StateDelivered, true}, {StateDelivered, StateRunning, true}, {StateRunning, StateSucceeded, true},
		{StateQueued, StateRefused, true}, {StateDelivered, StateExpired, true},
		{StateRunning, StateDelivered, false}, {StateSucceeded, StateFailed, false}, {StateCancelled, StateRunning, false},
		{StateRunning, StateRunning, false}, {StateQueued, State("done"), false},
	} {
		if got := tc.to.Follows(tc.from); got != tc.ok {
			t.Errorf("%s → %s: %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
}

func TestRule(t *testing.T) {
	if ok, _ := (Rule{}).Permits("row-count"); !ok {
		t.Error("the default rule must allow declared commands")
	}
	if ok, why := (Rule{Disabled: true}).Permits("row-count"); ok || !strings.Contains(why, "disabled") {
		t.Errorf("disabled: %v %q", ok, why)
	}
	if ok, why := (Rule{Allow: []string{"flush-cache"}}).Permits("row-count"); ok || !strings.Contains(why, "flush-cache") {
		t.Errorf("allow list: %v %q", ok, why)
	}
	r, err := DecodeRule(EncodeRule(Rule{Allow: []string{"a"}}))
	if err != nil || len(r.Allow) != 1 {
		t.Fatalf("round trip: %+v %v", r, err)
	}
}

func TestDecodeUpdatesBounds(t *testing.T) {
	good := Message(MessageUpdate, Updates{Updates: []Update{{ID: "inv-1", State: StateSucceeded, Result: &Result{Output: "ok"}}}}).Data
	if u, err := DecodeUpdates(good); err != nil || len(u.Updates) != 1 {
		t.Fatalf("%+v %v", u, err)
	}
	for name, body := range map[string]string{
		"unknown field": `{"updates":[],"extra":1}`,
		"bad id":        `{"updates":[{"id":"../x","state":"failed"}]}`,
		"bad state":     `{"updates":[{"id":"a","state":"done"}]}`,
		"queued":        `{"updates":[{"id":"a","state":"queued"}]}`,
		"big output":    `{"updates":[{"id":"a","state":"failed","result":{"output":"` + strings.Repeat("x", MaxOutputLimit+1) + `","output_bytes":1,"duration_ns":1}}]}`,
		"two values":    `{"updates":[]} {}`,
	} {
		if _, err := DecodeUpdates([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzValidateParams: whatever an operator sends, validation never panics, and
// what it accepts is typed as declared and passes again unchanged.
func FuzzValidateParams(f *testing.F) {
	f.Add([]byte(`{"limit":5,"table":"orders"}`))
	f.Add([]byte(`{"limit":"1e3","table":"users","prefix":"abc","exact":"1","ratio":"NaN"}`))
	f.Add([]byte(`{"limit":9007199254740993,"table":"orders","ratio":-0}`))
	f.Add([]byte(`{"limit":null,"table":["orders"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var raw map[string]any
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if dec.Decode(&raw) != nil {
			return
		}
		got, err := ValidateParams(rowCount, raw)
		if err != nil {
			return
		}
		for _, p := range rowCount.Params {
			v, ok := got[p.Name]
			if !ok {
				if p.Required {
					t.Fatalf("required %s missing from %v", p.Name, got)
				}
				continue
			}
			switch p.Type {
			case TypeInteger:
				n, ok := v.(int64)
				if !ok || float64(n) < *p.Min || float64(n) > *p.Max {
					t.Fatalf("%s = %#v", p.Name, v)
				}
			case TypeNumber:
				if x, ok := v.(float64); !ok || x < *p.Min || x > *p.Max {
					t.Fatalf("%s = %#v", p.Name, v)
				}
			case TypeBoolean:
				if _, ok := v.(bool); !ok {
					t.Fatalf("%s = %#v", p.Name, v)
				}
			default:
				if _, ok := v.(string); !ok {
					t.Fatalf("%s = %#v", p.Name, v)
				}
			}
		}
		again, err := ValidateParams(rowCount, map[string]any(got))
		if err != nil || len(again) != len(got) {
			t.Fatalf("accepted %v but not again: %v", got, err)
		}
		for k, v := range got {
			if again[k] != v {
				t.Fatalf("%s changed from %#v to %#v", k, v, again[k])
			}
		}
	})
}

// FuzzDecodeInvocations: what an agent reads from the wire is bounded and never
// panics the decoder.
func FuzzDecodeInvocations(f *testing.F) {
	f.Add(Message(MessageInvoke, Invocations{Invocations: []Invocation{{ID: "a1", Command: "row-count", Params: Params{"limit": int64(3)}}}}).Data)
	f.Add([]byte(`{"invocations":[{"id":"","command":"X"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := DecodeInvocations(data)
		if err != nil {
			return
		}
		for _, inv := range v.Invocations {
			if checkID(inv.ID) != nil || !ValidName(inv.Command) {
				t.Fatalf("accepted %+v", inv)
			}
		}
	})
}
