package suggest

import "testing"

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"heartbeat_intervall", "heartbeat_interval", 1}, {"log_levle", "log_level", 2},
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// A typo of a key is matched to it; a name unlike every key gets no guess.
func TestNearest(t *testing.T) {
	keys := []string{"listen", "data_dir", "heartbeat_interval", "stale_after", "log_level"}
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{
		{"heartbeat_intervall", "heartbeat_interval", true},
		{"datadir", "data_dir", true},
		{"loglevel", "log_level", true},
		{"listn", "listen", true},
		{"exporters_typo_nothing_like", "", false},
		{"x", "", false},
	} {
		got, ok := Nearest(tc.name, keys)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("Nearest(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzDistance(f *testing.F) {
	f.Add("heartbeat_intervall", "heartbeat_interval")
	f.Fuzz(func(t *testing.T, a, b string) {
		d := Distance(a, b)
		if d < 0 || d != Distance(b, a) || (a == b && d != 0) {
			t.Fatalf("Distance(%q, %q) = %d, asymmetric or wrong", a, b, d)
		}
	})
}
