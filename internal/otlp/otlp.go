package otlp

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/klauspost/compress/zstd"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// OTLP/HTTP content types.
const (
	ContentTypeProto = "application/x-protobuf"
	ContentTypeJSON  = "application/json"
)

// ErrTooLarge is returned by Decompress when a body expands beyond its limit.
var ErrTooLarge = errors.New("request body too large")

// Decompress reads body encoded per an HTTP Content-Encoding ("", "identity", "gzip"
// or "zstd") and returns at most limit decoded bytes, failing with ErrTooLarge beyond
// that so a small compressed body cannot expand without bound.
func Decompress(encoding string, body io.Reader, limit int64) ([]byte, error) {
	var r io.Reader
	switch encoding {
	case "", "identity":
		r = body
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
		}
		defer zr.Close()
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)+1))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrMalformed, err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("unsupported content encoding %q (want gzip, zstd or none)", encoding)
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrTooLarge
		}
		if encoding == "" || encoding == "identity" {
			return nil, fmt.Errorf("read body: %w", err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, encoding, err)
	}
	if int64(len(data)) > limit {
		return nil, ErrTooLarge
	}
	return data, nil
}

// JSONToProto converts an OTLP-JSON export request for sig to its protobuf encoding.
// It goes through pdata's signal types (an export request and the signal's data
// message share field 1), not its *otlp packages, which would link grpc-go into the
// agent. A request nested deeper than MaxJSONDepth is refused (ErrMalformed)
// before any decoding.
func JSONToProto(sig Signal, data []byte) ([]byte, error) {
	if err := checkJSONDepth(data); err != nil {
		return nil, err
	}
	var (
		out []byte
		err error
	)
	switch sig {
	case Logs:
		var l plog.Logs
		if l, err = (&plog.JSONUnmarshaler{}).UnmarshalLogs(data); err == nil {
			out, err = (&plog.ProtoMarshaler{}).MarshalLogs(l)
		}
	case Traces:
		var t ptrace.Traces
		if t, err = (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(data); err == nil {
			out, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(t)
		}
	case Metrics:
		var m pmetric.Metrics
		if m, err = (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(data); err == nil {
			out, err = (&pmetric.ProtoMarshaler{}).MarshalMetrics(m)
		}
	default:
		return nil, fmt.Errorf("no export request for %v", sig)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return out, nil
}

// Status is an OTLP error response: a google.rpc.Status with a gRPC code and message.
type Status struct {
	Code    int32
	Message string
}

// Marshal encodes the status as OTLP/HTTP expects it in a response of contentType.
func (s Status) Marshal(contentType string) []byte {
	msg := strings.ToValidUTF8(s.Message, "\uFFFD")
	if contentType == ContentTypeJSON {
		b, _ := json.Marshal(struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		}{s.Code, msg})
		return b
	}
	var b []byte
	if s.Code != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s.Code))
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendString(b, msg)
}

// SuccessBody is the body of a fully successful export response: an empty
// Export*ServiceResponse in either encoding.
func SuccessBody(contentType string) []byte {
	if contentType == ContentTypeJSON {
		return []byte("{}")
	}
	return nil
}

// ParseStatusMessage returns the message of an OTLP error body (a google.rpc.Status in
// contentType's encoding), or the body itself when it is not one.
func ParseStatusMessage(contentType string, body []byte) string {
	if strings.HasPrefix(contentType, ContentTypeJSON) {
		var s struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &s) == nil && s.Message != "" {
			return s.Message
		}
		return string(body)
	}
	msg := ""
	err := eachField(body, "status", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == 2 && typ == protowire.BytesType {
			msg = string(v)
		}
		return nil
	})
	if err != nil || msg == "" {
		return string(body)
	}
	return msg
}
