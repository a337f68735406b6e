package telemetry

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// The deployment-context resource attributes of PRODUCT.md. The agent sets them from
// what it knows; the manager overwrites them from the deployment's token and records.
const (
	AttrDeploymentID  = "periscope.deployment.id"
	AttrCustomer      = "periscope.customer"
	AttrCloudProvider = "cloud.provider"
	AttrCloudRegion   = "cloud.region"
	AttrCloudPlatform = "cloud.platform"
	AttrRelease       = "periscope.release.version"
	AttrStack         = "periscope.stack.name"
)

// ContextKeys lists every deployment-context attribute, in the order Tag writes them.
var ContextKeys = [...]string{
	AttrDeploymentID, AttrCustomer, AttrCloudProvider, AttrCloudRegion,
	AttrCloudPlatform, AttrRelease, AttrStack,
}

// Context is the deployment context a Tagger writes onto every resource.
type Context struct {
	DeploymentID string `json:"deployment_id"`
	Customer     string `json:"customer,omitempty"`
	Cloud        string `json:"cloud,omitempty"`
	Region       string `json:"region,omitempty"`
	Platform     string `json:"platform,omitempty"`
	Release      string `json:"release,omitempty"`
	Stack        string `json:"stack,omitempty"`
}

// values returns the context's values in ContextKeys order.
func (c Context) values() [len(ContextKeys)]string {
	return [...]string{c.DeploymentID, c.Customer, c.Cloud, c.Region, c.Platform, c.Release, c.Stack}
}

// Attributes returns the context as key/value pairs in ContextKeys order, skipping
// empty values.
func (c Context) Attributes() [][2]string {
	var out [][2]string
	for i, v := range c.values() {
		if v != "" {
			out = append(out, [2]string{ContextKeys[i], v})
		}
	}
	return out
}

// ErrMalformed is wrapped by every error Tag returns for a request that is not a
// well-formed OTLP export request.
var ErrMalformed = errors.New("malformed OTLP request")

// errGroup refuses the deprecated protobuf group encoding, which OTLP never uses and
// OTLP decoders reject.
var errGroup = fmt.Errorf("%w: protobuf groups are not used by OTLP", ErrMalformed)

// Tagger rewrites encoded OTLP export requests so that every resource carries exactly
// one deployment context: any deployment-context attribute the sender set is removed
// and the Tagger's own values are written instead, so no sender can claim to be another
// deployment. Every other resource attribute (service.name, k8s.pod.name, …) is kept.
//
// Tagger works on the protobuf wire format directly rather than decoding into pdata:
// it copies records through untouched, which keeps tagging a small fraction of the cost
// of receiving a request. A Tagger is immutable and safe for concurrent use.
type Tagger struct {
	// kvs holds the pre-encoded attribute fields (Resource.attributes) to append.
	kvs []byte
	// strip lists the keys removed from what the sender wrote.
	strip []string
}

// NewTagger returns a Tagger that writes c. The deployment id, customer and stack are
// always the Tagger's: a sender's values for them are removed even when c has none.
// Release, cloud, region and platform describe the sender itself, so when c leaves
// one empty the sender's own value is kept rather than lost.
func NewTagger(c Context) *Tagger {
	t := &Tagger{}
	values := c.values()
	for i, key := range ContextKeys {
		strict := key == AttrDeploymentID || key == AttrCustomer || key == AttrStack
		if values[i] != "" || strict {
			t.strip = append(t.strip, key)
		}
		if values[i] != "" {
			t.kvs = protowire.AppendTag(t.kvs, 1, protowire.BytesType) // Resource.attributes
			t.kvs = protowire.AppendBytes(t.kvs, encodeKeyValue(key, values[i]))
		}
	}
	return t
}

// encodeKeyValue encodes a KeyValue with a string AnyValue.
func encodeKeyValue(key, value string) []byte {
	var any []byte
	any = protowire.AppendTag(any, 1, protowire.BytesType) // AnyValue.string_value
	any = protowire.AppendString(any, value)
	var kv []byte
	kv = protowire.AppendTag(kv, 1, protowire.BytesType) // KeyValue.key
	kv = protowire.AppendString(kv, key)
	kv = protowire.AppendTag(kv, 2, protowire.BytesType) // KeyValue.value
	kv = protowire.AppendBytes(kv, any)
	return kv
}

