// Package otlp holds what the agent and the manager share about application
// telemetry: the three OTLP signals, the deployment-context attributes every resource
// carries, and the encoding, decoding and tagging of OTLP export requests.
//
// A batch travels through Periscope as the protobuf encoding of an OTLP export request
// (ExportLogsServiceRequest, ExportTraceServiceRequest or ExportMetricsServiceRequest),
// so queues, the manager and exporters can pass it on without decoding it again.
package otlp

import "fmt"

// Signal is one of the three OTLP signals.
type Signal uint8

// The signals, in the order OTLP lists them. The zero value is invalid so a forgotten
// field is caught.
const (
	Traces Signal = iota + 1
	Metrics
	Logs
)

// Signals lists every signal, for loops that set something up per signal.
var Signals = [...]Signal{Traces, Metrics, Logs}

// String returns the signal's name as OTLP paths spell it: "traces", "metrics", "logs".
func (s Signal) String() string {
	switch s {
	case Traces:
		return "traces"
	case Metrics:
		return "metrics"
	case Logs:
		return "logs"
	}
	return fmt.Sprintf("signal(%d)", uint8(s))
}

// Path returns the OTLP/HTTP path for the signal, such as "/v1/logs".
func (s Signal) Path() string { return "/v1/" + s.String() }

// ParseSignal parses a signal name as String returns it.
func ParseSignal(name string) (Signal, error) {
	for _, s := range Signals {
		if s.String() == name {
			return s, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q (want traces, metrics or logs)", name)
}
