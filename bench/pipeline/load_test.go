package main

import (
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/periscope-dev/periscope/internal/agent/redact"
	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// request encodes the log record telemetrygen sends for part, attributes parsed the
// way telemetrygen parses them (key="string" or key=integer).
func request(t *testing.T, part loadPart) []byte {
	t.Helper()
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "bench")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetStr(part.body)
	for _, a := range part.attrs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			t.Fatalf("attribute %q has no '='", a)
		}
		if n, err := strconv.Atoi(v); err == nil {
			lr.Attributes().PutInt(k, int64(n))
			continue
		}
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			t.Fatalf("attribute %q: telemetrygen wants a quoted string or an integer", a)
		}
		lr.Attributes().PutStr(k, v[1:len(v)-1])
	}
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The self-check is only as good as its list: every planted value must really be in
// the personal records, or a leak of it could never be seen.
func TestSelfCheckSeesEveryPlantedValue(t *testing.T) {
	loadKind = "app"
	var c check
	c.scan(request(t, personal))
	if _, err := c.verdict("logs"); err == nil {
		t.Fatal("the unredacted personal record passed the self-check")
	}
	for i, s := range leaks {
		if c.leaks[i].Load() != 1 {
			t.Errorf("planted value %q is not in the personal record", s)
		}
	}
}

// The agent's default policy removes everything the self-check looks for, and leaves
// the operational values of the ordinary records, so a benchmark run measures a
// redaction that works rather than failing on the load itself.
func TestDefaultPolicyPassesSelfCheck(t *testing.T) {
	loadKind = "app"
	p, err := redact.Compile(redactpolicy.Resolve(redactpolicy.Policy{}), []byte("bench hash key"))
	if err != nil {
		t.Fatal(err)
	}
	var c check
	for _, part := range []loadPart{ordinary, personal} {
		out, err := p.Request(otlp.Logs, nil, request(t, part), nil)
		if err != nil {
			t.Fatal(err)
		}
		c.scan(out)
	}
	summary, err := c.verdict("logs")
	if err != nil {
		t.Fatalf("%v (%s)", err, summary)
	}
	for i, s := range kept {
		if c.kept[i].Load() == 0 {
			t.Errorf("operational value %q did not survive the default policy", s)
		}
	}
}
