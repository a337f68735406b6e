package opamp

import (
	"testing"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/redactpolicy"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// FuzzDecodeVendorMessage feeds the agent's decoder of the vendor policy what a
// hostile network could send. Whatever it accepts must be a valid policy that
// survives its own round trip and, merged with the customer's, never loosens it.
func FuzzDecodeVendorMessage(f *testing.F) {
	f.Add(redactpolicy.MessagePolicy, redactpolicy.EncodePolicy(redactpolicy.Policy{}))
	f.Add(redactpolicy.MessagePolicy, []byte(`{"mode":"off","detectors":{"ip":"off","email":"hash"},"attributes":{"allow":["http.*"],"deny":["user.*"]}}`))
	f.Add(redactpolicy.MessagePolicy, []byte(`{"custom":[{"name":"order","regexp":"ORD-\\d+","action":"hash"}],"body":{"max_bytes":10,"drop_patterns":["^x"]}}`))
	f.Add(redactpolicy.MessagePolicy, []byte(`{"url":{"off":true,"keep_params":[]},"sql":{"off":true},"hash_key":"x"}`))
	f.Add("other", []byte(`{}`))
	local := redactpolicy.Policy{Detectors: map[string]string{"card": redactpolicy.ActionHash}, Attributes: redactpolicy.Attributes{Deny: []string{"user.name"}}}
	base := redactpolicy.Resolve(local)
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		p, err := decodeVendorMessage(&protobufs.CustomMessage{Capability: redactpolicy.Capability, Type: typ, Data: data})
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted an invalid policy: %v", err)
		}
		if p.HashKey != "" {
			t.Fatal("a hash key came over the wire")
		}
		again, err := redactpolicy.DecodePolicy(redactpolicy.EncodePolicy(p))
		if err != nil || redactpolicy.VendorHash(again) != redactpolicy.VendorHash(p) {
			t.Fatalf("the accepted policy does not survive its round trip: %v", err)
		}
		e := redactpolicy.Merge(p, local)
		for d, a := range base.Detectors {
			if rank(e.Detectors[d]) < rank(a) {
				t.Fatalf("detector %s: %s merged to %s", d, a, e.Detectors[d])
			}
		}
		if !redactpolicy.MatchAny(e.Deny, "user.name") {
			t.Fatalf("the customer's deny-list was lost: %v", e.Deny)
		}
	})
}

func rank(action string) int {
	return map[string]int{redactpolicy.ActionOff: 0, redactpolicy.ActionHash: 1, redactpolicy.ActionMask: 2}[action]
}

// FuzzDecodeThresholdsMessage feeds the agent's decoder of thresholds what a
// hostile network could send: whatever it accepts is a valid set that survives
// its own round trip.
func FuzzDecodeThresholdsMessage(f *testing.F) {
	f.Add(thresholds.MessageSet, thresholds.Encode(thresholds.Set{Queues: []thresholds.QueueRule{{Source: "*", MaxLag: 1000}}}))
	f.Add(thresholds.MessageSet, []byte(`{"filesystems":[{"source":"filesystem/data","min_free_percent":10,"min_free_inodes_percent":5}]}`))
	f.Add("other", []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		s, err := thresholds.DecodeMessage(&protobufs.CustomMessage{Capability: thresholds.Capability, Type: typ, Data: data})
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid set: %v", err)
		}
		if thresholds.WireHash(thresholds.Encode(s)) != thresholds.Hash(s) {
			t.Fatal("the accepted set does not survive its round trip")
		}
	})
}
