package otlp

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// nextField must accept exactly the fields protowire accepts (groups aside, which it
// refuses) and measure them the same, or the schema check would differ from the
// decoders it stands in for.
func TestNextFieldAgreesWithProtowire(t *testing.T) {
	cases := [][]byte{
		{0x08, 0x96, 0x01}, // varint field 1
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},       // largest varint
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},       // overflows
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // 11 bytes
		{0x08, 0x80},                               // truncated varint
		{0x0a, 0x03, 'a', 'b'},                     // length past the end
		{0x0a, 0x80, 0x01},                         // two-byte length past the end
		{0x09, 1, 2, 3, 4, 5, 6},                   // truncated fixed64
		{0x0d, 1, 2, 3, 4},                         // fixed32
		{0x00, 0x01},                               // field number 0
		{0x0e, 0x01},                               // wire type 6
		{0x0f, 0x01},                               // wire type 7
		{0xfa, 0xff, 0xff, 0xff, 0x7f, 0x00},       // field number 2^32-1, past MaxInt32
		{0x82, 0x80, 0x80, 0x80, 0x80, 0x02, 0x00}, // field number past MaxInt32
		{0x8a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, // truncated tag
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, 1+rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.Uint32())
			if rng.IntN(3) == 0 {
				b[i] |= 0x80 // long varints are rare in random bytes
			}
		}
		cases = append(cases, b)
	}
	for _, b := range cases {
		num, typ, v, n, err := nextField(b)
		wantNum, wantTyp, wantN := protowire.ConsumeField(b)
		if wantN >= 0 && (wantTyp == protowire.StartGroupType || wantTyp == protowire.EndGroupType) {
			if err != errGroup {
				t.Errorf("% x: a group, got err %v", b, err)
			}
			continue
		}
		if (err == nil) != (wantN >= 0) {
			t.Errorf("% x: err %v, protowire length %d", b, err, wantN)
			continue
		}
		if err != nil {
			continue
		}
		if num != wantNum || typ != wantTyp || n != wantN {
			t.Errorf("% x: field %d type %d length %d, protowire says %d %d %d", b, num, typ, n, wantNum, wantTyp, wantN)
		}
		if typ == protowire.BytesType {
			_, _, tagLen := protowire.ConsumeTag(b)
			want, _ := protowire.ConsumeBytes(b[tagLen:])
			if string(v) != string(want) {
				t.Errorf("% x: value % x, want % x", b, v, want)
			}
		}
	}
}