// Tag appends to dst the request req (the protobuf encoding of the export request for
// sig) with every resource tagged, and returns it with the number of log records,
// spans or metric data points the request holds. It checks the request's structure
// down to each record and returns an error wrapping ErrMalformed when it is not an
// export request.
func (t *Tagger) Tag(sig Signal, dst, req []byte) ([]byte, int, error) {
	if sig != Traces && sig != Metrics && sig != Logs {
		return dst, 0, fmt.Errorf("tag: %v", sig)
	}
	records := 0
	for len(req) > 0 {
		num, typ, n := protowire.ConsumeTag(req)
		if n < 0 {
			return dst, 0, malformed("request", n)
		}
		req = req[n:]
		if num == 1 && typ != protowire.BytesType {
			return dst, 0, fmt.Errorf("%w: resource group has wire type %d", ErrMalformed, typ)
		}
		if num != 1 {
			// Not a resource group: keep it verbatim so newer fields survive.
			m := protowire.ConsumeFieldValue(num, typ, req)
			if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
				return dst, 0, errGroup
			}
			if m < 0 {
				return dst, 0, malformed("request field", m)
			}
			dst = protowire.AppendTag(dst, num, typ)
			dst = append(dst, req[:m]...)
			req = req[m:]
			continue
		}
		group, m := protowire.ConsumeBytes(req)
		if m < 0 {
			return dst, 0, malformed("resource group", m)
		}
		req = req[m:]
		var (
			count int
			err   error
		)
		dst, count, err = t.tagGroup(sig, dst, group)
		if err != nil {
			return dst, 0, err
		}
		records += count
	}
	return dst, records, nil
}

// tagGroup appends one rewritten ResourceLogs/ResourceSpans/ResourceMetrics field.
func (t *Tagger) tagGroup(sig Signal, dst, group []byte) ([]byte, int, error) {
	// First pass: validate, count records and find the resource.
	var (
		res      []byte
		restSize int // bytes of every field but the resource, copied verbatim
		records  int
	)
	for b := group; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return dst, 0, malformed("resource group", n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
			return dst, 0, errGroup
		}
		if m < 0 {
			return dst, 0, malformed("resource group field", m)
		}
		if (num == 1 || num == 2 || num == 3) && typ != protowire.BytesType {
			return dst, 0, fmt.Errorf("%w: resource group field %d has wire type %d", ErrMalformed, num, typ)
		}
		switch num {
		case 1: // resource
			v, _ := protowire.ConsumeBytes(b[n:])
			if err := validate(v, resource, 0); err != nil {
				return dst, 0, err
			}
			if res == nil {
				res = v
			} else {
				// A repeated embedded message merges: its encodings concatenate.
				res = append(append([]byte(nil), res...), v...)
			}
		case 2: // scope_logs / scope_spans / scope_metrics
			v, _ := protowire.ConsumeBytes(b[n:])
			c, err := countScope(sig, v)
			if err != nil {
				return dst, 0, err
			}
			records += c
			restSize += n + m
		default:
			restSize += n + m
		}
		b = b[n+m:]
	}

	// The new resource: kept attributes and other fields, then the context.
	resSize, err := t.resourceSize(res)
	if err != nil {
		return dst, 0, err
	}
	groupSize := protowire.SizeTag(1) + protowire.SizeBytes(resSize) + restSize
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(groupSize))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(resSize))
	dst = t.appendResource(dst, res)
	for b := group; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if !(num == 1 && typ == protowire.BytesType) {
			dst = append(dst, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return dst, records, nil
}

// resourceSize returns the encoded size of the rewritten resource.
func (t *Tagger) resourceSize(res []byte) (int, error) {
	size := len(t.kvs)
	for b := res; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, malformed("resource", n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
			return 0, errGroup
		}
		if m < 0 {
			return 0, malformed("resource field", m)
		}
		if num == 1 && typ == protowire.BytesType {
			kv, _ := protowire.ConsumeBytes(b[n:])
			key, err := keyOf(kv)
			if err != nil {
				return 0, err
			}
			if t.strips(key) {
				b = b[n+m:]
				continue
			}
		}
		size += n + m
		b = b[n+m:]
	}
	return size, nil
}

