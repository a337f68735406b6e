package redact

import (
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/redactpolicy"
)

// Free text (a command's output) passes the same detectors as telemetry, and
// what they removed is counted under the caller's key.
func TestTextMasksWithThePolicysDetectors(t *testing.T) {
	p, err := Compile(redactpolicy.Merge(redactpolicy.Policy{}, redactpolicy.Policy{}), []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	in := "dsn=postgres://app:hunter2@db:5432/x contact ops@example.com key AKIAIOSFODNN7EXAMPLE rows=42"
	var st Stats
	out := p.Text(in, "command.output", &st)
	for _, secret := range []string{"hunter2", "ops@example.com", "AKIAIOSFODNN7EXAMPLE"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q survived: %s", secret, out)
		}
	}
	if !strings.Contains(out, "rows=42") {
		t.Errorf("text that is not personal was changed: %s", out)
	}
	for _, k := range []Kind{KindPassword, KindEmail, KindAPIKey} {
		if st.Reasons[k] != 1 {
			t.Errorf("%s counted %d times, want 1 (%+v)", k, st.Reasons[k], st.Reasons)
		}
	}
	for _, rm := range st.Removals {
		if rm.Key != "command.output" {
			t.Errorf("removal %+v not under the caller's key", rm)
		}
	}
	if clean := "nothing to see"; p.Text(clean, "k", nil) != clean {
		t.Error("clean text changed")
	}
	off, err := Compile(redactpolicy.Effective{Off: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := off.Text(in, "k", nil); got != in {
		t.Errorf("an off policy changed the text: %s", got)
	}
}
