package otlp

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
		num, typ, group, n, err := nextField(req)
		if err != nil {
			return dst, 0, fieldError("request", err)
		}
		if num == 1 && typ != protowire.BytesType {
			return dst, 0, fmt.Errorf("%w: resource group has wire type %d", ErrMalformed, typ)
		}
		if num != 1 {
			// Not a resource group: keep it verbatim so newer fields survive.
			dst = append(dst, req[:n]...)
			req = req[n:]
			continue
		}
		req = req[n:]
		var count int
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
		// Scopes in the deprecated field 1000 (instrumentation_library_*) count only
		// when the group has none in field 2: that is how OTLP decoders read them.
		scopes, oldRecords int
	)
	for b := group; len(b) > 0; {
		num, typ, v, n, err := nextField(b)
		if err != nil {
			return dst, 0, fieldError("resource group", err)
		}
		if (num == 1 || num == 2 || num == 3 || num == 1000) && typ != protowire.BytesType {
			return dst, 0, fmt.Errorf("%w: resource group field %d has wire type %d", ErrMalformed, num, typ)
		}
		switch num {
		case 1: // resource
			if err := validate(v, resource, 0); err != nil {
				return dst, 0, err
			}
			if res == nil {
				res = v
			} else {
				// A repeated embedded message merges: its encodings concatenate.
				res = append(append([]byte(nil), res...), v...)
			}
		case 2, 1000: // scope_logs / scope_spans / scope_metrics, or the deprecated form
			c, err := countScope(sig, v)
			if err != nil {
				return dst, 0, err
			}
			if num == 2 {
				scopes++
				records += c
			} else {
				oldRecords += c
			}
			restSize += n
		default:
			restSize += n
		}
		b = b[n:]
	}
	if scopes == 0 {
		records += oldRecords
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
		num, typ, _, n, _ := nextField(b) // checked above
		if !(num == 1 && typ == protowire.BytesType) {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst, records, nil
}

// resourceSize returns the encoded size of the rewritten resource.
func (t *Tagger) resourceSize(res []byte) (int, error) {
	size := len(t.kvs)
	for b := res; len(b) > 0; {
		num, typ, kv, n, err := nextField(b)
		if err != nil {
			return 0, fieldError("resource", err)
		}
		if num == 1 && typ == protowire.BytesType {
			key, err := keyOf(kv)
			if err != nil {
				return 0, err
			}
			if t.strips(key) {
				b = b[n:]
				continue
			}
		}
		size += n
		b = b[n:]
	}
	return size, nil
}

// appendResource appends the rewritten resource; res was checked by resourceSize.
func (t *Tagger) appendResource(dst, res []byte) []byte {
	for b := res; len(b) > 0; {
		num, typ, kv, n, _ := nextField(b) // checked by resourceSize
		if num == 1 && typ == protowire.BytesType {
			if key, _ := keyOf(kv); t.strips(key) {
				b = b[n:]
				continue
			}
		}
		dst = append(dst, b[:n]...)
		b = b[n:]
	}
	return append(dst, t.kvs...)
}

// keyOf returns the key of an encoded KeyValue without copying it.
func keyOf(kv []byte) ([]byte, error) {
	var key []byte
	for len(kv) > 0 {
		num, typ, v, n, err := nextField(kv)
		if err != nil {
			return nil, fieldError("attribute", err)
		}
		if num == 1 && typ == protowire.BytesType {
			key = v
		}
		kv = kv[n:]
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
		num, typ, v, n, err := nextField(msg)
		if err != nil {
			return fieldError(what, err)
		}
		if fn != nil {
			if err := fn(num, typ, v); err != nil {
				return err
			}
		}
		msg = msg[n:]
	}
	return nil
}

// fieldError is the error for a field of what that does not parse.
func fieldError(what string, err error) error {
	if err == errGroup {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
}