// appendResource appends the rewritten resource; res was checked by resourceSize.
func (t *Tagger) appendResource(dst, res []byte) []byte {
	for b := res; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if num == 1 && typ == protowire.BytesType {
			kv, _ := protowire.ConsumeBytes(b[n:])
			if key, _ := keyOf(kv); t.strips(key) {
				b = b[n+m:]
				continue
			}
		}
		dst = append(dst, b[:n+m]...)
		b = b[n+m:]
	}
	return append(dst, t.kvs...)
}

// keyOf returns the key of an encoded KeyValue without copying it.
func keyOf(kv []byte) ([]byte, error) {
	var key []byte
	for len(kv) > 0 {
		num, typ, n := protowire.ConsumeTag(kv)
		if n < 0 {
			return nil, malformed("attribute", n)
		}
		m := protowire.ConsumeFieldValue(num, typ, kv[n:])
		if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
			return nil, errGroup
		}
		if m < 0 {
			return nil, malformed("attribute field", m)
		}
		if num == 1 && typ == protowire.BytesType {
			key, _ = protowire.ConsumeBytes(kv[n:])
		}
		kv = kv[n+m:]
	}
	return key, nil
}

func (t *Tagger) strips(key []byte) bool {
	// The compiler turns string(key) in a comparison into a non-allocating compare.
	return slices.ContainsFunc(t.strip, func(k string) bool { return k == string(key) })
}

// countScope counts the records of one ScopeLogs/ScopeSpans/ScopeMetrics and checks
// the scope and each record as an OTLP decoder would.
func countScope(sig Signal, sc []byte) (int, error) {
	records := 0
	err := eachField(sc, "scope", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if (num == 1 || num == 2 || num == 3) && typ != protowire.BytesType {
			return fmt.Errorf("%w: scope field %d has wire type %d", ErrMalformed, num, typ)
		}
		switch num {
		case 1:
			return validate(v, scope, 0)
		case 2: // log_records / spans / metrics
			switch sig {
			case Metrics:
				c, err := countMetric(v)
				records += c
				return err
			case Traces:
				records++
				return validate(v, span, 0)
			default:
				records++
				return validate(v, logRecord, 0)
			}
		}
		return nil
	})
	return records, err
}

// countMetric counts and checks the data points of one Metric.
func countMetric(metric []byte) (int, error) {
	points := 0
	err := eachField(metric, "metric", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if data, ok := metricData[num]; ok {
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: metric data has wire type %d", ErrMalformed, typ)
			}
			if err := validate(v, data, 0); err != nil {
				return err
			}
			return eachField(v, "metric data", func(num protowire.Number, typ protowire.Type, _ []byte) error {
				if num == 1 { // data_points, checked above
					points++
				}
				return nil
			})
		}
		switch num {
		case 1, 2, 3: // name, description, unit
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: metric field %d has wire type %d", ErrMalformed, num, typ)
			}
		case 12: // metadata
			if typ != protowire.BytesType {
				return fmt.Errorf("%w: metric metadata has wire type %d", ErrMalformed, typ)
			}
			return validate(v, keyValue, 0)
		}
		return nil
	})
	return points, err
}

// eachField walks the fields of an encoded message, calling fn (when not nil) with the
// value of each length-delimited field, and fails on anything that does not parse.
func eachField(msg []byte, what string, fn func(protowire.Number, protowire.Type, []byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return malformed(what, n)
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
			return errGroup
		}
		if m < 0 {
			return malformed(what+" field", m)
		}
		if fn != nil {
			var v []byte
			if typ == protowire.BytesType {
				v, _ = protowire.ConsumeBytes(msg[n:])
			}
			if err := fn(num, typ, v); err != nil {
				return err
			}
		}
		msg = msg[n+m:]
	}
	return nil
}

func malformed(what string, code int) error {
	return fmt.Errorf("%w: %s: %v", ErrMalformed, what, protowire.ParseError(code))
}
