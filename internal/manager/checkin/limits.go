package checkin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/server/types"

	"github.com/periscope-dev/periscope/internal/otlp"
)

// DefaultMaxMessageBytes bounds one OpAMP message, after decompression, when
// Settings leaves MaxMessageBytes unset. An agent's full state (description,
// health of every component, effective configuration) is a few kilobytes to a
// few hundred.
const DefaultMaxMessageBytes = 4 << 20

// opampContentType is the content type opamp-go reads a polling request's body
// for; it ignores the body of anything else.
const opampContentType = "application/x-protobuf"

// bounded wraps opamp-go's handler so that it never reads more than limit bytes
// of a polling request, before or after gzip: opamp-go reads and inflates the
// whole body into memory, so a 2 MB gzip bomb would otherwise cost gigabytes.
// The body is read here, bounded, and handed on already decoded; over the
// limit the answer is 413 before opamp-go sees anything.
func bounded(limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) || r.Header.Get("Content-Type") != opampContentType {
			// WebSocket messages are bounded on the connection (see
			// limitWebSocket); other requests' bodies are never read.
			next.ServeHTTP(w, r)
			return
		}
		switch enc := r.Header.Get("Content-Encoding"); enc {
		case "", "identity", "gzip":
		default:
			http.Error(w, fmt.Sprintf("unsupported content encoding %q (want gzip or none)", enc), http.StatusUnsupportedMediaType)
			return
		}
		if r.ContentLength > limit {
			tooLarge(w, limit)
			return
		}
		body, err := otlp.Decompress(r.Header.Get("Content-Encoding"), http.MaxBytesReader(w, r.Body, limit), limit)
		switch {
		case errors.Is(err, otlp.ErrTooLarge):
			tooLarge(w, limit)
			return
		case errors.Is(err, otlp.ErrMalformed):
			http.Error(w, "malformed request body: "+err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, "could not read the request body", http.StatusBadRequest)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		r2.Header = r.Header.Clone()
		r2.Header.Del("Content-Encoding")
		r2.Body = io.NopCloser(bytes.NewReader(body))
		r2.ContentLength = int64(len(body))
		next.ServeHTTP(w, r2)
	})
}

func tooLarge(w http.ResponseWriter, limit int64) {
	http.Error(w, fmt.Sprintf("OpAMP message over the limit of %d bytes", limit), http.StatusRequestEntityTooLarge)
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// limitWebSocket bounds every message read from tc, an opamp-go WebSocket
// connection, to limit bytes: beyond it the connection answers with close code
// 1009 (message too big) and reads no more of it. opamp-go neither sets a read
// limit nor exposes its *websocket.Conn, so the field is reached by reflection;
// it reports false if opamp-go's connection no longer has that shape, and the
// tests of this package fail then.
//
// The limit counts bytes on the wire, so the server does not negotiate
// permessage-deflate (see New): a compressed message could inflate past it.
func limitWebSocket(tc types.Connection, limit int64) bool {
	v := reflect.ValueOf(tc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return false
	}
	f := v.Elem().FieldByName("wsConn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*websocket.Conn]() || f.IsNil() {
		return false
	}
	(*websocket.Conn)(f.UnsafePointer()).SetReadLimit(limit)
	return true
}
