package storage

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/storagetest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newSource builds the source c describes or fails the test.
func newSource(t *testing.T, c Config, env ...string) runtime.Source {
	return storagetest.Build(t, New, c, env...)
}

// TestUnreachableServersFail points a Redis source at a closed port and a
// volume source at a missing path.
func TestUnreachableServersFail(t *testing.T) {
	storagetest.Unreachable(t, newSource(t, Config{Kind: KindRedis, Name: "cache", URL: "redis://" + testenv.ClosedAddr(t)}))
	storagetest.Unreachable(t, newSource(t, Config{Kind: KindFilesystem, Name: "data", Paths: []string{t.TempDir() + "/missing"}}))
}

func TestNewLeavesS3AndPostgresToTheirPackages(t *testing.T) {
	for kind, pkg := range map[string]string{KindS3: "s3bucket", KindPostgres: "postgresdb"} {
		c := Config{Kind: kind, Name: "x", URL: "postgres://db/app"}
		if kind == KindS3 {
			c = Config{Kind: kind, Name: "x", Bucket: "b"}
		}
		if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "storage/"+pkg) {
			t.Errorf("New(%s): %v, want a pointer to storage/%s", kind, err, pkg)
		}
	}
	if err := Check(Config{Kind: KindRedis, Name: "x", URL: "redis://h:1"}, KindS3); err == nil {
		t.Error("Check accepted a redis config as s3")
	}
}

func TestSourcesNameThemselvesByKind(t *testing.T) {
	src := newSource(t, Config{Kind: KindFilesystem, Name: "data", Paths: []string{"/"}})
	if src.Name() != "filesystem/data" {
		t.Errorf("Name() = %q", src.Name())
	}
	if k, ok := src.(interface{ Kind() string }); !ok || k.Kind() != "filesystem" {
		t.Errorf("no Kind() filesystem")
	}
}

func TestClipKeepsUTF8Whole(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // é is two bytes: cutting inside it drops it
		{"ééé", 5, "éé"},
	} {
		if got := Clip(tc.in, tc.n); got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
