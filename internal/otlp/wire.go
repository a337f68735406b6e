package otlp

import (
	"errors"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Why the wire is read here rather than with protowire's Consume functions: checking a
// request visits every field of every record, and protowire reads each length twice
// (once to skip the field, once to take its value) through calls the compiler does not
// inline. nextField reads a field once, with the one-byte tags and lengths that make up
// almost all of OTLP decoded inline.

var (
	errTruncated   = errors.New("unexpected end of data")
	errFieldNumber = errors.New("invalid field number")
	errOverflow    = errors.New("variable length integer overflow")
	errReserved    = errors.New("cannot parse reserved wire type")
)

// nextField reads the field at the start of b (which must not be empty): its number,
// its wire type, its value when it is length-delimited, and the length of the whole
// field. It fails as protowire.ConsumeField does, and refuses groups with errGroup.
func nextField(b []byte) (num protowire.Number, typ protowire.Type, v []byte, n int, err error) {
	tag := uint64(b[0])
	n = 1
	if tag >= 0x80 {
		if tag, n, err = readVarint(b); err != nil {
			return 0, 0, nil, 0, err
		}
	}
	if tag>>3 == 0 || tag>>3 > math.MaxInt32 {
		return 0, 0, nil, 0, errFieldNumber
	}
	num, typ = protowire.Number(tag>>3), protowire.Type(tag&7)
	switch typ {
	case protowire.VarintType:
		_, k, err := readVarint(b[n:])
		if err != nil {
			return 0, 0, nil, 0, err
		}
		return num, typ, nil, n + k, nil
	case protowire.Fixed64Type:
		if n += 8; n > len(b) {
			return 0, 0, nil, 0, errTruncated
		}
		return num, typ, nil, n, nil
	case protowire.Fixed32Type:
		if n += 4; n > len(b) {
			return 0, 0, nil, 0, errTruncated
		}
		return num, typ, nil, n, nil
	case protowire.BytesType:
		if n >= len(b) {
			return 0, 0, nil, 0, errTruncated
		}
		size := uint64(b[n])
		if size < 0x80 {
			n++
		} else {
			var k int
			if size, k, err = readVarint(b[n:]); err != nil {
				return 0, 0, nil, 0, err
			}
			n += k
		}
		if size > uint64(len(b)-n) {
			return 0, 0, nil, 0, errTruncated
		}
		v = b[n : n+int(size)]
		return num, typ, v, n + int(size), nil
	case protowire.StartGroupType, protowire.EndGroupType:
		return 0, 0, nil, 0, errGroup
	}
	return 0, 0, nil, 0, errReserved
}

// readVarint reads a varint at the start of b and reports its length.
func readVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		if i >= len(b) {
			return 0, 0, errTruncated
		}
		c := b[i]
		if i == 9 && c > 1 { // the tenth byte holds the 64th bit only
			return 0, 0, errOverflow
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errOverflow
}

// NextField reads the field at the start of b (which must not be empty) as the
// request checks do: its number, wire type, value when length-delimited, and the
// length of the whole field. Stages that rewrite requests on the wire (the agent's
// redaction) use it so they read fields exactly as validation did.
func NextField(b []byte) (num protowire.Number, typ protowire.Type, v []byte, n int, err error) {
	return nextField(b)
}
