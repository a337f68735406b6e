package otlp

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// A schema lists the fields of one OTLP message that Periscope checks on the wire: the
// wire type each must have, the message it holds, and the length an id must have.
// Unknown fields pass, as they do for every protobuf decoder, so newer senders work.
//
// The checks are the ones OTLP decoders (pdata, the Collector) make and fail a whole
// request on; making them at the edge lets the agent refuse one bad request with 400
// instead of accepting it and later losing every request batched with it.
type schema struct {
	name   string
	fields map[protowire.Number]field
	// byNum is fields indexed by number, built once: a slice index is several
	// times cheaper than a map lookup on every field of every record.
	byNum []field
}

type field struct {
	known bool
	typ   protowire.Type
	// alt is a second accepted wire type: repeated scalars may come packed (bytes)
	// or one by one.
	alt    protowire.Type
	msg    *schema
	idLens []int // allowed lengths of an id field
}

func bytesField(msg *schema) field {
	return field{known: true, typ: protowire.BytesType, alt: -1, msg: msg}
}
func scalar(t protowire.Type) field { return field{known: true, typ: t, alt: -1} }
func repeated(t protowire.Type) field {
	return field{known: true, typ: t, alt: protowire.BytesType}
}
func id(lens ...int) field {
	return field{known: true, typ: protowire.BytesType, alt: -1, idLens: lens}
}

var (
	str     = bytesField(nil)
	varint  = scalar(protowire.VarintType)
	fixed64 = scalar(protowire.Fixed64Type)
	fixed32 = scalar(protowire.Fixed32Type)
	traceID = id(0, 16)
	spanID  = id(0, 8)
)

var (
	anyValue     = &schema{name: "AnyValue"}
	keyValue     = &schema{name: "KeyValue"}
	arrayValue   = &schema{name: "ArrayValue", fields: map[protowire.Number]field{1: bytesField(anyValue)}}
	keyValueList = &schema{name: "KeyValueList", fields: map[protowire.Number]field{1: bytesField(keyValue)}}
	scope        = &schema{name: "InstrumentationScope", fields: map[protowire.Number]field{
		1: str, 2: str, 3: bytesField(keyValue), 4: varint}}
	entityRef = &schema{name: "EntityRef", fields: map[protowire.Number]field{1: str, 2: str, 3: str, 4: str}}
	resource  = &schema{name: "Resource", fields: map[protowire.Number]field{
		1: bytesField(keyValue), 2: varint, 3: bytesField(entityRef)}}

	logRecord = &schema{name: "LogRecord", fields: map[protowire.Number]field{
		1: fixed64, 11: fixed64, 2: varint, 3: str, 5: bytesField(anyValue), 6: bytesField(keyValue), 7: varint,
		8: fixed32, 9: traceID, 10: spanID, 12: str}}

	spanEvent = &schema{name: "Span.Event", fields: map[protowire.Number]field{1: fixed64, 2: str, 3: bytesField(keyValue), 4: varint}}
	spanLink  = &schema{name: "Span.Link", fields: map[protowire.Number]field{
		1: traceID, 2: spanID, 3: str, 4: bytesField(keyValue), 5: varint, 6: fixed32}}
	spanStatus = &schema{name: "Status", fields: map[protowire.Number]field{2: str, 3: varint}}
	span       = &schema{name: "Span", fields: map[protowire.Number]field{
		1: traceID, 2: spanID, 3: str, 4: spanID, 16: fixed32, 5: str, 6: varint, 7: fixed64, 8: fixed64,
		9: bytesField(keyValue), 10: varint, 11: bytesField(spanEvent), 12: varint, 13: bytesField(spanLink),
		14: varint, 15: bytesField(spanStatus)}}

	exemplar = &schema{name: "Exemplar", fields: map[protowire.Number]field{
		7: bytesField(keyValue), 2: fixed64, 3: fixed64, 6: fixed64, 4: spanID, 5: traceID}}
	numberPoint = &schema{name: "NumberDataPoint", fields: map[protowire.Number]field{
		7: bytesField(keyValue), 2: fixed64, 3: fixed64, 4: fixed64, 6: fixed64, 5: bytesField(exemplar), 8: varint}}
	histogramPoint = &schema{name: "HistogramDataPoint", fields: map[protowire.Number]field{
		9: bytesField(keyValue), 2: fixed64, 3: fixed64, 4: fixed64, 5: fixed64, 6: repeated(protowire.Fixed64Type),
		7: repeated(protowire.Fixed64Type), 8: bytesField(exemplar), 10: varint, 11: fixed64, 12: fixed64}}
	buckets  = &schema{name: "Buckets", fields: map[protowire.Number]field{1: varint, 2: repeated(protowire.VarintType)}}
	expPoint = &schema{name: "ExponentialHistogramDataPoint", fields: map[protowire.Number]field{
		1: bytesField(keyValue), 2: fixed64, 3: fixed64, 4: fixed64, 5: fixed64, 6: varint, 7: fixed64,
		8: bytesField(buckets), 9: bytesField(buckets), 10: varint, 11: bytesField(exemplar), 12: fixed64,
		13: fixed64, 14: fixed64}}
	quantile     = &schema{name: "ValueAtQuantile", fields: map[protowire.Number]field{1: fixed64, 2: fixed64}}
	summaryPoint = &schema{name: "SummaryDataPoint", fields: map[protowire.Number]field{
		7: bytesField(keyValue), 2: fixed64, 3: fixed64, 4: fixed64, 5: fixed64, 6: bytesField(quantile), 8: varint}}
)

