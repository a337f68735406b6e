package config

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseByteSize: a size either parses to exactly the number times its unit, or is
// refused; it never wraps around to another size.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"512MiB", "2GiB", "100MB", "64KiB", "0", "12 B", "-1", "1.5GiB", "8EiB", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseByteSize(s)
		if err != nil {
			if !strings.Contains(err.Error(), "size") {
				t.Errorf("ParseByteSize(%q) error %q does not say what was wanted", s, err)
			}
			return
		}
		v := strings.TrimSpace(s)
		num := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
		n, ok := new(big.Int).SetString(num, 10)
		if !ok {
			t.Fatalf("ParseByteSize(%q) = %d, but %q is no number", s, got, num)
		}
		units := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
		want := n.Mul(n, big.NewInt(units[strings.TrimSpace(v[len(num):])]))
		if want.Cmp(big.NewInt(int64(got))) != 0 {
			t.Fatalf("ParseByteSize(%q) = %d, want %s", s, got, want)
		}
	})
}

// FuzzLoad feeds arbitrary YAML and one arbitrary PERISCOPE_ variable to both
// configurations: Load and Validate may refuse them, but must not panic, and an
// error about the variable names it.
func FuzzLoad(f *testing.F) {
	f.Add("listen: 0.0.0.0:9000\nheartbeat_interval: 10s\n", "STALE_AFTER", "45s")
	f.Add("queue:\n  max_bytes: 2GiB\n  on_full: drop_oldest\n", "QUEUE_MAX_AGE", "1h")
	f.Add("manager: http://127.0.0.1:7070\ntoken: pdt_x\nmax_procs: -1\n", "MAX_PROCS", "x")
	f.Add("exporters:\n  - name: a\n    type: otlphttp\n    endpoint: http://h\n", "HEARTBEAT_INTERVAL", "soon")
	f.Add("a: &a [*a, *a]\n", "QUEUE_MAX_BYTES", "99999999999999GiB")
	f.Add("notifications:\n  webhooks:\n    - url: http://x\n      kinds: [status]\n", "REGRESSION_ENABLED", "maybe")
	f.Add("runtime:\n  storage:\n    - {kind: s3, name: x, bucket: b, url: \"http://u:p@h\", prefixes: [a/]}\n    - {kind: filesystem, name: x, paths: [/]}\n", "RUNTIME_TIMEOUT", "2s")
	f.Add("runtime:\n  ingress:\n    - {name: shop, listen: \":8080\", upstream: \"http://h:1/p\", routes: [\"/a/{id}\", \"/b/*\", \"/c/*/d\"], idle_timeout: -1s}\n", "RUNTIME_INTERVAL", "1s")
	f.Fuzz(func(t *testing.T, yaml, name, value string) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		env := []string{"PERISCOPE_" + name + "=" + value}
		m := DefaultManager()
		checkLoad(t, &m, path, env, name, m.Validate)
		a := DefaultAgent()
		checkLoad(t, &a, path, env, name, a.Validate)
	})
}

func checkLoad(t *testing.T, cfg any, path string, env []string, name string, validate func() error) {
	t.Helper()
	if err := Load(cfg, "", env); err != nil {
		if !strings.Contains(err.Error(), "PERISCOPE_"+name) {
			t.Errorf("error about PERISCOPE_%s does not name it: %v", name, err)
		}
	}
	if err := Load(cfg, path, env); err != nil {
		if err.Error() == "" {
			t.Error("Load failed with an empty message")
		}
		return
	}
	if err := validate(); err != nil && err.Error() == "" {
		t.Error("Validate failed with an empty message")
	}
}

// TestByteSizeTooLargeIsRefused: a size past what an int64 holds is an error, not
// the size it wraps around to (2^64+1GiB bytes silently became a 1GiB queue bound).
func TestByteSizeTooLargeIsRefused(t *testing.T) {
	cfg := DefaultAgent()
	err := Load(&cfg, "", []string{"PERISCOPE_QUEUE_MAX_BYTES=17179869185GiB"})
	if err == nil || !strings.Contains(err.Error(), "PERISCOPE_QUEUE_MAX_BYTES") || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("Load = %v (max_bytes %d), want a too-large error naming the variable", err, cfg.Queue.MaxBytes)
	}
}
