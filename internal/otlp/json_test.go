package otlp

import (
	"bytes"
	"errors"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// exportRequest is what pdata's export request types share.
type exportRequest interface {
	UnmarshalJSON([]byte) error
	MarshalProto() ([]byte, error)
}

// FuzzJSONToProtoMatchesExportRequests checks that converting through the signal's
// data message (which keeps grpc-go out of the agent) accepts and produces exactly
// what pdata's export request types do, on any input nested no deeper than
// MaxJSONDepth; deeper input is refused as malformed before decoding.
func FuzzJSONToProtoMatchesExportRequests(f *testing.F) {
	f.Add(uint8(0), []byte(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"payment declined"},"severityNumber":17}]}]}]}`))
	f.Add(uint8(1), []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2}]}]}]}`))
	f.Add(uint8(2), []byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"requests","sum":{"dataPoints":[{"asInt":"3"}],"isMonotonic":true}}]}]}]}`))
	f.Add(uint8(0), []byte(`{}`))
	f.Add(uint8(1), []byte(`{"resourceSpans":[{]}`))
	f.Add(uint8(0), nestedLog(MaxJSONDepth))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		sig := Signals[int(which)%len(Signals)]
		var want exportRequest
		switch sig {
		case Logs:
			want = plogotlp.NewExportRequest()
		case Traces:
			want = ptraceotlp.NewExportRequest()
		default:
			want = pmetricotlp.NewExportRequest()
		}
		got, err := JSONToProto(sig, data)
		if checkJSONDepth(data) != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v: input nested past MaxJSONDepth: got %v, want ErrMalformed", sig, err)
			}
			return
		}
		wantErr := want.UnmarshalJSON(data)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%v: JSONToProto error %v, export request error %v", sig, err, wantErr)
		}
		if err != nil {
			return
		}
		wantPB, err := want.MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantPB) {
			t.Fatalf("%v: JSONToProto gave %x, the export request %x", sig, got, wantPB)
		}
	})
}
