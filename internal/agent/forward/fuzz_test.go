package forward

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/retry"
)

// answer is a transport that hands back one canned response, as any manager (or
// anything claiming to be one) might answer.
type answer struct {
	code int
	h    http.Header
	body []byte
}

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: a.code, Header: a.h, Body: io.NopCloser(bytes.NewReader(a.body)), Request: r}, nil
}

// FuzzManagerAnswer feeds the forwarder arbitrary answers: status, the 409's
// delivered header, Retry-After, content type and an OTLP status body. It must not
// panic; a 2xx is success; a 409 carries the delivered mark when the header is a
// number; a wait asked for is never negative; and the error stays a readable size.
func FuzzManagerAnswer(f *testing.F) {
	status := []byte{0x08, 0x03, 0x12, 0x05, 'o', 'o', 'p', 's', '!'} // google.rpc.Status{code: 3, message: "oops!"}
	f.Add(200, "", "", otlp.ContentTypeProto, []byte{})
	f.Add(409, "17", "", otlp.ContentTypeProto, status)
	f.Add(409, "-1", "", "text/plain", []byte("conflict"))
	f.Add(409, "18446744073709551616", "", "", []byte{})
	f.Add(429, "", "120", otlp.ContentTypeJSON, []byte(`{"code":8,"message":"slow down"}`))
	f.Add(503, "", "Wed, 21 Oct 2015 07:28:00 GMT", otlp.ContentTypeJSON, []byte(`{"message":`))
	f.Add(413, "", "-5", otlp.ContentTypeProto, []byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(302, "", "", "", []byte{})
	f.Fuzz(func(t *testing.T, code int, delivered, retryAfter, ct string, body []byte) {
		code = 100 + abs(code)%900
		h := http.Header{}
		h.Set(otlp.DeliveredHeader, delivered)
		h.Set("Retry-After", retryAfter)
		h.Set("Content-Type", ct)
		fw, err := New(otlp.Logs, nil, Settings{Endpoint: "http://manager.invalid", Token: "pdt_x",
			Client: &http.Client{Transport: answer{code, h, body}}})
		if err != nil {
			t.Fatal(err)
		}
		err = fw.send(context.Background(), "q:1-2")
		if code/100 == 2 {
			if err != nil {
				t.Fatalf("%d answered with %v, want success", code, err)
			}
			return
		}
		if err == nil {
			t.Fatalf("%d taken for success", code)
		}
		if len(err.Error()) > 4096+512 {
			t.Errorf("error of %d bytes from a %d-byte body", len(err.Error()), len(body))
		}
		if d, ok := retry.RetryAfter(err); ok && d < 0 {
			t.Errorf("Retry-After %q gave a negative wait %v", retryAfter, d)
		}
		var se *statusError
		if code == http.StatusConflict {
			if !errors.As(err, &se) || retry.IsPermanent(err) {
				t.Fatalf("409 gave %v, want a statusError to resume from", err)
			}
			if n, perr := strconv.ParseUint(delivered, 10, 64); perr == nil && se.delivered != n {
				t.Errorf("delivered = %d from header %q", se.delivered, delivered)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -(n + 1)
	}
	return n
}