func init() {
	// AnyValue and KeyValue refer to each other through arrays and lists.
	anyValue.fields = map[protowire.Number]field{1: str, 2: varint, 3: varint, 4: fixed64,
		5: bytesField(arrayValue), 6: bytesField(keyValueList), 7: str, 8: varint}
	keyValue.fields = map[protowire.Number]field{1: str, 2: bytesField(anyValue), 3: varint}
	for _, sc := range []*schema{anyValue, keyValue, arrayValue, keyValueList, scope, entityRef, resource, logRecord, spanEvent,
		spanLink, spanStatus, span, exemplar, numberPoint, histogramPoint, buckets, expPoint, quantile, summaryPoint} {
		index(sc)
	}
	for _, sc := range metricData {
		index(sc)
	}
}

func index(sc *schema) {
	for num, f := range sc.fields {
		if int(num) >= len(sc.byNum) {
			sc.byNum = append(sc.byNum, make([]field, int(num)+1-len(sc.byNum))...)
		}
		sc.byNum[num] = f
	}
}

// The data point message of each Metric data field.
var metricData = map[protowire.Number]*schema{
	5:  {name: "Gauge", fields: map[protowire.Number]field{1: bytesField(numberPoint)}},
	7:  {name: "Sum", fields: map[protowire.Number]field{1: bytesField(numberPoint), 2: varint, 3: varint}},
	9:  {name: "Histogram", fields: map[protowire.Number]field{1: bytesField(histogramPoint), 2: varint}},
	10: {name: "ExponentialHistogram", fields: map[protowire.Number]field{1: bytesField(expPoint), 2: varint}},
	11: {name: "Summary", fields: map[protowire.Number]field{1: bytesField(summaryPoint)}},
}

// maxDepth bounds nesting of arrays and lists in attribute values, so a hostile request
// cannot exhaust the stack.
const maxDepth = 32

// validate checks msg against s.
func validate(msg []byte, s *schema, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: %s nested deeper than %d", ErrMalformed, s.name, maxDepth)
	}
	for len(msg) > 0 {
		num, typ, v, n, err := nextField(msg)
		if err != nil {
			return fieldError(s.name, err)
		}
		msg = msg[n:]
		if int(num) < len(s.byNum) && s.byNum[num].known {
			f := &s.byNum[num]
			if typ != f.typ && typ != f.alt {
				return fmt.Errorf("%w: %s field %d has wire type %d, want %d", ErrMalformed, s.name, num, typ, f.typ)
			}
			if typ == protowire.BytesType && (f.msg != nil || f.idLens != nil) {
				if f.idLens != nil && !okLen(len(v), f.idLens) {
					return fmt.Errorf("%w: %s field %d is an id of %d bytes, want %v", ErrMalformed, s.name, num, len(v), f.idLens)
				}
				if f.msg != nil {
					if err := validate(v, f.msg, depth+1); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

func okLen(n int, lens []int) bool {
	for _, l := range lens {
		if n == l {
			return true
		}
	}
	return false
}
