package receiver

import (
	"errors"
	"mime"
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// HTTP serves OTLP/HTTP export requests at /v1/logs, /v1/traces and /v1/metrics.
type HTTP struct {
	// Consumer takes every well-formed request; when it is a consumer.Authorizer too,
	// it sees the credentials before the body is read.
	Consumer consumer.Consumer
	// MaxBytes bounds the request body before and after decompression; larger
	// requests get 413. Zero means DefaultMaxBytes.
	MaxBytes int64
	// Limiter, when set, bounds requests in progress (shared with the gRPC server).
	Limiter *Limiter
}

// Register adds the three signal paths to mux.
func (h *HTTP) Register(mux *http.ServeMux) {
	for _, sig := range otlp.Signals {
		mux.Handle(sig.Path(), h.handler(sig))
	}
}

func (h *HTTP) handler(sig otlp.Signal) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct != otlp.ContentTypeJSON {
			// Errors go back in protobuf unless the sender spoke JSON.
			if ct != otlp.ContentTypeProto {
				writeError(w, otlp.ContentTypeProto, Status{HTTP: http.StatusUnsupportedMediaType, Code: codes.Unimplemented,
					Message: "unsupported content type " + r.Header.Get("Content-Type") + " (want application/x-protobuf or application/json)"})
				return
			}
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, ct, Status{HTTP: http.StatusMethodNotAllowed, Code: codes.Unimplemented, Message: "OTLP export requests are POSTed"})
			return
		}
		ctx := r.Context()
		if a, ok := h.Consumer.(consumer.Authorizer); ok {
			var err error
			if ctx, err = a.Authorize(ctx, r.Header.Get); err != nil {
				writeError(w, ct, StatusOf(err))
				return
			}
		}
		if err := h.Limiter.Acquire(); err != nil {
			writeError(w, ct, StatusOf(err))
			return
		}
		defer h.Limiter.Release()
		limit := h.MaxBytes
		if limit <= 0 {
			limit = DefaultMaxBytes
		}
		body, err := otlp.Decompress(r.Header.Get("Content-Encoding"), http.MaxBytesReader(w, r.Body, limit), limit)
		switch {
		case errors.Is(err, otlp.ErrTooLarge):
			writeError(w, ct, StatusOf(consumer.TooLarge("request body exceeds the limit of "+strconv.FormatInt(limit, 10)+" bytes")))
			return
		case errors.Is(err, otlp.ErrMalformed):
			writeError(w, ct, StatusOf(consumer.Malformed("%v", err)))
			return
		case err != nil:
			// As gRPC answers an unknown grpc-encoding.
			writeError(w, ct, Status{HTTP: http.StatusUnsupportedMediaType, Code: codes.Unimplemented, Message: err.Error()})
			return
		}
		if ct == otlp.ContentTypeJSON {
			if body, err = otlp.JSONToProto(sig, body); err != nil {
				writeError(w, ct, StatusOf(consumer.Malformed("%v", err)))
				return
			}
		}
		if err := h.Consumer.Consume(ctx, consumer.Request{Signal: sig, Body: body, Header: r.Header.Get}); err != nil {
			writeError(w, ct, StatusOf(err))
			return
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(otlp.SuccessBody(ct))
	})
}

// writeError answers with s, its body in the sender's content type ct. The body's
// code is never OK (0): a sender reading only the body must see a failure.
func writeError(w http.ResponseWriter, ct string, s Status) {
	if s.Code == codes.OK {
		s.Code = codes.Unknown
	}
	s.SetHTTPHeaders(w.Header())
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(s.HTTP)
	_, _ = w.Write(otlp.Status{Code: int32(s.Code), Message: s.Message}.Marshal(ct))
}
