package main

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// answer is an HTTP response as a probe judges it.
type answer struct {
	code   int
	header http.Header
	body   []byte
	took   time.Duration
}

// call makes one request; headers come in name, value pairs.
func call(ctx context.Context, method, url, token string, body []byte, headers ...string) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{took: time.Since(start)}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return answer{code: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start)}, nil
}

// callJSON is call with a JSON body from v.
func callJSON(ctx context.Context, method, url, token string, v any) (answer, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return answer{}, err
	}
	return call(ctx, method, url, token, b, "Content-Type", "application/json")
}

func (a answer) String() string {
	return fmt.Sprintf("%d in %s: %s", a.code, a.took.Round(time.Millisecond), oneLine(string(a.body[:min(len(a.body), 120)])))
}

// logsRequest encodes an ExportLogsServiceRequest with one log record per body, each
// stamped now, from service.name "probe".
func logsRequest(bodies ...string) []byte {
	str := func(s string) []byte { // AnyValue{string_value}
		return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	}
	msg := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	kv := msg(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "service.name"), 2, str("probe"))
	resource := msg(nil, 1, kv)
	var scope []byte
	now := uint64(time.Now().UnixNano())
	for _, body := range bodies {
		rec := protowire.AppendTag(nil, 1, protowire.Fixed64Type)
		rec = protowire.AppendFixed64(rec, now)
		rec = protowire.AppendTag(rec, 2, protowire.VarintType)
		rec = protowire.AppendVarint(rec, 9) // INFO
		rec = msg(rec, 5, str(body))
		scope = msg(scope, 2, rec)
	}
	rl := msg(nil, 1, resource)
	rl = msg(rl, 2, scope)
	return msg(nil, 1, rl)
}

// nestedJSONLogs is an OTLP/JSON logs request whose one log body nests depth arrays.
func nestedJSONLogs(depth int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":`)
	b.WriteString(strings.Repeat(`{"arrayValue":{"values":[`, depth))
	b.WriteString(strings.Repeat(`]}}`, depth))
	b.WriteString(`}]}]}]}`)
	return b.Bytes()
}

// gzipBomb returns a valid gzip stream of at least size bytes that inflates to
// about a thousand times as much zeros, and that inflated size. Deflating a window of
// zeros gives the same bytes for every further MiB, so the stream is assembled from
// one such flushed block instead of compressing gigabytes.
func gzipBomb(size int) ([]byte, int64) {
	var buf bytes.Buffer
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zero := make([]byte, 1<<20)
	var blocks [][]byte
	for range 4 {
		zw.Write(zero)
		zw.Flush()
		blocks = append(blocks, bytes.Clone(buf.Bytes()))
		buf.Reset()
	}
	if !bytes.Equal(blocks[2], blocks[3]) {
		panic("gzip bomb: flushed blocks of zeros differ; build it another way")
	}
	out := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	mib := int64(0)
	for _, b := range blocks[:3] {
		out = append(out, b...)
		mib++
	}
	for len(out) < size {
		out = append(out, blocks[3]...)
		mib++
	}
	out = append(out, 0x03, 0x00) // an empty final block
	crc := uint32(0)
	for range mib {
		crc = crc32.Update(crc, crc32.IEEETable, zero)
	}
	out = binary.LittleEndian.AppendUint32(out, crc)
	out = binary.LittleEndian.AppendUint32(out, uint32(mib<<20))
	return out, mib << 20
}

// statusCode reads the code of a google.rpc.Status body, protobuf or JSON; ok is
// false when the body is neither.
func statusCode(a answer) (code int64, ok bool) {
	if strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		var s struct {
			Code *int64 `json:"code"`
		}
		if json.Unmarshal(a.body, &s) != nil {
			return 0, false
		}
		if s.Code == nil {
			return 0, true
		}
		return *s.Code, true
	}
	b := a.body
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, false
			}
			code = int64(int32(v))
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, false
		}
		b = b[m:]
	}
	return code, true
}
