package queues

import "testing"

// FuzzParseManagementQueue: whatever the management API answers, the source
// either reads two non-negative counts or refuses the answer; it never panics.
func FuzzParseManagementQueue(f *testing.F) {
	for _, s := range []string{`{"messages_ready":290,"messages_unacknowledged":10}`, `null`, `{"messages_ready":-1}`,
		`{"messages_unacknowledged":1e30}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := parseManagementQueue(body)
		if err == nil && (q.Ready < 0 || q.Unacked < 0) {
			t.Fatalf("accepted negative counts %+v", q)
		}
	})
}
