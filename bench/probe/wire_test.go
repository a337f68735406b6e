package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// TestGzipBombInflates: the bomb is a valid gzip stream of the size it claims, so a
// 413 from the manager is its limit at work and not a refusal of a broken stream.
func TestGzipBombInflates(t *testing.T) {
	bomb, inflated := gzipBomb(16 << 10)
	zr, err := gzip.NewReader(bytes.NewReader(bomb))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil || n != inflated {
		t.Fatalf("inflated %d bytes (%v), want %d", n, err, inflated)
	}
	if len(bomb) < 16<<10 || inflated < 500*int64(len(bomb)) {
		t.Fatalf("%d bytes inflating to %d: not a bomb", len(bomb), inflated)
	}
}

func TestStatusCode(t *testing.T) {
	a := answer{header: map[string][]string{"Content-Type": {"application/x-protobuf"}}, body: []byte{0x08, 0x08, 0x12, 0x01, 'x'}}
	if code, ok := statusCode(a); !ok || code != 8 {
		t.Fatalf("statusCode = %d, %v; want 8", code, ok)
	}
}
