package receiver

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/klauspost/compress/zstd"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/consumer/consumertest"
)

var (
	fuzzContentTypes = []string{otlp.ContentTypeProto, otlp.ContentTypeJSON, "application/json; charset=utf-8", "text/plain", ""}
	fuzzEncodings    = []string{"", "identity", "gzip", "zstd", "deflate", "br"}
)

// encodeAs compresses b as Content-Encoding enc would have it, when this test
// knows how; otherwise b goes as it is.
func encodeAs(zenc *zstd.Encoder, enc string, b []byte) []byte {
	var buf bytes.Buffer
	switch enc {
	case "gzip":
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
	case "zstd":
		return zenc.EncodeAll(b, nil)
	case "deflate":
		zw, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		zw.Write(b)
		zw.Close()
	default:
		return b
	}
	return buf.Bytes()
}

// errorStatus decodes an error body of content type ct.
func errorStatus(ct string, body []byte) (*spb.Status, error) {
	st := &spb.Status{}
	if ct == otlp.ContentTypeJSON {
		return st, protojson.Unmarshal(body, st)
	}
	return st, proto.Unmarshal(body, st)
}

// FuzzHTTP sends the OTLP/HTTP handler arbitrary bodies in every content type
// and encoding, compressed or raw: it answers 200 having passed the consumer at
// most MaxBytes of protobuf, or refuses with a google.rpc.Status whose code is
// not OK, and never panics.
func FuzzHTTP(f *testing.F) {
	pb, _ := consumertest.LogsRequest(3).MarshalProto()
	js, _ := consumertest.LogsRequest(3).MarshalJSON()
	for _, s := range []struct {
		ct, enc  uint8
		compress bool
		body     []byte
	}{
		{0, 0, false, pb}, {1, 0, false, js}, {2, 1, false, js}, {0, 2, true, pb}, {1, 3, true, js},
		{0, 4, true, pb}, {0, 5, false, pb}, {3, 0, false, pb}, {0, 2, false, []byte("not gzip")},
		{0, 3, false, []byte{0x28, 0xb5, 0x2f, 0xfd}}, {1, 2, true, bytes.Repeat([]byte("["), 1000)},
		{0, 2, true, make([]byte, 100<<10)}, {1, 0, false, []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\"[["}}]}]}]}`)},
	} {
		f.Add(s.ct, s.enc, s.compress, s.body)
	}
	const limit = 64 << 10
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { zenc.Close() })
	var got *consumer.Request
	h := (&HTTP{Consumer: consumer.ConsumerFunc(func(_ context.Context, r consumer.Request) error {
		got = &r
		return nil
	}), MaxBytes: limit}).handler(otlp.Logs)
	f.Fuzz(func(t *testing.T, ct, enc uint8, compress bool, body []byte) {
		contentType, encoding := fuzzContentTypes[int(ct)%len(fuzzContentTypes)], fuzzEncodings[int(enc)%len(fuzzEncodings)]
		if compress {
			body = encodeAs(zenc, encoding, body)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/logs", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Content-Encoding", encoding)
		rec := httptest.NewRecorder()
		got = nil
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			if got == nil {
				t.Fatal("200 without the consumer taking the request")
			}
			if len(got.Body) > limit {
				t.Fatalf("the consumer got %d bytes, over the limit of %d", len(got.Body), limit)
			}
			return
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("%s %s: answered %d %q", contentType, encoding, rec.Code, rec.Body)
		}
		if got != nil {
			t.Fatalf("%d after the consumer took the request", rec.Code)
		}
		st, err := errorStatus(rec.Header().Get("Content-Type"), rec.Body.Bytes())
		if err != nil || st.Code == 0 {
			t.Fatalf("%d answered with status %v (%v): want a google.rpc.Status with a code", rec.Code, st, err)
		}
	})
}
