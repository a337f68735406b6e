package forward

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Entry is one tagged export request as the agent queues it: compressed once, when
// received, so the queue writes and reads a fraction of the bytes and the forwarder
// sends it without compressing it again.
type Entry struct {
	// Records counts the log records, spans or data points in the request.
	Records int
	// RawBytes is the size of the uncompressed request.
	RawBytes int
	// Encoding is "s2", "gzip", "zstd" or "none".
	Encoding string
	// Payload is the request in Encoding.
	Payload []byte
}

// encodings are indexed by the byte stored in each entry; append only.
var encodings = [...]string{"none", "gzip", "zstd", "s2"}

// maxRawBytes bounds the size an entry may claim, so a damaged header cannot make
// Plain allocate without limit.
const maxRawBytes = 1 << 30

// Encoder compresses entries. It is not safe for concurrent use; pool them.
type Encoder struct {
	encoding string
	gz       *gzip.Writer
	zs       *zstd.Encoder
}

// NewEncoder returns an encoder for "s2", "gzip", "zstd" or "none". s2 costs a small
// fraction of gzip's CPU and still shrinks what the queue writes several times over;
// the forwarder then compresses whole requests at once for the wire.
func NewEncoder(encoding string) (*Encoder, error) {
	e := &Encoder{encoding: encoding}
	switch encoding {
	case "gzip":
		e.gz, _ = gzip.NewWriterLevel(nil, gzip.BestSpeed)
	case "zstd":
		var err error
		if e.zs, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
	case "none", "s2":
	default:
		return nil, fmt.Errorf("compression %q (want gzip, zstd, s2 or none)", encoding)
	}
	return e, nil
}

// Append appends the framed entry for req (records in it) to dst.
func (e *Encoder) Append(dst []byte, records int, req []byte) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(records))
	dst = binary.AppendUvarint(dst, uint64(len(req)))
	for i, name := range encodings {
		if name == e.encoding {
			dst = append(dst, byte(i))
		}
	}
	if e.encoding == "s2" {
		n, max := len(dst), s2.MaxEncodedLen(len(req))
		dst = slices.Grow(dst, max)
		enc := s2.Encode(dst[n:n+max], req) // written in place, after the header
		return dst[:n+len(enc)], nil
	}
	buf := bytes.NewBuffer(dst)
	var err error
	switch {
	case e.gz != nil:
		e.gz.Reset(buf)
		if _, err = e.gz.Write(req); err == nil {
			err = e.gz.Close()
		}
	case e.zs != nil:
		e.zs.Reset(buf)
		if _, err = e.zs.Write(req); err == nil {
			err = e.zs.Close()
		}
	default:
		buf.Write(req)
	}
	return buf.Bytes(), err
}

// DecodeEntry splits a queued entry written by Encoder.Append. Payload aliases entry.
func DecodeEntry(entry []byte) (Entry, error) {
	bad := errors.New("bad queue entry header")
	records, k := binary.Uvarint(entry)
	if k <= 0 {
		return Entry{}, bad
	}
	entry = entry[k:]
	raw, k := binary.Uvarint(entry)
	if k <= 0 || len(entry) < k+1 || int(entry[k]) >= len(encodings) || raw > maxRawBytes {
		return Entry{}, bad
	}
	return Entry{Records: int(records), RawBytes: int(raw), Encoding: encodings[entry[k]], Payload: entry[k+1:]}, nil
}

// Plain returns the uncompressed request, decoded into buf's storage when it has room
// for it: the forwarder reuses one buffer, because allocating one per entry costs
// several times more than decoding it. An entry stored uncompressed returns its
// payload itself.
func (e Entry) Plain(buf []byte) ([]byte, error) {
	var r io.Reader
	switch e.Encoding {
	case "none":
		return e.Payload, nil
	case "s2":
		if cap(buf) < e.RawBytes {
			buf = make([]byte, e.RawBytes)
		}
		out, err := s2.Decode(buf[:cap(buf)], e.Payload)
		if err != nil {
			return nil, fmt.Errorf("queue entry: s2: %w", err)
		}
		return out, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(e.Payload))
		if err != nil {
			return nil, fmt.Errorf("queue entry: %w", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(e.Payload), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("queue entry: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	out := bytes.NewBuffer(slices.Grow(buf[:0], e.RawBytes))
	if _, err := io.Copy(out, r); err != nil {
		return nil, fmt.Errorf("queue entry: %w", err)
	}
	return out.Bytes(), nil
}
